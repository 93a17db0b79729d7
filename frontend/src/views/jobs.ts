/**
 * View 6 — the worker's jobs: queued, running, done, failed and cancelled (the newest 200), with filter
 * chips by status, live progress, elapsed time, readable errors, and cancel / retry buttons.
 *
 * The list refreshes every 2 s while shown; between those, the job watcher's 1 s poll of the active jobs
 * updates their rows in place. Rows are keyed by job id and updated, not rebuilt, so an expanded error or
 * a focused button survives a refresh. When the server wants a token for writes (401), a small inline form
 * asks for it once, keeps it in session storage (`setToken`) and redoes the action.
 */

import { ApiError, api, getToken, setToken } from "../api/client";
import type { Job, JobStatus } from "../api/types";
import { describeJob } from "../jobs";
import type { ViewState } from "../state/url";
import { h, setChildren } from "../ui/dom";
import type { ViewContext, ViewController } from "./view";

const STATUSES: JobStatus[] = ["queued", "running", "done", "failed", "cancelled"];
const LIMIT = 200;
const REFRESH_MS = 2000;

type Filter = JobStatus | "all";
type Action = "cancel" | "retry";

/** The first readable line of an error; a Python traceback is summed up by its last line (the exception). */
export function errorSummary(error: string): string {
  const lines = error.split("\n").map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return "";
  if (/^Traceback \(most recent call last\)/.test(lines[0])) return lines[lines.length - 1];
  return lines[0];
}

/** A duration for display: 42 s, 3 min 5 s, 2 h 14 min. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  return `${hours} h ${m % 60} min`;
}

/** Server timestamps (ISO, microseconds, Z) as epoch milliseconds; NaN when absent or unreadable. */
function time(iso: string | null): number {
  if (!iso) return NaN;
  return Date.parse(iso.replace(/(\.\d{3})\d+/, "$1"));
}

/** One row of the table, kept per job id and updated in place. */
class JobRow {
  readonly element: HTMLTableRowElement;
  private readonly badge = h("span", { class: "jobs-badge" });
  private readonly bar = h("span", {});
  private readonly progressText = h("span", { class: "jobs-progress-text" });
  private readonly message = h("div", { class: "jobs-message muted small" });
  private readonly elapsed = h("td", { class: "jobs-elapsed" });
  private readonly created = h("td", { class: "jobs-created" });
  private readonly error = h("div", { class: "jobs-error" });
  private readonly actions = h("td", { class: "jobs-actions" });
  private readonly describe: HTMLElement;
  private key = "";
  job: Job;

  constructor(
    job: Job,
    private readonly runName: (id: number) => string,
    private readonly detail: (job: Job) => string | null,
    private readonly act: (action: Action, job: Job, button: HTMLButtonElement) => void,
  ) {
    this.job = job;
    this.describe = h("div", { class: "jobs-describe" });
    this.element = h(
      "tr",
      { class: "jobs-row", "data-testid": "job-row", "data-job-id": job.id },
      h("td", { class: "jobs-id" }, `#${job.id}`),
      h("td", { class: "jobs-what" }, this.describe, this.error),
      h("td", { class: "jobs-status" }, this.badge),
      h("td", { class: "jobs-progress" }, h("div", { class: "jobs-progress-line" }, h("div", { class: "jobs-bar" }, this.bar), this.progressText), this.message),
      this.elapsed,
      this.created,
      this.actions,
    );
    this.update(job, Date.now());
  }

  update(job: Job, now: number): void {
    this.job = job;
    this.element.dataset.status = job.status;
    this.updateTimes(now);
    // Rebuild the rest only when the job changed (keeps focus and an open error as they are).
    const key = [job.status, job.progress, job.message, job.error, job.attempts, job.finished_at, this.detail(job)].join("|");
    if (key === this.key) return;
    this.key = key;
    const detail = this.detail(job);
    setChildren(
      this.describe,
      h("b", {}, job.kind),
      " ",
      h("span", {}, describeJob(job, this.runName)),
      detail ? h("span", { class: "muted" }, ` (${detail})`) : null,
    );
    this.badge.textContent = job.status;
    this.badge.className = `jobs-badge ${job.status}`;
    const fraction = job.status === "done" ? 1 : Math.max(0, Math.min(1, job.progress));
    this.bar.style.width = `${(100 * fraction).toFixed(1)}%`;
    this.bar.className = job.status;
    this.progressText.textContent = `${Math.round(100 * fraction)} %`;
    this.message.textContent = job.message && job.message !== job.status ? job.message : "";
    this.message.title = job.message;
    this.renderError(job);
    this.renderActions(job);
  }

