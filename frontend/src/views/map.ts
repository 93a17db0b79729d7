/**
 * View 1 — the evolution map, with the neuron panel (view 2) beside it.
 *
 * State → data → render: every change of the URL state (space, run, epoch, neuron, zoom, colouring, hidden
 * layers, highlighted class, importance) lands in {@link MapController.render}, which loads what it needs
 * (points, concepts, the base backdrop, the previous epoch for movement, importance scores) from the cache
 * and updates the map. A newer render supersedes an older one still loading (generation counter).
 */

import { ApiError, api, patchUrl } from "../api/client";
import type { Concepts, Points } from "../api/columns";
import type { EpochMetrics, Job, Layer, Neighbour, Run, Space } from "../api/types";
import { Sparklines } from "../charts/sparklines";
import type { DataCache, NeuronIndex } from "../data";
import { downloadCsv, downloadMapPng, POINTS_CSV_HEADER, visibleRows } from "../export";
import type { JobWatcher } from "../jobs";
import { paddedExtent, sameZoom } from "../map/extent";
import { displacement } from "../map/glide";
import { placeLabels } from "../map/labels";
import { MapView, type TrajectoryPoint } from "../map/mapview";
import { alignConcepts, computeStyle, type Legend, type StyleResult } from "../map/style";
import type { StateStore } from "../state/store";
import { COLOURINGS, type Colouring, type ViewState } from "../state/url";
import { h, pct, setChildren } from "../ui/dom";
import { NeuronPanel } from "../ui/panel";
import { EpochSlider, type SliderEpoch } from "../ui/slider";
import { unstableReason } from "../ui/stability";
import { mapTooltip } from "../ui/tooltip";
import type { ViewContext, ViewController } from "./view";
import { followTarget } from "../live";

/** What is on screen now: everything `render` resolved for the current state. */
interface Shown {
  space: Space;
  run: Run;
  epoch: number;
  snapshotId: number;
  points: Points;
  layers: Layer[];
  neurons: NeuronIndex;
  concepts: Concepts | null;
  /** `concepts` in the points' order (computed once: hover reads it on every move). */
  aligned?: { classIdx: Int32Array; share: Float32Array };
  classNames: string[];
  computed: { epoch: number; snapshotId: number }[];
  style: StyleResult | null;
}

export interface MapTimings {
  pointsArrivedAt: number;
  firstDrawMs: number | null;
}

export class MapController implements ViewController {
  readonly element: HTMLElement;
  readonly map: MapView;
  readonly panel: NeuronPanel;
  readonly timings: MapTimings = { pointsArrivedAt: 0, firstDrawMs: null };
  /** True while nothing is loading or gliding (read by tests and the bench). */
  idle = false;
  shown: Shown | null = null;

  private readonly tooltip = mapTooltip();
  private readonly slider: EpochSlider;
  private readonly sparklines: Sparklines;
  private readonly legend = h("div", { class: "legend", "data-testid": "legend" });
  private readonly message = h("div", { class: "map-message", "data-testid": "map-message" });
  private readonly mapArea: HTMLElement;
  private generation = 0;
  private domainSpace: number | null = null;
  private playing = false;
  private playTimer = 0;
  private metrics: EpochMetrics[] = [];
  private metricsKey = "";
  private panelKey = "";
  private legendKey = "";
  private requested = new Map<string, number>();
  /** A render is still loading (its generation is current). */
  private rendering = false;

  private readonly data: DataCache;
  private readonly store: StateStore;
  private readonly jobs: JobWatcher;
  private readonly showError: (message: string | null) => void;

