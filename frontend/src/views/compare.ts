/**
 * View 3 — two runs side by side in the same space: how a run that went wrong differs, concept by concept,
 * from one that went right.
 *
 * Both maps share the space's extent and zoom (linked zoom and pan); hovering a neuron rings the neuron of
 * the same layer and channel on the other side (when the runs share an architecture); a brushed region lights
 * the neurons of both runs inside it and counts them per layer; density contours of both runs (each in its
 * colour, on both maps) show regions one run populates and the other abandons. The second run's epoch
 * follows the first by epoch, by accuracy milestone, or not at all (state.sync).
 */

import type { ZoomTransform } from "d3";

import { ApiError, api, patchUrl, spriteUrl } from "../api/client";
import type { Concepts, Points } from "../api/columns";
import type { Layer, Run, Space } from "../api/types";
import { countByLayer, syncedEpoch } from "../compare/sync";
import type { NeuronIndex } from "../data";
import { downloadCsv, downloadMapPng, POINTS_CSV_HEADER, visibleRows } from "../export";
import { indicesIn, paddedExtent, sameZoom } from "../map/extent";
import { MapView, type MapStyle } from "../map/mapview";
import { computeStyle, type Legend } from "../map/style";
import type { SyncMode, ViewState, ZoomBox } from "../state/url";
import { h, setChildren } from "../ui/dom";
import { EpochSlider } from "../ui/slider";
import { mapTooltip } from "../ui/tooltip";
import { colourPicker } from "./map";
import type { ViewContext, ViewController } from "./view";

/** Colours of the two sides (contours, headers): Okabe-Ito blue and vermillion. */
const SIDE_COLOURS = ["#0072B2", "#D55E00"] as const;

type SideKey = "a" | "b";

interface SideData {
  run: Run;
  epoch: number;
  snapshotId: number;
  points: Points;
  layers: Layer[];
  neurons: NeuronIndex;
  concepts: Concepts | null;
  computed: { epoch: number; snapshotId: number }[];
  legend: Legend | null;
  style: MapStyle | null;
}

class Side {
  readonly map: MapView;
  readonly slider: EpochSlider;
  readonly head = h("div", { class: "side-head" });
  readonly element: HTMLElement;
  data: SideData | null = null;

  constructor(
    readonly key: SideKey,
    map: MapView,
    slider: EpochSlider,
  ) {
    this.map = map;
    this.slider = slider;
    this.element = h(
      "div",
      { class: `compare-side side-${key}`, "data-testid": `compare-${key}` },
      this.head,
      h("div", { class: "map-area" }, map.element),
      h("div", { class: "timeline" }, slider.element),
    );
  }
}

export class CompareView implements ViewController {
  readonly element: HTMLElement;
  /** Loaded (nothing pending) — idle also waits for both maps' glides. */
  private loaded = false;

  private readonly sides: Record<SideKey, Side>;
  private readonly controls = h("div", { class: "compare-controls" });
  private readonly summary = h("div", { class: "compare-summary", "data-testid": "region-summary" });
  private readonly pinned = h("div", { class: "compare-pinned", "data-testid": "pinned" });
  private readonly message = h("div", { class: "map-message" });
  private readonly tooltip = mapTooltip();
  private generation = 0;
  private domainSpace: number | null = null;
  private space: Space | null = null;
  private brushBox: ZoomBox | null = null;
  private brushing = false;
  private contoursKey = "";
  private pinnedKey = "";

  constructor(private readonly ctx: ViewContext) {
    const make = (key: SideKey): Side => {
      const other = (): Side => this.sides[key === "a" ? "b" : "a"];
      const map = new MapView({
        hover: (i, x, y) => this.onHover(key, i, x, y),
        click: (i) => this.onClick(key, i),
        zoom: (t: ZoomTransform) => other().map.applyTransform(t),
        zoomEnd: (box) => this.ctx.store.update({ zoom: box }, "replace"),
        brush: (box) => this.onBrush(key, box),
      });
      map.glideMs = 380;
      const slider = new EpochSlider({
        select: (epoch) => this.selectEpoch(key, epoch),
        request: (epoch) => void this.requestEpoch(key, epoch),
        togglePlay: () => undefined,
      });
      slider.element.classList.add("no-play");
      return new Side(key, map, slider);
    };
    this.sides = { a: make("a"), b: make("b") };
    this.element = h(
      "section",
      { class: "compare-view" },
      this.controls,
      h("div", { class: "compare-maps" }, this.sides.a.element, this.sides.b.element, this.message),
      h("div", { class: "compare-bottom" }, this.summary, this.pinned),
    );
    ctx.jobs.onChange(() => {
      if (!this.element.hidden) this.updateSliders();
    });
  }

