/**
 * The app shell: header (space, run, colouring, neuron search, live jobs indicator), the error banner, the
 * keyboard, and the current view. URL → state → fetch → render; nothing here computes.
 */

import { ApiError, api } from "./api/client";
import type { Job } from "./api/types";
import { DataCache } from "./data";
import { describeJob, JobWatcher } from "./jobs";
import { describeAlert, LiveFeed, type Placed } from "./live";
import { StateStore } from "./state/store";
import type { View, ViewState } from "./state/url";
import { h, pct, setChildren } from "./ui/dom";
import { CompareView } from "./views/compare";
import { FindingsView } from "./views/findings";
import { HealthView } from "./views/health";
import { ImportanceView } from "./views/importance";
import { JobsView } from "./views/jobs";
import { MapController } from "./views/map";
import type { ViewContext, ViewController } from "./views/view";

const VIEW_TITLES: [View, string][] = [
  ["map", "Map"],
  ["compare", "Compare"],
  ["importance", "Importance"],
  ["health", "Health"],
  ["jobs", "Jobs"],
  ["findings", "Findings"],
];


/** Parse a neuron search: `conv3:17`, `features.3:17` (a layer name or its last part), `2:17` (layer index). */
export function parseNeuronQuery(
  query: string,
  layers: { idx: number; name: string }[],
): { layerIdx: number; channel: number } | { error: string } {
  const m = query.trim().match(/^(.+?)\s*[:/#\s]\s*(\d+)$/);
  if (!m) return { error: "type a layer and a channel, e.g. conv3:17" };
  const [, layerPart, channelPart] = m;
  const channel = Number(channelPart);
  const exact = layers.find((l) => l.name === layerPart);
  const suffix = layers.filter((l) => l.name.endsWith(`.${layerPart}`) || l.name.split(".").pop() === layerPart);
  const byIndex = /^\d+$/.test(layerPart) ? layers.find((l) => l.idx === Number(layerPart)) : undefined;
  const layer = exact ?? (suffix.length === 1 ? suffix[0] : undefined) ?? byIndex;
  if (!layer) return { error: `no layer “${layerPart}”; layers: ${layers.map((l) => l.name).join(", ")}` };
  return { layerIdx: layer.idx, channel };
}

export class App {
  readonly store = new StateStore();
  readonly data = new DataCache();
  readonly jobs = new JobWatcher();
  /** Runs watched while they train: new epochs, live runs and alerts from the server's event stream. */
  readonly live = new LiveFeed({
    onPlaced: (placed) => void this.onPlaced(placed),
    onJob: () => this.jobs.poke(),
    onStatus: () => this.renderLive(this.store.get()),
  });
  readonly mapView: MapController;
  readonly views: Record<View, ViewController>;

  private readonly root: HTMLElement;
  private readonly banner = h("div", { class: "banner", role: "alert", "data-testid": "error" });
  private readonly spaceSelect = h("select", { "aria-label": "Space", "data-testid": "space-select" });
  private readonly runSelect = h("select", { "aria-label": "Run", "data-testid": "run-select" });
  private readonly search = h("input", {
    type: "search",
    placeholder: "neuron, e.g. conv3:17",
    "aria-label": "Find a neuron by layer and channel",
    "data-testid": "search",
    list: "layer-names",
    spellcheck: "false",
    autocomplete: "off",
  });
  private readonly layerNames = h("datalist", { id: "layer-names" });
  // says something before the first poll answers, so the header never shows an empty button
  private readonly jobsIndicator = h("button", { type: "button", class: "jobs-indicator", "data-testid": "jobs-indicator" }, "jobs …");
  private readonly jobsPopover = h("div", { class: "jobs-popover", "data-testid": "jobs-popover" });
  private readonly liveBadge = h("span", { class: "live-badge", "data-testid": "live-badge", title: "A tracker or watcher is feeding this run: new epochs appear as they are placed" }, "● live");
  private readonly followBox = h("input", { type: "checkbox", "data-testid": "follow" });
  private readonly followLabel = h("label", { class: "follow", title: "Show each new epoch of this run as soon as it is placed" }, this.followBox, h("span", {}, "follow newest"));
  private readonly alertsButton = h("button", { type: "button", class: "alerts-indicator", "data-testid": "alerts-indicator" });
  private readonly alertsPopover = h("div", { class: "jobs-popover alerts-popover", "data-testid": "alerts-popover" });
  private readonly main = h("main", { class: "main" });
  private readonly nav = h("nav", { class: "views", "aria-label": "Views" });
  private loaded = false;

  constructor(root: HTMLElement) {
    this.root = root;
    const context: ViewContext = { data: this.data, store: this.store, jobs: this.jobs, showError: (m) => this.setError(m) };
    this.mapView = new MapController(context);
    this.views = {
      map: this.mapView,
      compare: new CompareView(context),
      importance: new ImportanceView(context),
      health: new HealthView(context),
      jobs: new JobsView(context),
      findings: new FindingsView(context),
    };
    this.buildShell();
    this.store.subscribe((next, prev) => this.onState(next, prev));
    this.jobs.onChange((active) => this.renderJobs(active));
    this.jobs.onFinished((finished) => void this.onJobsFinished(finished));
    this.bindKeys();
  }

  async start(): Promise<void> {
    this.banner.hidden = true;
    this.jobsPopover.hidden = true;
    this.alertsPopover.hidden = true;
    try {
      await api.health();
      await this.data.refresh();
    } catch (err) {
      this.setError(
        err instanceof ApiError && err.status === 0
          ? err.detail
          : `the server could not load its database: ${err instanceof ApiError ? err.detail : String(err)} — run \`make demo\` to create one`,
      );
    }
    this.loaded = true;
    this.jobs.start();
    void this.live.start();
    this.renderHeader(this.store.get());
    await this.renderView(this.store.get());
  }

  /** The controller of the view now shown. */
  current(): ViewController {
    return this.views[this.store.get().view];
  }

  private async renderView(state: ViewState): Promise<void> {
    for (const [view, controller] of Object.entries(this.views) as [View, ViewController][])
      controller.element.hidden = view !== state.view;
    await this.views[state.view].render(state);
  }

  private buildShell(): void {
    this.spaceSelect.addEventListener("change", () => this.store.update({ space: Number(this.spaceSelect.value), run: null, epoch: null, neuron: null, zoom: null, imp: null }));
    this.runSelect.addEventListener("change", () => this.store.update({ run: Number(this.runSelect.value), epoch: null, neuron: null, imp: null }));
    this.search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") void this.findNeuron(this.search.value);
      if (e.key === "Escape") this.search.blur();
    });
    this.followBox.addEventListener("change", () => this.store.update({ follow: this.followBox.checked }, "replace"));
    this.alertsButton.addEventListener("click", () => {
      this.alertsPopover.hidden = !this.alertsPopover.hidden;
      this.renderLive(this.store.get());
    });
    this.jobsIndicator.addEventListener("click", () => {
      this.jobsPopover.hidden = !this.jobsPopover.hidden;
      this.renderJobs(this.jobs.active);
    });
    const header = h(
      "header",
      { class: "topbar" },
      h("a", { class: "brand", href: "/", title: "ConceptEvo — how neurons' concepts evolve in training" }, h("span", { class: "logo" }), "ConceptEvo"),
      this.nav,
      h("label", {}, h("span", {}, "Space"), this.spaceSelect),
      h("label", {}, h("span", {}, "Run"), this.runSelect),
      this.liveBadge,
      this.followLabel,
      h("div", { class: "search for-map" }, this.search, this.layerNames),
      h("div", { class: "spacer" }),
      h("a", { class: "docs-link", href: "/docs", target: "_blank", rel: "noopener" }, "API"),
      h("div", { class: "jobs" }, this.alertsButton, this.alertsPopover),
      h("div", { class: "jobs" }, this.jobsIndicator, this.jobsPopover),
    );
    setChildren(this.root, h("div", { class: "app" }, header, this.banner, this.main));
    for (const controller of Object.values(this.views)) this.main.append(controller.element);
  }

  private onState(next: ViewState, prev: ViewState): void {
    if (!this.loaded) return;
    this.renderHeader(next);
    if (next.space !== prev.space || next.run !== prev.run) this.search.value = "";
    void this.renderView(next);
  }

  private renderHeader(state: ViewState): void {
    setChildren(
      this.nav,
      ...VIEW_TITLES.map(([view, title]) =>
        h(
          "a",
          {
            href: view === "map" ? "/" : `/${view}`,
            class: view === state.view ? "active" : "",
            "data-view": view,
            "aria-current": view === state.view ? "page" : null,
            onclick: (e: Event) => {
              e.preventDefault();
              this.store.update({ view });
            },
          },
          title,
        ),
      ),
    );
    this.root.dataset.view = state.view;
    const spaces = this.data.spaces;
    const spaceId = state.space ?? spaces[spaces.length - 1]?.id;
    setChildren(
      this.spaceSelect,
      spaces.length
        ? spaces.map((s) => h("option", { value: s.id, selected: s.id === spaceId, title: `${s.n_snapshots} snapshots computed` }, s.name))
        : h("option", {}, "no space yet"),
    );
    this.spaceSelect.disabled = spaces.length === 0;
    const space = spaceId === undefined ? undefined : this.data.space(spaceId);
    const runId = state.run ?? space?.base_run_id;
    const runs = space ? this.data.runs.filter((r) => r.dataset_id === space.dataset_id) : this.data.runs;
    setChildren(
      this.runSelect,
      runs.length ? runs.map((r) => h("option", { value: r.id, selected: r.id === runId }, r.name)) : h("option", {}, "no run yet"),
    );
    this.runSelect.disabled = runs.length === 0;
    this.renderLive(state);
    if (runId !== undefined)
      void this.data
        .layers(runId)
        .then((layers) => setChildren(this.layerNames, ...layers.map((l) => h("option", { value: `${l.name}:` })))).catch(() => undefined);
  }

  /** The "live" badge of the shown run, "follow newest", and the alerts raised while runs trained. */
  private renderLive(state: ViewState): void {
    const spaceId = state.space ?? this.data.spaces[this.data.spaces.length - 1]?.id;
    const runId = state.run ?? (spaceId === undefined ? undefined : this.data.space(spaceId)?.base_run_id);
    const live = this.live.isLive(runId);
    this.liveBadge.hidden = !live;
    // every run a tracker or watcher feeds says so in the run list too, not only the shown one (renderHeader
    // builds the options with plain names and calls this right after)
    for (const option of Array.from(this.runSelect.options)) {
      const run = this.data.runs.find((r) => String(r.id) === option.value);
      if (run) option.textContent = runLabel(run.name, this.live.isLive(run.id));
    }
    this.followLabel.hidden = !(live || state.follow) || state.view !== "map";
    this.followBox.checked = state.follow;
    const alerts = this.live.alerts;
    this.alertsButton.hidden = alerts.length === 0;
    this.alertsButton.textContent = `⚠ ${alerts.length} alert${alerts.length === 1 ? "" : "s"}`;
    this.alertsButton.title = alerts.map(describeAlert).join("\n");
    if (!alerts.length) this.alertsPopover.hidden = true;
    if (this.alertsPopover.hidden) return;
    setChildren(
      this.alertsPopover,
      alerts.map((a) =>
        h(
          "div",
          { class: "job-row", "data-testid": "alert" },
          h("div", { class: "job-msg" }, h("b", {}, `${a.run} · from epoch ${a.start_epoch}`), a.lead !== null && a.lead > 0 ? h("span", { class: "muted" }, ` · ${a.lead} epoch${a.lead === 1 ? "" : "s"} ahead of accuracy`) : null),
          h("div", { class: "muted small" }, a.reason),
        ),
      ),
    );
  }

  /** Epochs were placed while a run trains: reload the lists (the slider and the charts follow). */
  private async onPlaced(placed: Placed[]): Promise<void> {
    if (!this.loaded || !placed.length) return;
    await this.refreshData();
  }

  /** Reload the spaces and runs, then let the header and the shown view show what is new. */
  private async refreshData(): Promise<void> {
    try {
      await this.data.refresh();
    } catch {
      return;
    }
    this.renderHeader(this.store.get());
    this.current().onDataRefreshed?.();
  }

  private async findNeuron(query: string): Promise<void> {
    const shown = this.mapView.shown;
    if (!shown) return;
    const parsed = parseNeuronQuery(query, shown.layers);
    if ("error" in parsed) return this.flashSearch(parsed.error);
    const id = shown.neurons.byLayerChannel.get(`${parsed.layerIdx}:${parsed.channel}`);
    if (id === undefined) {
      const layer = shown.layers.find((l) => l.idx === parsed.layerIdx);
      return this.flashSearch(`${layer?.name} has channels 0–${(layer?.channels ?? 1) - 1}`);
    }
    this.search.setCustomValidity("");
    this.search.blur();
    this.store.update({ neuron: id });
  }

  private flashSearch(message: string): void {
    this.search.setCustomValidity(message);
    this.search.reportValidity();
    this.search.title = message;
  }

  private setError(message: string | null): void {
    if (!message) {
      this.banner.hidden = true;
      return;
    }
    setChildren(
      this.banner,
      h("span", {}, message),
      h("button", { type: "button", onclick: () => void this.start() }, "Retry"),
      h("button", { type: "button", class: "close", "aria-label": "Dismiss", onclick: () => (this.banner.hidden = true) }, "×"),
    );
    this.banner.hidden = false;
  }

  private renderJobs(active: Job[]): void {
    const running = active.filter((j) => j.status === "running");
    const mean = running.length ? running.reduce((a, j) => a + j.progress, 0) / running.length : 0;
    this.jobsIndicator.classList.toggle("busy", running.length > 0);
    this.jobsIndicator.textContent = this.jobs.lastError
      ? "server unreachable"
      : active.length
        ? `● ${running.length} running${running.length ? ` ${pct(mean)}` : ""}${active.length > running.length ? ` · ${active.length - running.length} queued` : ""}`
        : "no jobs";
    this.jobsIndicator.title = "Jobs of the worker (click for details)";
    if (this.jobsPopover.hidden) return;
    setChildren(
      this.jobsPopover,
      active.length
        ? active.slice(0, 30).map((j) =>
            h(
              "div",
              { class: "job-row" },
              h("div", { class: "job-msg" }, h("b", {}, describeJob(j, (id) => this.data.runName(id), (id) => this.data.snapshotLabel(id))), h("span", { class: "muted" }, ` #${j.id} ${j.status}`)),
              j.status === "running" ? h("div", { class: "bar" }, h("span", { style: `width:${(100 * j.progress).toFixed(1)}%` })) : null,
              j.message ? h("div", { class: "muted small" }, j.message) : null,
            ),
          )
        : h("p", { class: "muted" }, "The queue is empty."),
    );
  }

  private async onJobsFinished(finished: Job[]): Promise<void> {
    const failed = finished.filter((j) => j.status === "failed");
    if (failed.length) this.setError(`job #${failed[0].id} (${failed[0].kind}) failed: ${failed[0].error ?? "no reason given"}`);
    await this.refreshData();
  }

  private bindKeys(): void {
    window.addEventListener("keydown", (e) => {
      const target = e.target as HTMLElement | null;
      const typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
      if (e.key === "/" && !typing) {
        e.preventDefault();
        this.search.focus();
        this.search.select();
        return;
      }
      if (typing || e.metaKey || e.ctrlKey || e.altKey || this.store.get().view !== "map") return;
      if (e.key === "ArrowLeft") this.mapView.step(-1);
      else if (e.key === "ArrowRight") this.mapView.step(1);
      else if (e.key === " ") {
        e.preventDefault();
        this.mapView.togglePlay();
      } else if (e.key === "Escape") {
        if (this.store.get().neuron !== null) this.store.update({ neuron: null });
      } else return;
    });
  }
}

/** A run's name in the run list, marked when a tracker or watcher is feeding it. */
export function runLabel(name: string, live: boolean): string {
  return live ? `${name} ● live` : name;
}