  constructor(context: ViewContext) {
    ({ data: this.data, store: this.store, jobs: this.jobs, showError: this.showError } = context);
    const { data, jobs } = context;
    this.map = new MapView({
      hover: (i, x, y) => this.onHover(i, x, y),
      click: (i) => this.onClick(i),
      zoomEnd: (box) => this.store.update({ zoom: box }, "replace"),
      glideEnd: () => this.afterGlide(),
      resized: () => {
        if (!this.map.stats.gliding) this.updateLabels();
      },
    });
    this.panel = new NeuronPanel(data, {
      selectEpoch: (epoch) => this.store.update({ epoch }, "replace"),
      selectNeighbour: (n) => this.selectNeighbour(n),
      colourByImportance: (imp) => this.store.update({ color: "importance", imp }),
      close: () => this.store.update({ neuron: null }),
    });
    this.slider = new EpochSlider({
      select: (epoch) => this.store.update({ epoch }, "replace"),
      request: (epoch) => void this.requestEpoch(epoch),
      togglePlay: () => this.togglePlay(),
    });
    this.sparklines = new Sparklines((epoch) => this.store.update({ epoch }, "replace"));
    this.map.insetLeft = 250;
    const tools = h(
      "div",
      { class: "map-tools" },
      h("button", { type: "button", class: "small-button", "data-testid": "export-png", title: "Download the map as PNG (2×, with labels and legend)", onclick: () => void this.exportPng() }, "PNG"),
      h("button", { type: "button", class: "small-button", "data-testid": "export-csv", title: "Download the visible points as CSV", onclick: () => this.exportCsv() }, "CSV"),
    );
    this.mapArea = h("div", { class: "map-area" }, this.map.element, this.legend, tools, this.message);
    this.element = h(
      "section",
      { class: "map-view" },
      h("div", { class: "map-column" }, this.mapArea, h("div", { class: "timeline" }, this.slider.element, this.sparklines.element)),
      this.panel.element,
    );
    jobs.onChange((active) => this.onJobs(active));
  }

  // ---- public -------------------------------------------------------------------------------------------

  /** Bring the view to `state` (loads what is missing). */
  async render(state: ViewState): Promise<void> {
    const gen = ++this.generation;
    this.idle = false;
    this.rendering = true;
    try {
      await this.renderState(state, gen);
    } catch (err) {
      if (gen !== this.generation) return;
      const message = err instanceof ApiError ? err.detail : err instanceof Error ? err.message : String(err);
      this.showError(message);
    } finally {
      if (gen === this.generation) {
        this.rendering = false;
        this.idle = !this.map.stats.gliding;
      }
    }
  }

  /** Step to the previous/next computed epoch. */
  step(delta: number): void {
    const s = this.shown;
    if (!s) return;
    const i = s.computed.findIndex((c) => c.epoch === s.epoch);
    const j = Math.max(0, Math.min(s.computed.length - 1, i + delta));
    if (j !== i) this.store.update({ epoch: s.computed[j].epoch }, "replace");
  }

  togglePlay(): void {
    this.playing = !this.playing;
    window.clearTimeout(this.playTimer);
    if (this.playing) {
      const s = this.shown;
      // From the last epoch, play starts again from the first.
      if (s && s.computed.length && s.computed[s.computed.length - 1].epoch === s.epoch)
        this.store.update({ epoch: s.computed[0].epoch }, "replace");
      else this.scheduleNextPlayStep();
    }
    this.updateSlider();
  }

  /** The point index of a neuron in the shown points, or -1. */
  indexOf(neuronId: number): number {
    const p = this.shown?.points;
    if (!p) return -1;
    return p.neuronId.indexOf(neuronId);
  }

  // ---- rendering ------------------------------------------------------------------------------------------