  get idle(): boolean {
    return this.loaded && !this.sides.a.map.stats.gliding && !this.sides.b.map.stats.gliding;
  }

  async render(state: ViewState): Promise<void> {
    const gen = ++this.generation;
    this.loaded = false;
    try {
      await this.renderState(state, gen);
    } catch (err) {
      if (gen === this.generation) this.ctx.showError(err instanceof ApiError ? err.detail : String(err));
    } finally {
      if (gen === this.generation) this.loaded = true;
    }
  }

  onDataRefreshed(): void {
    void this.render(this.ctx.store.get());
  }

  // ---- rendering ------------------------------------------------------------------------------------------

  private async renderState(state: ViewState, gen: number): Promise<void> {
    const { data, store } = this.ctx;
    const stale = () => gen !== this.generation;
    if (!data.spaces.length) {
      this.showMessage("No space yet", "Run `make demo` (or build a space with `conceptevo build-space`) to compare runs.");
      return;
    }
    const space = data.space(state.space ?? data.spaces[data.spaces.length - 1].id) ?? (await data.loadSpace(state.space ?? data.spaces[data.spaces.length - 1].id));
    if (stale()) return;
    this.space = space;
    const runs = data.runs.filter((r) => r.dataset_id === space.dataset_id);
    const runAId = state.run ?? space.base_run_id;
    const runBId = state.runB ?? runs.find((r) => r.id !== runAId)?.id ?? null;
    if (runBId === null) {
      this.showMessage("Only one run", "Register a second run on the same data set to compare it (`conceptevo add-run`).");
      return;
    }
    const [runA, runB] = await Promise.all([data.run(runAId) ?? data.loadRun(runAId), data.run(runBId) ?? data.loadRun(runBId)]);
    if (stale()) return;
    const computedOf = (run: Run) =>
      space.snapshots
        .filter((s) => s.run_id === run.id)
        .map((s) => ({ epoch: s.epoch, snapshotId: s.snapshot_id }))
        .sort((x, y) => x.epoch - y.epoch);
    const computedA = computedOf(runA);
    const computedB = computedOf(runB);
    this.renderControls(state, runs, runA, runB);
    if (!computedA.length || !computedB.length) {
      const missing = !computedA.length ? runA : runB;
      this.showMessage(`No epoch of “${missing.name}” is placed in space “${space.name}” yet`, "Compute its epochs from the map view's slider, or with `conceptevo compute`.");
      return;
    }
    const epochA = state.epoch !== null && computedA.some((c) => c.epoch === state.epoch) ? state.epoch : computedA[computedA.length - 1].epoch;
    const epochB = syncedEpoch(state.sync, epochA, runA.snapshots, runB.snapshots, computedB.map((c) => c.epoch), state.epochB) as number;
    if (state.space !== space.id || state.run !== runA.id || state.runB !== runB.id || state.epoch !== epochA || state.epochB !== epochB) {
      store.update({ space: space.id, run: runA.id, runB: runB.id, epoch: epochA, epochB }, "replace");
      return;
    }
    this.message.hidden = true;
    const [a, b] = await Promise.all([
      this.loadSide(space, runA, epochA, computedA, state),
      this.loadSide(space, runB, epochB, computedB, state),
    ]);
    if (stale()) return;
    if (this.domainSpace !== space.id) {
      const base = await data.points(space.id, space.base_snapshot_id).catch(() => null);
      if (stale()) return;
      const domain = paddedExtent(base ? [base, a.points, b.points] : [a.points, b.points]);
      for (const side of Object.values(this.sides)) {
        side.map.setDomain(domain);
        side.map.setBackdrop(null);
      }
      this.domainSpace = space.id;
      this.brushBox = null;
    }
    this.show("a", a);
    this.show("b", b);
    if (!sameZoom(state.zoom, this.sides.a.map.zoomBox())) {
      this.sides.a.map.setZoomBox(state.zoom);
      this.sides.b.map.setZoomBox(state.zoom);
    }
    this.applyBrush();
    this.updateContours(state);
    this.updateSliders();
    this.renderPinned(state);
  }

