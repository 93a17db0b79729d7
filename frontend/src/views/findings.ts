/**
 * View 7 — findings: the space's evaluation report (issue 14), as the worker's `eval` job wrote it
 * (`GET /api/spaces/{id}/report`). One section per finding of the paper — reversion, diversity, movement,
 * alignment measured with ground truth, sensitivity, tied stimuli — each with its plot, one sentence on what the
 * paper found and one on what this run shows, and the tables (reversion per stage, alignment per setting).
 * With no report yet, a button queues the `eval` job and the view shows its progress until the report appears.
 */

import { ApiError, api, getJson } from "../api/client";
import type { Job } from "../api/types";
import type { ViewState } from "../state/url";
import { fmt, h, pct, setChildren } from "../ui/dom";
import type { ViewContext, ViewController } from "./view";

interface Section {
  paper: string;
  run: string;
  plot: string | null;
  plot_dim?: string | null;
}

interface StageTable {
  label: string;
  epoch_from: number;
  epoch_to: number;
  rows: string[];
  columns: string[];
  mean: number[][];
  std: number[][];
  order_holds: Record<string, boolean>;
}

interface Score {
  agreement: number;
  auc: number;
  queries: number;
}

/** What the view reads of `results.json` (the rest is there for other readers). */
export interface ReportResults {
  space: { id: number; name: string; base_run: string; base_epoch: number };
  timings: { total_s?: number };
  sections: Record<string, Section>;
  reversion?: { stages: StageTable[] };
  alignment?: { settings?: Record<string, Record<string, Score | null>>; error?: string };
}

export interface Report {
  space_id: number;
  space_name: string;
  ready: boolean;
  results: ReportResults | null;
  files: Record<string, string>;
}

const TITLES: [string, string][] = [
  ["reversion", "Reversion of important evolutions (Table 1)"],
  ["diversity", "Concept diversity under a too-high learning rate (§4.5)"],
  ["movement", "Movement of concepts, healthy vs overfitting (§4.5)"],
  ["alignment", "Alignment, measured with ground truth (Fig 5)"],
  ["sensitivity", "Sensitivity to k and dim"],
  ["ties", "Tied stimuli (flat maps)"],
];

/** A signed change for the reversion table: +0.012 ± 0.003. */
export function change(mean: number, std: number): string {
  return `${mean >= 0 ? "+" : "−"}${Math.abs(mean).toFixed(3)} ± ${std.toFixed(3)}`;
}

/** The active `eval` job of a space, if any. */
export function evalJobOf(active: Job[], spaceId: number): Job | undefined {
  return active.find((j) => j.kind === "eval" && Number(j.params.space_id) === spaceId);
}

export class FindingsView implements ViewController {
  readonly element = h("section", { class: "view findings-view", "data-testid": "findings-view" });
  idle = false;
  private generation = 0;
  private spaceId: number | null = null;
  private readonly progress = h("p", { class: "findings-progress", "data-testid": "findings-progress" });

  constructor(private readonly ctx: ViewContext) {
    ctx.jobs.onChange((active) => this.showProgress(active));
  }

  async render(state: ViewState): Promise<void> {
    const gen = ++this.generation;
    this.idle = false;
    try {
      const { data } = this.ctx;
      if (!data.spaces.length) {
        this.spaceId = null;
        setChildren(this.element, h("div", { class: "card" }, h("h2", {}, "No space yet"), h("p", {}, "Build one first (", h("code", {}, "conceptevo demo"), "); its findings appear here.")));
        return;
      }
      const spaceId = state.space ?? data.spaces[data.spaces.length - 1].id;
      const report = await getJson<Report>(`/api/spaces/${spaceId}/report`);
      if (gen !== this.generation) return;
      this.spaceId = spaceId;
      if (!report.ready || !report.results) this.showEmpty(report);
      else this.showReport(report, report.results);
      this.showProgress(this.ctx.jobs.active);
    } catch (err) {
      if (gen !== this.generation) return;
      const message = err instanceof ApiError ? err.detail : err instanceof Error ? err.message : String(err);
      setChildren(this.element, h("div", { class: "card" }, h("h2", {}, "The report could not be loaded"), h("p", { class: "error" }, message)));
    } finally {
      if (gen === this.generation) this.idle = true;
    }
  }

  onDataRefreshed(): void {
    void this.render(this.ctx.store.get());
  }

  private runButton(label: string): HTMLButtonElement {
    const button = h("button", { type: "button", class: "primary", "data-testid": "findings-run" }, label);
    button.addEventListener("click", () => void this.queue(button));
    return button;
  }