  private async renderState(state: ViewState, gen: number): Promise<void> {
    const stale = () => gen !== this.generation;
    if (!this.data.spaces.length) return this.showEmpty();
    const spaceId = state.space ?? this.data.spaces[this.data.spaces.length - 1].id;
    const space = this.data.space(spaceId) ?? (await this.data.loadSpace(spaceId));
    if (stale()) return;
    const runId = state.run ?? space.base_run_id;
    const run = this.data.run(runId) ?? (await this.data.loadRun(runId));
    if (stale()) return;
    const computed = space.snapshots
      .filter((s) => s.run_id === run.id)
      .map((s) => ({ epoch: s.epoch, snapshotId: s.snapshot_id }))
      .sort((a, b) => a.epoch - b.epoch);
    const classNames = this.data.classNames(space.dataset_id);
    void this.loadMetrics(run.id, space.id);
    if (!computed.length) {
      this.shown = null;
      this.map.setPoints(null, null);
      this.panel.hide();
      this.updateSliderFor(run, space, [], null);
      this.showMessage(
        h("h2", {}, `No epoch of “${run.name}” is placed in space “${space.name}” yet`),
        h("p", {}, "Grey ticks on the slider below are checkpoints: click one to compute it, or compute them all."),
        h("button", { type: "button", class: "primary", onclick: () => void this.requestAll(run, space) }, "Compute every epoch"),
        this.activeJobsList(),
      );
      return;
    }
    const fallback =
      run.id === space.base_run_id && computed.some((c) => c.epoch === space.base_epoch)
        ? space.base_epoch
        : computed[computed.length - 1].epoch;
    const epoch = state.epoch !== null && computed.some((c) => c.epoch === state.epoch) ? state.epoch : fallback;
    if (state.space !== space.id || state.run !== run.id || state.epoch !== epoch) {
      // Normalise the URL to what is shown (no history entry); the update re-enters render.
      this.store.update({ space: space.id, run: run.id, epoch }, "replace");
      return;
    }
    const snapshotId = computed.find((c) => c.epoch === epoch)!.snapshotId;
    const [points, layers, neurons] = await Promise.all([
      this.data.points(space.id, snapshotId),
      this.data.layers(run.id),
      this.data.neurons(run.id),
    ]);
    if (stale()) return;
    this.timings.pointsArrivedAt = performance.now();
    this.hideMessage();
    this.showError(null);

    const spaceChanged = this.domainSpace !== space.id;
    if (spaceChanged) {
      const base = await this.data.points(space.id, space.base_snapshot_id).catch(() => null);
      if (stale()) return;
      this.map.setDomain(paddedExtent(base ? [base, points] : [points]));
      this.domainSpace = space.id;
      this.map.setBackdrop(base);
    }
    const isBase = snapshotId === space.base_snapshot_id;
    this.map.setBackdropVisible(!isBase);

    const needsConcepts = state.color === "class" || state.cls !== null;
    const conceptsPromise = this.data.concepts(space.id, snapshotId).catch(() => null);
    const concepts = needsConcepts ? await conceptsPromise : this.shown?.snapshotId === snapshotId ? this.shown.concepts : null;
    if (stale()) return;
    const extra = await this.colourInputs(state, space, run, computed, epoch, points);
    if (stale()) return;

    const previous = this.shown;
    const sameRun = previous && previous.space.id === space.id && previous.run.id === run.id;
    const shown: Shown = { space, run, epoch, snapshotId, points, layers, neurons, concepts, classNames, computed, style: null };
    shown.style = computeStyle({
      points,
      mode: state.color,
      layers,
      hidden: state.hidden,
      concepts,
      movement: extra.movement,
      importance: extra.importance,
      cls: state.cls,
    });
    this.shown = shown;
    const firstDraw = !previous || previous.points !== points;
    if (previous && sameRun && previous.points !== points) {
      this.map.glideTo(points, shown.style.style);
      this.prefetchNext();
    } else if (firstDraw) {
      this.map.setPoints(points, shown.style.style);
      this.timings.firstDrawMs = null;
      const arrived = this.timings.pointsArrivedAt;
      this.map.onNextDraw(() => requestAnimationFrame(() => (this.timings.firstDrawMs = performance.now() - arrived)));
    } else {
      this.map.setStyle(shown.style.style);
    }
    if (!sameZoom(state.zoom, this.map.zoomBox())) this.map.setZoomBox(state.zoom);
    this.renderLegend(shown.style.legend, state, shown);
    this.updateSlider();
    this.renderSelection(state, shown);
    if (!this.map.stats.gliding) this.updateLabels();
    if (!concepts) {
      const c = await conceptsPromise;
      if (stale() || !c) return;
      shown.concepts = c;
      if (!this.map.stats.gliding) this.updateLabels();
    }
    if (this.playing) this.scheduleNextPlayStep();
  }

  /** Movement or importance inputs of the colouring, when chosen. */
  private async colourInputs(
    state: ViewState,
    space: Space,
    run: Run,
    computed: { epoch: number; snapshotId: number }[],
    epoch: number,
    points: Points,
  ): Promise<{ movement: Float32Array | null; importance: Map<number, number> | null }> {
    let movement: Float32Array | null = null;
    let importance: Map<number, number> | null = null;
    if (state.color === "movement") {
      const i = computed.findIndex((c) => c.epoch === epoch);
      movement = new Float32Array(points.n).fill(NaN);
      if (i > 0) movement = displacement(points, await this.data.points(space.id, computed[i - 1].snapshotId));
    }
    if (state.color === "importance") {
      let imp = state.imp;
      if (imp === null) {
        const list = await api.importances(run.id);
        if (list.length) {
          this.store.update({ imp: list[0].id }, "replace");
          imp = list[0].id;
        }
      }
      if (imp !== null) {
        const scores = await api.scores(imp);
        importance = new Map(scores.neuron_id.map((id, k) => [id, scores.score[k]]));
      } else importance = new Map();
    }
    return { movement, importance };
  }