  private async loadSide(space: Space, run: Run, epoch: number, computed: SideData["computed"], state: ViewState): Promise<SideData> {
    const { data } = this.ctx;
    const snapshotId = computed.find((c) => c.epoch === epoch)!.snapshotId;
    const needsConcepts = state.color === "class" || state.cls !== null;
    const [points, layers, neurons, concepts] = await Promise.all([
      data.points(space.id, snapshotId),
      data.layers(run.id),
      data.neurons(run.id),
      needsConcepts ? data.concepts(space.id, snapshotId).catch(() => null) : Promise.resolve(null),
    ]);
    const styled = computeStyle({
      points,
      mode: state.color === "class" ? "class" : "layer",
      layers,
      hidden: state.hidden,
      concepts,
      movement: null,
      importance: null,
      cls: state.cls,
    });
    return { run, epoch, snapshotId, points, layers, neurons, concepts, computed, legend: styled.legend, style: styled.style };
  }

  private show(key: SideKey, next: SideData): void {
    const side = this.sides[key];
    const prev = side.data;
    side.data = next;
    const style = this.emphasised(next);
    if (prev && prev.run.id === next.run.id && prev.points !== next.points) side.map.glideTo(next.points, style);
    else if (!prev || prev.points !== next.points) side.map.setPoints(next.points, style);
    else side.map.setStyle(style);
    const state = this.ctx.store.get();
    const selected = key === "a" ? state.neuron : state.neuronB;
    side.map.setSelected(selected === null ? -1 : next.points.neuronId.indexOf(selected));
    const snap = next.run.snapshots.find((s) => s.epoch === next.epoch);
    setChildren(
      side.head,
      h("span", { class: "side-swatch", style: `background:${SIDE_COLOURS[key === "a" ? 0 : 1]}` }),
      h("b", {}, next.run.name),
      h("span", {}, ` epoch ${next.epoch}`),
      h("span", { class: "muted" }, snap?.train_top1 !== null && snap?.train_top1 !== undefined ? ` · train top-1 ${snap.train_top1.toFixed(2)}` : ""),
      h("span", { class: "muted" }, snap?.val_top1 !== null && snap?.val_top1 !== undefined ? ` · val ${snap.val_top1.toFixed(2)}` : ""),
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "small-button", title: "Download this map as PNG (2×, with legend)", onclick: () => void this.exportPng(key) }, "PNG"),
      h("button", { type: "button", class: "small-button", title: "Download the visible points as CSV", onclick: () => this.exportCsv(key) }, "CSV"),
    );
  }

  /** The side's style with the brushed region emphasised (null emphasis without a brush). */
  private emphasised(d: SideData): MapStyle {
    const base = d.style as MapStyle;
    if (!this.brushBox) return base;
    const inside = new Uint8Array(d.points.n);
    for (const i of indicesIn(d.points, this.brushBox)) inside[i] = 1;
    return { ...base, emphasis: inside };
  }

  private applyBrush(): void {
    for (const key of ["a", "b"] as SideKey[]) {
      const side = this.sides[key];
      if (side.data) side.map.setStyle(this.emphasised(side.data));
      side.map.setBrushBox(this.brushBox);
    }
    this.renderSummary();
  }

  private renderSummary(): void {
    const a = this.sides.a.data;
    const b = this.sides.b.data;
    if (!this.brushBox || !a || !b) {
      setChildren(
        this.summary,
        h("h3", {}, "Region"),
        h("p", { class: "muted" }, "Turn on ", h("b", {}, "Select region"), " and drag a box on either map: the neurons of both runs inside it light up, counted per layer."),
      );
      return;
    }
    const inA = indicesIn(a.points, this.brushBox);
    const inB = indicesIn(b.points, this.brushBox);
    const names = new Map(a.layers.map((l) => [l.idx, l.name]));
    for (const l of b.layers) if (!names.has(l.idx)) names.set(l.idx, l.name);
    const rows = countByLayer(names, a.points.layerIdx, inA, b.points.layerIdx, inB);
    const top = rows.reduce<(typeof rows)[number] | null>((best, r) => (best === null || Math.abs(r.a - r.b) > Math.abs(best.a - best.b) ? r : best), null);
    setChildren(
      this.summary,
      h("h3", {}, "Region ", h("button", { type: "button", class: "small-button", onclick: () => this.clearBrush() }, "clear")),
      top
        ? h("p", { "data-testid": "region-sentence" }, `In this region ${a.run.name} has ${top.a} ${top.layer} neurons, ${b.run.name} has ${top.b}.`)
        : h("p", { class: "muted" }, "No neuron of either run in this region."),
      h(
        "table",
        { class: "counts" },
        h("thead", {}, h("tr", {}, h("th", {}, "layer"), h("th", {}, a.run.name), h("th", {}, b.run.name))),
        h(
          "tbody",
          {},
          ...rows.map((r) => h("tr", {}, h("td", {}, r.layer), h("td", {}, String(r.a)), h("td", {}, String(r.b)))),
          h("tr", { class: "total" }, h("td", {}, "all"), h("td", {}, String(inA.length)), h("td", {}, String(inB.length))),
        ),
      ),
    );
  }

  private updateContours(state: ViewState): void {
    const a = this.sides.a.data;
    const b = this.sides.b.data;
    const key = state.contours && a && b ? `${a.snapshotId}:${b.snapshotId}` : "";
    if (key === this.contoursKey) return;
    this.contoursKey = key;
    const sets =
      key && a && b
        ? [
            { colour: SIDE_COLOURS[0], x: a.points.x, y: a.points.y },
            { colour: SIDE_COLOURS[1], x: b.points.x, y: b.points.y },
          ]
        : [];
    this.sides.a.map.setContours(sets);
    this.sides.b.map.setContours(sets);
  }

  private updateSliders(): void {
    const space = this.space;
    if (!space) return;
    const active = this.ctx.jobs.active;
    for (const side of Object.values(this.sides)) {
      const d = side.data;
      if (!d) continue;
      const computed = new Set(d.computed.map((c) => c.epoch));
      const pending = new Map<number, number>();
      for (const j of active)
        if (j.kind === "add_snapshot" && Number(j.params.space_id) === space.id) pending.set(Number(j.params.snapshot_id), j.status === "running" ? j.progress : 0);
      side.slider.update(
        d.run.snapshots.map((s) => ({ epoch: s.epoch, computed: computed.has(s.epoch), pending: computed.has(s.epoch) ? null : (pending.get(s.id) ?? null) })),
        d.epoch,
        false,
      );
    }
  }

  private renderControls(state: ViewState, runs: Run[] | { id: number; name: string }[], runA: Run, runB: Run): void {
    const runSelect = (value: number, testid: string, onchange: (id: number) => void) =>
      h(
        "select",
        { "data-testid": testid, onchange: (e: Event) => onchange(Number((e.target as HTMLSelectElement).value)) },
        ...runs.map((r) => h("option", { value: r.id, selected: r.id === value }, r.name)),
      );
    const syncSelect = h(
      "select",
      { "data-testid": "sync-select", onchange: (e: Event) => this.ctx.store.update({ sync: (e.target as HTMLSelectElement).value as SyncMode, epochB: null }) },
      h("option", { value: "epoch", selected: state.sync === "epoch" }, "same epoch"),
      h("option", { value: "milestone", selected: state.sync === "milestone" }, "same train accuracy (milestone)"),
      h("option", { value: "free", selected: state.sync === "free" }, "independent"),
    );
    const sameArch = runA.arch === runB.arch;
    setChildren(
      this.controls,
      h("label", {}, h("span", { class: "side-swatch", style: `background:${SIDE_COLOURS[0]}` }), "Run ", runSelect(runA.id, "run-a", (id) => this.ctx.store.update({ run: id, epoch: null, neuron: null, epochB: null }))),
      h("label", {}, "vs ", h("span", { class: "side-swatch", style: `background:${SIDE_COLOURS[1]}` }), runSelect(runB.id, "run-b", (id) => this.ctx.store.update({ runB: id, epochB: null, neuronB: null }))),
      h("label", {}, "Epochs follow ", syncSelect),
      colourPicker(state.color === "class" ? "class" : "layer", (color) => this.ctx.store.update({ color }), ["layer", "class"]),
      h(
        "label",
        { class: "check" },
        h("input", { type: "checkbox", checked: state.contours, "data-testid": "contours-toggle", onchange: (e: Event) => this.ctx.store.update({ contours: (e.target as HTMLInputElement).checked }) }),
        " density contours",
      ),
      h(
        "button",
        {
          type: "button",
          class: this.brushing ? "toggle on" : "toggle",
          "data-testid": "brush-toggle",
          "aria-pressed": String(this.brushing),
          title: "Drag a box on either map to select a region (drag pans when off)",
          onclick: () => this.toggleBrush(),
        },
        "Select region",
      ),
      sameArch ? null : h("span", { class: "muted" }, "different architectures: hover is not linked"),
    );
  }

  private renderPinned(state: ViewState): void {
    const a = this.sides.a.data;
    const b = this.sides.b.data;
    const key = `${state.neuron}:${state.neuronB}:${a?.snapshotId}:${b?.snapshotId}`;
    if (key === this.pinnedKey) return;
    this.pinnedKey = key;
    if (!a || !b || (state.neuron === null && state.neuronB === null)) {
      setChildren(this.pinned, h("h3", {}, "Pinned neurons"), h("p", { class: "muted" }, "Click a neuron on each map to compare their evolution strips row against row."));
      return;
    }
    const name = (d: SideData, id: number | null) => {
      if (id === null) return "click a neuron on this side";
      const layer = d.layers.find((l) => l.idx === d.neurons.layer.get(id));
      return `${layer?.name ?? "?"}:${d.neurons.channel.get(id) ?? "?"}`;
    };
    const epochs = [...new Set([...a.computed.map((c) => c.epoch), ...b.computed.map((c) => c.epoch)])].sort((x, y) => x - y);
    const cell = (d: SideData, id: number | null, epoch: number) => {
      const snap = d.computed.find((c) => c.epoch === epoch);
      if (id === null || !snap) return h("td", { class: "muted" }, id === null ? "" : "not computed");
      return h("td", {}, h("img", { class: "pinned-sprite", src: spriteUrl(snap.snapshotId, id), alt: `epoch ${epoch}`, loading: "lazy" }));
    };
    setChildren(
      this.pinned,
      h(
        "h3",
        {},
        "Pinned neurons ",
        h("button", { type: "button", class: "small-button", onclick: () => this.ctx.store.update({ neuron: null, neuronB: null }) }, "clear"),
      ),
      h(
        "table",
        { class: "pinned-strips" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "epoch"),
            h("th", {}, this.openLink(a, state.neuron, `${a.run.name} · ${name(a, state.neuron)}`)),
            h("th", {}, this.openLink(b, state.neuronB, `${b.run.name} · ${name(b, state.neuronB)}`)),
          ),
        ),
        h(
          "tbody",
          {},
          ...epochs.map((e) => h("tr", { class: e === a.epoch ? "current" : "" }, h("td", {}, `e${e}`), cell(a, state.neuron, e), cell(b, state.neuronB, e))),
        ),
      ),
    );
  }

  /** A link that opens the neuron in the map view with its full panel. */
  private openLink(d: SideData, neuronId: number | null, text: string): HTMLElement {
    if (neuronId === null) return h("span", { class: "muted" }, text);
    return h(
      "button",
      { type: "button", class: "link", title: "open in the map view", onclick: () => this.ctx.store.update({ view: "map", run: d.run.id, epoch: d.epoch, neuron: neuronId }) },
      text,
    );
  }

  // ---- interaction ----------------------------------------------------------------------------------------

  private selectEpoch(key: SideKey, epoch: number): void {
    const store = this.ctx.store;
    if (key === "a") store.update({ epoch, epochB: store.get().sync === "free" ? store.get().epochB : null }, "replace");
    else store.update({ epochB: epoch, sync: "free" }, "replace");
  }

  private async requestEpoch(key: SideKey, epoch: number): Promise<void> {
    const d = this.sides[key].data;
    const space = this.space;
    const snap = d?.run.snapshots.find((s) => s.epoch === epoch);
    if (!space || !snap) return;
    try {
      await api.createJob("add_snapshot", { space_id: space.id, snapshot_id: snap.id }, 100);
      this.ctx.jobs.poke();
    } catch (err) {
      this.ctx.showError(err instanceof ApiError ? err.detail : String(err));
    }
  }

  private toggleBrush(): void {
    this.brushing = !this.brushing;
    for (const side of Object.values(this.sides)) side.map.setBrushEnabled(this.brushing);
    if (!this.brushing) this.clearBrush();
    const state = this.ctx.store.get();
    const a = this.sides.a.data;
    const b = this.sides.b.data;
    if (a && b) this.renderControls(state, this.ctx.data.runs.filter((r) => r.dataset_id === this.space?.dataset_id), a.run, b.run);
  }

  private clearBrush(): void {
    this.brushBox = null;
    this.applyBrush();
  }

  private onBrush(key: SideKey, box: ZoomBox | null): void {
    this.brushBox = box;
    const other = this.sides[key === "a" ? "b" : "a"];
    other.map.setBrushBox(box);
    this.applyBrush();
  }

  /** The index, on side `to`, of the neuron with the same layer and channel as `neuronId` on side `from`. */
  private counterpart(from: SideKey, neuronId: number): number {
    const src = this.sides[from].data;
    const dst = this.sides[from === "a" ? "b" : "a"].data;
    if (!src || !dst || src.run.arch !== dst.run.arch) return -1;
    const layer = src.neurons.layer.get(neuronId);
    const channel = src.neurons.channel.get(neuronId);
    const id = dst.neurons.byLayerChannel.get(`${layer}:${channel}`);
    return id === undefined ? -1 : dst.points.neuronId.indexOf(id);
  }

  private onHover(key: SideKey, index: number, clientX: number, clientY: number): void {
    const d = this.sides[key].data;
    const other = this.sides[key === "a" ? "b" : "a"];
    if (!d || index < 0) {
      other.map.setLinkedHover(-1);
      this.tooltip.hide();
      return;
    }
    const neuronId = d.points.neuronId[index];
    other.map.setLinkedHover(this.counterpart(key, neuronId));
    this.tooltip.show(`${key}:${d.snapshotId}:${neuronId}`, clientX, clientY, () => {
      const layer = d.layers.find((l) => l.idx === d.points.layerIdx[index]);
      return {
        title: `${layer?.name ?? "?"}:${d.neurons.channel.get(neuronId) ?? "?"}`,
        lines: [`${d.run.name} · epoch ${d.epoch}`, other.data ? "ringed on the other map: same layer and channel" : ""].filter(Boolean),
        thumbs: [0, 1, 2].map((r) => ({ url: patchUrl(d.snapshotId, neuronId, r), alt: `patch ${r + 1}` })),
      };
    });
  }

  private onClick(key: SideKey, index: number): void {
    const d = this.sides[key].data;
    if (!d || index < 0) return;
    const id = d.points.neuronId[index];
    const state = this.ctx.store.get();
    // Pin this neuron and, when the other side has nothing pinned, its counterpart there.
    const j = this.counterpart(key, id);
    const otherData = this.sides[key === "a" ? "b" : "a"].data;
    const counterpartId = j >= 0 && otherData ? otherData.points.neuronId[j] : null;
    if (key === "a") this.ctx.store.update({ neuron: id, neuronB: state.neuronB ?? counterpartId });
    else this.ctx.store.update({ neuronB: id, neuron: state.neuron ?? counterpartId });
  }

  // ---- export ---------------------------------------------------------------------------------------------

  private async exportPng(key: SideKey): Promise<void> {
    const d = this.sides[key].data;
    if (!d) return;
    await downloadMapPng(`conceptevo-${d.run.name}-epoch${d.epoch}.png`, this.sides[key].map, `${d.run.name} · epoch ${d.epoch}`, d.legend);
  }

  private exportCsv(key: SideKey): void {
    const d = this.sides[key].data;
    if (!d) return;
    downloadCsv(`conceptevo-${d.run.name}-epoch${d.epoch}-points.csv`, POINTS_CSV_HEADER, visibleRows(this.sides[key].map, { ...d, runName: d.run.name }));
  }

  private showMessage(title: string, text: string): void {
    setChildren(this.message, h("div", { class: "card" }, h("h2", {}, title), h("p", {}, text)));
    this.message.hidden = false;
  }
}