  private async queue(button: HTMLButtonElement): Promise<void> {
    if (this.spaceId === null) return;
    button.disabled = true;
    try {
      await api.createJob("eval", { space_id: this.spaceId });
      this.progress.textContent = "Queued: a worker will compute the report.";
      this.ctx.jobs.poke();
    } catch (err) {
      button.disabled = false;
      this.ctx.showError(err instanceof ApiError ? err.detail : String(err));
    }
  }

  private showProgress(active: Job[]): void {
    if (this.spaceId === null) return;
    const job = evalJobOf(active, this.spaceId);
    if (!job) return;
    this.progress.textContent =
      job.status === "queued" ? `Evaluation job #${job.id} queued — waiting for a worker.` : `Evaluation job #${job.id}: ${pct(job.progress)} — ${job.message}`;
  }

  private showEmpty(report: Report): void {
    setChildren(
      this.element,
      h(
        "div",
        { class: "card", "data-testid": "findings-empty" },
        h("h2", {}, `No evaluation report for space “${report.space_name}” yet`),
        h("p", {}, "The evaluation recomputes the paper's findings on this space from the store and the checkpoints (about 5 minutes for the demo world)."),
        this.runButton("Run the evaluation"),
        this.progress,
      ),
    );
  }

  private showReport(report: Report, results: ReportResults): void {
    const sections = TITLES.map(([key, title]) => {
      const said = results.sections[key];
      if (!said) return null;
      const plots = [said.plot, said.plot_dim].filter((p): p is string => !!p && !!report.files[p]);
      return h(
        "section",
        { class: "findings-section", "data-testid": `finding-${key}` },
        h("h3", {}, title),
        h("p", { class: "findings-paper" }, h("strong", {}, "Paper: "), said.paper),
        h("p", { class: "findings-run" }, h("strong", {}, "This run: "), said.run),
        plots.map((p) => h("img", { src: report.files[p], alt: `${title} — plot`, class: "findings-plot", width: 520, height: 300 })),
        key === "reversion" ? this.reversionTables(results) : null,
        key === "alignment" ? this.alignmentTable(results) : null,
      );
    });
    setChildren(
      this.element,
      h(
        "div",
        { class: "findings" },
        h("h2", {}, `Findings — space “${results.space.name}”`),
        h(
          "p",
          { class: "muted" },
          `Computed in ${fmt(results.timings.total_s ?? null, 0)} s by the eval job from the store and the checkpoints; base ${results.space.base_run}@${results.space.base_epoch}. `,
          report.files["report.md"] ? h("a", { href: report.files["report.md"] }, "report.md") : null,
          " ",
          report.files["results.json"] ? h("a", { href: report.files["results.json"] }, "results.json") : null,
        ),
        sections,
        h("p", {}, this.runButton("Run the evaluation again"), this.progress),
      ),
    );
  }

  private reversionTables(results: ReportResults): HTMLElement[] {
    return (results.reversion?.stages ?? []).map((stage) =>
      h(
        "table",
        { class: "findings-table", "data-testid": "reversion-table" },
        h("caption", {}, `${stage.label}: ordering ${stage.order_holds.train_top1 ? "holds" : "does not hold"} (train top-1)`),
        h("thead", {}, h("tr", {}, h("th", {}, "bin"), stage.columns.map((c) => h("th", {}, c)))),
        h(
          "tbody",
          {},
          stage.rows.map((row, i) => h("tr", {}, h("th", {}, row), stage.columns.map((_c, j) => h("td", {}, change(stage.mean[i][j], stage.std[i][j]))))),
        ),
      ),
    );
  }

  private alignmentTable(results: ReportResults): HTMLElement | null {
    const settings = results.alignment?.settings;
    if (!settings) return null;
    const names = Object.keys(Object.values(settings)[0] ?? {});
    return h(
      "table",
      { class: "findings-table", "data-testid": "alignment-table" },
      h("caption", {}, "Simulated intruder test: ROC AUC (kNN agreement)"),
      h("thead", {}, h("tr", {}, h("th", {}, "setting"), names.map((n) => h("th", {}, n)))),
      h(
        "tbody",
        {},
        Object.entries(settings).map(([setting, row]) =>
          h("tr", {}, h("th", {}, setting.replace("_", " ")), names.map((n) => h("td", {}, row[n] ? `${fmt(row[n]!.auc, 3)} (${fmt(row[n]!.agreement, 3)})` : "–"))),
        ),
      ),
    );
  }
}