  private renderSelection(state: ViewState, shown: Shown): void {
    const index = state.neuron === null ? -1 : this.indexOf(state.neuron);
    this.map.setSelected(index);
    if (state.neuron === null || index < 0) {
      this.panelKey = "";
      this.panel.hide();
      this.map.setTrajectory([]);
      if (state.neuron !== null && index < 0) this.showError(`neuron ${state.neuron} is not a neuron of run “${shown.run.name}”`);
      return;
    }
    const key = `${shown.space.id}:${shown.snapshotId}:${state.neuron}`;
    if (key === this.panelKey) return;
    this.panelKey = key;
    void this.panel.show({
      spaceId: shown.space.id,
      runId: shown.run.id,
      epoch: shown.epoch,
      snapshotId: shown.snapshotId,
      neuronId: state.neuron,
      evolution: shown.computed,
      classNames: shown.classNames,
    });
    const neuronId = state.neuron;
    void api
      .trajectory(shown.space.id, neuronId)
      .then((t) => {
        if (this.store.get().neuron !== neuronId) return;
        const cur = this.shown?.epoch;
        const pts: TrajectoryPoint[] = t.points
          .filter((p) => p.x !== null && p.y !== null)
          .map((p) => ({ x: p.x as number, y: p.y as number, epoch: p.epoch, current: p.epoch === cur }));
        this.map.setTrajectory(pts);
      })
      .catch(() => this.map.setTrajectory([]));
  }

  private afterGlide(): void {
    this.updateLabels();
    this.idle = !this.rendering;
    if (this.playing) this.scheduleNextPlayStep();
  }

  private updateLabels(): void {
    const s = this.shown;
    if (!s || !s.concepts) return this.map.setLabels([]);
    const { classIdx, share } = alignedConcepts(s);
    const pos = this.map.cssPositions();
    this.map.setLabels(
      placeLabels({
        px: pos.x,
        py: pos.y,
        classIdx,
        share,
        visible: s.style?.style.visible ?? null,
        names: s.concepts.classNames.length ? s.concepts.classNames : s.classNames,
        width: pos.width,
        height: pos.height,
      }),
    );
  }

  // ---- legend, slider, metrics ----------------------------------------------------------------------------