  updateTimes(now: number): void {
    const job = this.job;
    const started = time(job.started_at);
    const finished = time(job.finished_at);
    const created = time(job.created_at);
    if (Number.isFinite(started)) {
      const end = Number.isFinite(finished) ? finished : job.status === "running" ? now : NaN;
      this.elapsed.textContent = Number.isFinite(end) ? duration(end - started) : "–";
      this.elapsed.title = `started ${new Date(started).toLocaleString()}${Number.isFinite(finished) ? `, finished ${new Date(finished).toLocaleString()}` : ""}`;
    } else {
      this.elapsed.textContent = job.status === "queued" ? `waiting ${duration(now - created)}` : "–";
      this.elapsed.title = "not started";
    }
    this.created.textContent = Number.isFinite(created) ? shortTime(created, now) : "–";
    this.created.title = job.created_at;
  }

  private renderError(job: Job): void {
    if (!job.error) {
      this.error.replaceChildren();
      return;
    }
    const summary = errorSummary(job.error);
    const more = job.error.trim() !== summary;
    const wasOpen = this.error.querySelector("details")?.open ?? false;
    setChildren(
      this.error,
      more
        ? h("details", { open: wasOpen }, h("summary", {}, summary), h("pre", {}, job.error))
        : h("span", {}, summary),
    );
  }

  private renderActions(job: Job): void {
    const action: Action | null = job.status === "queued" || job.status === "running" ? "cancel" : job.status === "failed" || job.status === "cancelled" ? "retry" : null;
    if (!action) {
      this.actions.replaceChildren();
      return;
    }
    const button = h(
      "button",
      {
        type: "button",
        class: `jobs-action ${action}`,
        "data-action": action,
        title: action === "cancel" ? "Stop this job (a running job stops at its next heartbeat)" : "Queue this job again",
      },
      action === "cancel" ? "Cancel" : "Retry",
    );
    button.addEventListener("click", () => this.act(action, this.job, button));
    setChildren(this.actions, button);
  }
}