  private renderLegend(legend: Legend, state: ViewState, shown: Shown): void {
    // Rebuilt only when something it shows changed: an epoch change within a run usually keeps it.
    const key = JSON.stringify([legend, state.color, state.cls, state.imp, shown.run.id, shown.classNames, shown.style?.highlighted]);
    if (key === this.legendKey) return;
    this.legendKey = key;
    const body: HTMLElement[] = [colourPicker(state.color, (color) => this.store.update({ color })), h("div", { class: "legend-title" }, legend.title)];
    if (legend.kind === "categorical") {
      const toggle = legend.title === "Layer";
      body.push(
        h(
          "ul",
          { class: "legend-items" },
          ...legend.entries.map((e) =>
            h(
              "li",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: e.off ? "legend-item off" : "legend-item",
                  "data-layer": toggle ? e.key : null,
                  "data-class": toggle ? null : e.key,
                  "aria-pressed": toggle ? String(!e.off) : null,
                  title: toggle ? "show / hide this layer" : "highlight this class",
                  onclick: () => (toggle ? this.toggleLayer(e.key) : this.store.update({ cls: state.cls === e.key ? null : e.key })),
                },
                h("span", { class: "swatch", style: `background:${e.colour}` }),
                h("span", { class: "legend-label" }, e.label),
                h("span", { class: "legend-count" }, String(e.count)),
              ),
            ),
          ),
        ),
      );
    } else {
      body.push(
        h("div", { class: "ramp", style: `background:linear-gradient(to right, ${legend.colours.join(",")})` }),
        h("div", { class: "ramp-labels" }, h("span", {}, legend.low), h("span", {}, legend.high)),
        h("div", { class: "legend-note" }, legend.note),
      );
      if (state.color === "importance") body.push(this.importancePicker(state, shown));
    }
    const names = shown.classNames;
    if (names.length) {
      const select = h(
        "select",
        {
          "data-testid": "class-picker",
          "aria-label": "Highlight a class",
          onchange: (e: Event) => {
            const v = (e.target as HTMLSelectElement).value;
            this.store.update({ cls: v === "" ? null : Number(v) });
          },
        },
        h("option", { value: "" }, "none"),
        ...names.map((n, i) => h("option", { value: i, selected: state.cls === i }, n)),
      );
      const count = state.cls !== null && shown.style ? ` — ${shown.style.highlighted} neurons` : "";
      body.push(h("label", { class: "class-picker" }, "Highlight class ", select, h("span", { class: "muted" }, count)));
    }
    setChildren(this.legend, ...body);
  }

  private importancePicker(state: ViewState, shown: Shown): HTMLElement {
    const wrap = h("div", { class: "imp-picker" }, h("span", { class: "muted" }, "loading rankings…"));
    void api.importances(shown.run.id).then((list) => {
      if (!list.length) {
        setChildren(wrap, h("span", { class: "muted" }, `No importance computed for “${shown.run.name}”.`));
        return;
      }
      setChildren(
        wrap,
        h(
          "select",
          {
            "aria-label": "Importance ranking",
            "data-testid": "importance-picker",
            onchange: (e: Event) => this.store.update({ imp: Number((e.target as HTMLSelectElement).value) }),
          },
          ...list.map((i) =>
            h(
              "option",
              { value: i.id, selected: i.id === state.imp },
              `${i.class_name ?? `class ${i.class_idx}`} · e${i.epoch_from} → e${i.epoch_to}`,
            ),
          ),
        ),
      );
    });
    return wrap;
  }

  private toggleLayer(idx: number): void {
    const hidden = new Set(this.store.get().hidden);
    if (hidden.has(idx)) hidden.delete(idx);
    else hidden.add(idx);
    this.store.update({ hidden: [...hidden].sort((a, b) => a - b) });
  }

  private sliderEpochs(run: Run, space: Space, computedEpochs: Set<number>): SliderEpoch[] {
    const pending = new Map<number, number>();
    for (const job of this.jobs.active) {
      if (job.kind !== "add_snapshot" || Number(job.params.space_id) !== space.id) continue;
      pending.set(Number(job.params.snapshot_id), job.status === "running" ? job.progress : 0);
    }
    const placed = new Map(space.snapshots.map((ss) => [ss.snapshot_id, ss]));
    return run.snapshots.map((s) => ({
      epoch: s.epoch,
      computed: computedEpochs.has(s.epoch),
      pending: computedEpochs.has(s.epoch) ? null : (pending.get(s.id) ?? null),
      unstable: unstableReason(placed.get(s.id)),
    }));
  }

  private updateSlider(): void {
    const s = this.shown;
    if (!s) return;
    this.updateSliderFor(s.run, s.space, s.computed, s.epoch);
  }

  private updateSliderFor(run: Run, space: Space, computed: { epoch: number }[], epoch: number | null): void {
    this.slider.update(this.sliderEpochs(run, space, new Set(computed.map((c) => c.epoch))), epoch, this.playing);
    this.sparklines.update(this.metrics, epoch);
  }

  private async loadMetrics(runId: number, spaceId: number): Promise<void> {
    const key = `${runId}:${spaceId}:${this.data.space(spaceId)?.snapshots.length ?? 0}`;
    if (key === this.metricsKey) return;
    this.metricsKey = key;
    try {
      this.metrics = (await api.metrics(runId, spaceId)).epochs;
    } catch {
      this.metrics = [];
    }
    this.sparklines.update(this.metrics, this.shown?.epoch ?? null);
  }

  // ---- jobs -------------------------------------------------------------------------------------------------

  private async requestEpoch(epoch: number): Promise<void> {
    const s = this.shown;
    const state = this.store.get();
    const run = s?.run ?? (state.run !== null ? this.data.run(state.run) : undefined);
    const space = s?.space ?? (state.space !== null ? this.data.space(state.space) : undefined);
    if (!run || !space) return;
    const snap = run.snapshots.find((x) => x.epoch === epoch);
    if (!snap) return;
    try {
      await api.createJob("add_snapshot", { space_id: space.id, snapshot_id: snap.id }, 100);
      this.requested.set(`${space.id}:${run.id}`, epoch);
      this.jobs.poke();
    } catch (err) {
      this.showError(err instanceof ApiError ? err.detail : String(err));
    }
  }

  private async requestAll(run: Run, space: Space): Promise<void> {
    const done = new Set(space.snapshots.filter((s) => s.run_id === run.id).map((s) => s.snapshot_id));
    try {
      for (const snap of run.snapshots)
        if (!done.has(snap.id)) await api.createJob("add_snapshot", { space_id: space.id, snapshot_id: snap.id }, 50);
      this.jobs.poke();
    } catch (err) {
      this.showError(err instanceof ApiError ? err.detail : String(err));
    }
  }

  /** After jobs finished and the data was refreshed: show what is new, follow a requested epoch. */
  onDataRefreshed(): void {
    const state = this.store.get();
    const s = this.shown;
    // Issue 16 (`?follow=1`): show the newest placed epoch of a run that is still training.
    const followed = s && state.follow ? this.followNewest(s.space.id, s.run.id, s.epoch) : false;
    if (followed) return;
    if (s) {
      const wanted = this.requested.get(`${s.space.id}:${s.run.id}`);
      const space = this.data.space(s.space.id);
      if (wanted !== undefined && space?.snapshots.some((x) => x.run_id === s.run.id && x.epoch === wanted)) {
        this.requested.delete(`${s.space.id}:${s.run.id}`);
        this.store.update({ epoch: wanted }, "replace");
        return;
      }
    }
    void this.render(state);
  }

  /** Move to the newest placed epoch of the run when it is newer than `shown`; whether it moved. */
  private followNewest(spaceId: number, runId: number, shown: number): boolean {
    const epochs = (this.data.space(spaceId)?.snapshots ?? []).filter((x) => x.run_id === runId).map((x) => x.epoch);
    const target = followTarget(epochs, shown);
    if (target === null) return false;
    this.store.update({ epoch: target }, "replace");
    return true;
  }

  private onJobs(active: Job[]): void {
    if (this.shown) return this.updateSlider();
    const list = this.message.querySelector(".job-list");
    if (list) list.replaceWith(this.activeJobsList(active));
    else if (active.length && !this.element.hidden) void this.render(this.store.get());
  }

  private activeJobsList(active: Job[] = this.jobs.active): HTMLElement {
    const running = active.filter((j) => j.status === "running");
    const queued = active.length - running.length;
    const log = this.jobs.log.slice(-8);
    return h(
      "div",
      { class: "job-list" },
      ...running.map((j) =>
        h(
          "div",
          { class: "job-row" },
          h("div", { class: "job-msg" }, h("b", {}, j.kind.replace("_", " ")), " ", j.message || "starting…"),
          h("div", { class: "bar" }, h("span", { style: `width:${(100 * j.progress).toFixed(1)}%` })),
          h("div", { class: "muted" }, pct(j.progress)),
        ),
      ),
      queued ? h("p", { class: "muted" }, `${queued} more job(s) queued.`) : null,
      log.length
        ? h("details", { class: "job-log", open: true }, h("summary", {}, "What the worker said"), h("ol", {}, ...log.map((l) => h("li", {}, l.message))))
        : null,
    );
  }

  // ---- empty and error states -------------------------------------------------------------------------------

  private showEmpty(): void {
    this.shown = null;
    this.map.setPoints(null, null);
    this.panel.hide();
    const active = this.jobs.active;
    if (active.length) {
      this.showMessage(
        h("h2", {}, "Computing — the map appears as soon as the first space is built"),
        h("p", {}, "Nothing to show yet; the worker is busy. This page updates by itself."),
        this.activeJobsList(active),
      );
    } else {
      this.showMessage(
        h("h2", {}, "No data yet"),
        h("p", {}, "Run ", h("code", {}, "make demo"), " to build the demo world (or ", h("code", {}, "conceptevo demo"), "); this page follows its progress by itself."),
        h(
          "p",
          {},
          "For your own model: ",
          h("code", {}, "conceptevo add-dataset DIR"),
          ", ",
          h("code", {}, "conceptevo add-run NAME --arch A --checkpoints DIR --dataset NAME"),
          ", ",
          h("code", {}, "conceptevo build-space --base RUN@EPOCH --compute RUN"),
          ", and a ",
          h("code", {}, "conceptevo worker"),
          ".",
        ),
      );
    }
  }

  private showMessage(...children: (HTMLElement | null)[]): void {
    setChildren(this.message, h("div", { class: "card" }, ...children));
    this.message.hidden = false;
    this.element.classList.toggle("empty", !this.shown);
  }

  private hideMessage(): void {
    this.message.hidden = true;
    this.message.replaceChildren();
    this.element.classList.remove("empty");
  }

  // ---- export ---------------------------------------------------------------------------------------------

  private async exportPng(): Promise<void> {
    const s = this.shown;
    if (!s) return;
    const title = `${s.run.name} · epoch ${s.epoch} · space ${s.space.name}`;
    await downloadMapPng(`conceptevo-${s.run.name}-epoch${s.epoch}.png`, this.map, title, s.style?.legend ?? null);
  }

  private exportCsv(): void {
    const s = this.shown;
    if (!s) return;
    const rows = visibleRows(this.map, { ...s, runName: s.run.name, style: s.style?.style ?? null });
    downloadCsv(`conceptevo-${s.run.name}-epoch${s.epoch}-points.csv`, POINTS_CSV_HEADER, rows);
  }

  // ---- interaction ------------------------------------------------------------------------------------------

  private onHover(index: number, clientX: number, clientY: number): void {
    const s = this.shown;
    if (!s || index < 0) return this.tooltip.hide();
    const neuronId = s.points.neuronId[index];
    this.tooltip.show(`${s.snapshotId}:${neuronId}`, clientX, clientY, () => {
      const layerIdx = s.points.layerIdx[index];
      const layer = s.layers.find((l) => l.idx === layerIdx);
      const channel = s.neurons.channel.get(neuronId);
      const lines = [`${this.data.runName(s.run.id)} · epoch ${s.epoch}`];
      if (s.concepts) {
        const { classIdx, share } = alignedConcepts(s);
        const c = classIdx[index];
        if (c >= 0) lines.push(`mostly ${s.classNames[c] ?? `class ${c}`} (${Math.round(100 * share[index])} % of stimuli)`);
      }
      return {
        title: `${layer?.name ?? `layer ${layerIdx}`}:${channel ?? "?"}`,
        lines,
        thumbs: [0, 1, 2].map((r) => ({ url: patchUrl(s.snapshotId, neuronId, r), alt: `patch ${r + 1}` })),
      };
    });
  }

  private onClick(index: number): void {
    const s = this.shown;
    if (!s) return;
    if (index < 0) return;
    this.store.update({ neuron: s.points.neuronId[index] });
  }

  private selectNeighbour(n: Neighbour): void {
    const state = this.store.get();
    this.store.update({ run: n.run_id, epoch: n.epoch, neuron: n.neuron_id, hidden: state.run === n.run_id ? state.hidden : [] }, "push");
  }

  private scheduleNextPlayStep(): void {
    window.clearTimeout(this.playTimer);
    if (!this.playing || this.map.stats.gliding) return;
    this.playTimer = window.setTimeout(() => {
      const s = this.shown;
      if (!s || !this.playing) return;
      const i = s.computed.findIndex((c) => c.epoch === s.epoch);
      if (i < 0 || i >= s.computed.length - 1) {
        this.playing = false;
        this.updateSlider();
        return;
      }
      this.store.update({ epoch: s.computed[i + 1].epoch }, "replace");
    }, 650);
  }

  private prefetchNext(): void {
    const s = this.shown;
    if (!s) return;
    const i = s.computed.findIndex((c) => c.epoch === s.epoch);
    const next = s.computed[i + 1];
    if (next) void this.data.points(s.space.id, next.snapshotId).catch(() => undefined);
  }
}

const COLOUR_LABELS: Record<Colouring, string> = {
  layer: "layer",
  class: "dominant stimulus class",
  movement: "movement since last epoch",
  importance: "importance for a class",
};

/** The "Colour by" select of a map's legend (all colourings, or the given subset). */
export function colourPicker(
  value: Colouring,
  onChange: (c: Colouring) => void,
  options: readonly Colouring[] = COLOURINGS,
): HTMLElement {
  return h(
    "label",
    { class: "colour-picker" },
    "Colour by ",
    h(
      "select",
      { "data-testid": "colour-select", onchange: (e: Event) => onChange((e.target as HTMLSelectElement).value as Colouring) },
      ...options.map((c) => h("option", { value: c, selected: c === value }, COLOUR_LABELS[c])),
    ),
  );
}

/** The shown concepts in the points' order, aligned once per shown snapshot. */
function alignedConcepts(s: Shown): { classIdx: Int32Array; share: Float32Array } {
  if (!s.concepts) return { classIdx: new Int32Array(0), share: new Float32Array(0) };
  return (s.aligned ??= alignConcepts(s.points, s.concepts));
}