function shortTime(ms: number, now: number): string {
  const d = new Date(ms);
  const sameDay = new Date(now).toDateString() === d.toDateString();
  const clock = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return sameDay ? clock : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${clock}`;
}

export class JobsView implements ViewController {
  readonly element = h("section", { class: "view jobs-view", "data-testid": "jobs-view" });
  /** False while the first load (or an action) is in flight, true once the list is shown. */
  idle = false;

  private readonly chips = h("div", { class: "jobs-chips", role: "group", "aria-label": "Filter by status" });
  private readonly status = h("span", { class: "jobs-updated muted small", "aria-live": "polite" });
  private readonly notice = h("div", { class: "jobs-notice", role: "status" });
  private readonly tokenBox = h("div", { class: "jobs-token" });
  private readonly body = h("tbody", {});
  private readonly table: HTMLTableElement;
  private readonly empty = h("div", { class: "jobs-empty" });
  private readonly rows = new Map<number, JobRow>();
  /** Whether the space and run details that name add_snapshot jobs' run and epoch were asked for. */
  private detailsRequested = false;
  private jobs: Job[] = [];
  private filter: Filter = "all";
  private loadedOnce = false;
  private timer = 0;
  private loading = false;
  private lastActiveKey = "";
  private chipsKey = "";
  /** When the last cancel/retry answered: a list fetched before it is stale and not shown. */
  private actedAt = 0;
  /** The action waiting for a token. */
  private pending: { action: Action; job: Job } | null = null;

  constructor(private readonly ctx: ViewContext) {
    this.table = h(
      "table",
      { class: "jobs-table" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { class: "jobs-id" }, "id"),
          h("th", { class: "jobs-what" }, "job"),
          h("th", { class: "jobs-status" }, "status"),
          h("th", { class: "jobs-progress" }, "progress"),
          h("th", { class: "jobs-elapsed" }, "elapsed"),
          h("th", { class: "jobs-created" }, "created"),
          h("th", { class: "jobs-actions" }, h("span", { class: "visually-hidden" }, "actions")),
        ),
      ),
      this.body,
    );
    this.tokenBox.hidden = true;
    this.notice.hidden = true;
    this.element.append(
      h("div", { class: "jobs-head" }, h("h2", {}, "Jobs"), this.chips, h("div", { class: "spacer" }), this.status),
      this.tokenBox,
      this.notice,
      this.table,
      this.empty,
    );
    ctx.jobs.onChange((active) => this.onActive(active));
  }

  async render(_state: ViewState): Promise<void> {
    if (!this.loadedOnce) this.idle = false;
    await this.refresh();
  }

  // ---- loading ---------------------------------------------------------------------------------------------

  private get shown(): boolean {
    return !this.element.hidden && this.ctx.store.get().view === "jobs";
  }

  /** Fetch the newest jobs and show them; schedules the next refresh while the view is shown. */
  private async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    if (this.loading) return;
    this.loading = true;
    const started = performance.now();
    try {
      const jobs = await api.jobs(`?limit=${LIMIT}`);
      if (this.actedAt > started) return;
      this.jobs = jobs;
      this.loadedOnce = true;
      this.status.textContent = `updated ${new Date().toLocaleTimeString()} · newest ${LIMIT} jobs`;
      this.status.classList.remove("error");
      this.draw();
    } catch (err) {
      const message = err instanceof ApiError ? err.detail : String(err);
      this.status.textContent = `could not refresh: ${message}`;
      this.status.classList.add("error");
      if (!this.loadedOnce)
        this.showEmpty("The job list could not be loaded", `${message}${/[.?!]$/.test(message) ? "" : "."} It is retried every few seconds.`);
    } finally {
      this.loading = false;
      if (this.loadedOnce || this.shown) this.idle = true;
      if (this.shown) this.timer = window.setTimeout(() => void this.refresh(), REFRESH_MS);
    }
  }

  /** The watcher's poll (every second): update active rows in place; refetch when one started or ended. */
  private onActive(active: Job[]): void {
    if (!this.shown || !this.loadedOnce) return;
    const key = active.map((j) => `${j.id}:${j.status}`).join(",");
    const byId = new Map(active.map((j) => [j.id, j]));
    this.jobs = this.jobs.map((j) => byId.get(j.id) ?? j);
    if (key !== this.lastActiveKey) {
      this.lastActiveKey = key;
      void this.refresh();
      return;
    }
    this.draw();
  }

  // ---- drawing -----------------------------------------------------------------------------------------------

  private draw(): void {
    this.drawChips();
    const now = Date.now();
    const visible = this.filter === "all" ? this.jobs : this.jobs.filter((j) => j.status === this.filter);
    const seen = new Set<number>();
    const order: HTMLTableRowElement[] = [];
    for (const job of visible) {
      seen.add(job.id);
      let row = this.rows.get(job.id);
      if (row) row.update(job, now);
      else {
        row = new JobRow(
          job,
          (id) => this.ctx.data.runName(id),
          (j) => this.snapshotDetail(j),
          (action, j, button) => void this.act(action, j, button),
        );
        this.rows.set(job.id, row);
      }
      order.push(row.element);
    }
    if (!this.detailsRequested && visible.some((j) => j.kind === "add_snapshot")) void this.loadDetails();
    for (const [id, row] of this.rows)
      if (!seen.has(id)) {
        row.element.remove();
        this.rows.delete(id);
      }
    // Re-append only when the order changed, so focus and hover are kept.
    const current = [...this.body.children];
    if (current.length !== order.length || current.some((el, i) => el !== order[i])) this.body.replaceChildren(...order);
    this.table.hidden = visible.length === 0;
    if (visible.length) this.empty.hidden = true;
    else if (!this.jobs.length)
      this.showEmpty(
        "No jobs yet",
        "Jobs appear here when something is computed: run `conceptevo demo`, or click a grey epoch tick on the map's slider to place it in the space.",
      );
    else this.showEmpty(`No ${this.filter} jobs`, "Among the newest jobs none has this status. Pick another filter above.");
  }

  /** Load the spaces' and runs' details once (into the shared cache), so add_snapshot rows can name run and epoch. */
  private async loadDetails(): Promise<void> {
    this.detailsRequested = true;
    const { data } = this.ctx;
    await Promise.allSettled([
      ...data.spaces.filter((s) => !data.space(s.id)).map((s) => data.loadSpace(s.id)),
      ...data.runs.filter((r) => !data.run(r.id)).map((r) => data.loadRun(r.id)),
    ]);
    if (this.shown) this.draw();
  }

  /** "overfit epoch 20 in “demo”" for an add_snapshot job, from what the data cache already holds. */
  private snapshotDetail(job: Job): string | null {
    if (job.kind !== "add_snapshot") return null;
    const { data } = this.ctx;
    const spaceId = Number(job.params.space_id);
    const snapshotId = Number(job.params.snapshot_id);
    const spaceName = data.spaces.find((s) => s.id === spaceId)?.name;
    let where: { runId: number; epoch: number } | null = null;
    const placed = data.space(spaceId)?.snapshots.find((s) => s.snapshot_id === snapshotId);
    if (placed) where = { runId: placed.run_id, epoch: placed.epoch };
    else
      for (const r of data.runs) {
        const snap = data.run(r.id)?.snapshots.find((s) => s.id === snapshotId);
        if (snap) where = { runId: r.id, epoch: snap.epoch };
      }
    // The space's name only when there are several (the description already gives its id).
    const parts = [where ? `${data.runName(where.runId)} epoch ${where.epoch}` : null, spaceName && data.spaces.length > 1 ? `“${spaceName}”` : null];
    return parts.filter(Boolean).join(" in ") || null;
  }

  private drawChips(): void {
    const counts = new Map<Filter, number>([["all", this.jobs.length]]);
    for (const s of STATUSES) counts.set(s, this.jobs.filter((j) => j.status === s).length);
    // Rebuilt only when something changed, so a focused chip keeps its focus.
    const key = `${this.filter}|${[...counts.values()].join(",")}`;
    if (key === this.chipsKey) return;
    this.chipsKey = key;
    setChildren(
      this.chips,
      ...(["all", ...STATUSES] as Filter[]).map((f) =>
        h(
          "button",
          {
            type: "button",
            class: `jobs-chip ${f}${f === this.filter ? " active" : ""}`,
            "data-filter": f,
            "aria-pressed": String(f === this.filter),
            onclick: () => {
              this.filter = f;
              this.draw();
            },
          },
          f,
          h("span", { class: "jobs-chip-count" }, String(counts.get(f) ?? 0)),
        ),
      ),
    );
  }

  private showEmpty(title: string, text: string): void {
    this.table.hidden = true;
    setChildren(this.empty, h("div", { class: "card" }, h("h2", {}, title), h("p", {}, ...codeSpans(text))));
    this.empty.hidden = false;
  }

  private showNotice(text: string | null, kind: "error" | "ok" = "error"): void {
    this.notice.hidden = !text;
    this.notice.className = `jobs-notice ${kind}`;
    setChildren(
      this.notice,
      text ? h("span", {}, text) : null,
      text ? h("button", { type: "button", class: "close", "aria-label": "Dismiss", onclick: () => this.showNotice(null) }, "×") : null,
    );
  }

  // ---- actions -------------------------------------------------------------------------------------------------

  private async act(action: Action, job: Job, button?: HTMLButtonElement): Promise<void> {
    this.idle = false;
    if (button) button.disabled = true;
    try {
      const updated = action === "cancel" ? await api.cancelJob(job.id) : await api.retryJob(job.id);
      this.actedAt = performance.now();
      this.pending = null;
      this.hideTokenForm();
      this.showNotice(null);
      this.jobs = this.jobs.some((j) => j.id === updated.id) ? this.jobs.map((j) => (j.id === updated.id ? updated : j)) : [updated, ...this.jobs];
      this.draw();
      this.ctx.jobs.poke();
      await this.refresh();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        // The server has a token (CONCEPTEVO_TOKEN): ask for it, then do the action again.
        this.pending = { action, job };
        this.showTokenForm(getToken() !== null);
      } else {
        const message = err instanceof ApiError ? err.detail : String(err);
        this.showNotice(`Could not ${action} job #${job.id}: ${message}`);
        await this.refresh();
      }
    } finally {
      if (button) button.disabled = false;
      this.idle = true;
    }
  }

  private showTokenForm(refused: boolean): void {
    const input = h("input", {
      type: "password",
      name: "token",
      autocomplete: "current-password",
      placeholder: "token",
      "aria-label": "Server token",
      "data-testid": "token-input",
      required: true,
    });
    const pending = this.pending;
    const form = h(
      "form",
      {
        class: "jobs-token-form",
        "data-testid": "token-form",
        onsubmit: (e: Event) => {
          e.preventDefault();
          const token = input.value.trim();
          if (!token) return;
          setToken(token);
          if (this.pending) void this.act(this.pending.action, this.pending.job);
        },
      },
      h(
        "p",
        {},
        refused
          ? h("b", { class: "error" }, "The server refused that token. ")
          : h("b", {}, "This server needs a token to change jobs. "),
        pending ? `Enter it to ${pending.action} job #${pending.job.id}` : "Enter it",
        " — the ",
        h("code", {}, "CONCEPTEVO_TOKEN"),
        " the server was started with. It is kept for this browser tab only.",
      ),
      h(
        "div",
        { class: "jobs-token-row" },
        input,
        h("button", { type: "submit", class: "primary" }, pending ? `Use token and ${pending.action}` : "Use token"),
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              this.pending = null;
              this.hideTokenForm();
            },
          },
          "Not now",
        ),
      ),
    );
    setChildren(this.tokenBox, form);
    this.tokenBox.hidden = false;
    input.focus();
  }

  private hideTokenForm(): void {
    this.tokenBox.hidden = true;
    this.tokenBox.replaceChildren();
  }
}

/** Text with `code` spans in backticks as DOM children. */
function codeSpans(text: string): (string | HTMLElement)[] {
  return text.split(/`([^`]+)`/).map((part, i) => (i % 2 ? h("code", {}, part) : part));
}
