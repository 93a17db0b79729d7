/**
 * View 5 — training health (paper §4.5). Small multiples over epochs — train/val top-1, train/val loss,
 * concept diversity (mean differential entropy of the embedding dimensions) and mean movement — with every
 * run of the space overlaid, one colour per run. A run whose concept diversity falls clearly below the
 * reference run's before its accuracy falls behind gets the paper's early warning (rule and thresholds in
 * health/warning.ts); the other orders are said plainly too. Clicking a point opens that run × epoch on
 * the map; each chart exports as a standalone SVG.
 */

import { ApiError, api } from "../api/client";
import type { EpochMetrics, RunSummary, Space } from "../api/types";
import { drawHealthChart, standaloneSvg, type ChartBand, type ChartHit, type ChartPoint, type ChartRun, type ChartSpec } from "../charts/health";
import { OKABE_ITO } from "../colors";
import { download } from "../export";
import { assessRun, isEarlyWarning, type HealthAssessment } from "../health/warning";
import type { ViewState } from "../state/url";
import { fmt, h, pct, setChildren } from "../ui/dom";
import { Tooltip } from "../ui/tooltip";
import type { ViewContext, ViewController } from "./view";

/** A chart of the view: what it plots and how to read a value of it. */
interface Metric extends ChartSpec {
  value: (m: EpochMetrics) => number | null;
  /** Only epochs placed in the space have it (diversity, movement): others are not points at all. */
  spaceOnly: boolean;
  /** A computed epoch with a null value is a collapse (−∞), drawn on the floor row. */
  collapsible: boolean;
}

const topOne = (v: number) => `${Math.round(100 * v)} %`;
const loss = (v: number) => (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));

const METRICS: Metric[] = [
  { metric: "train_top1", title: "Train top-1", axisLabel: "top-1 accuracy (train)", scale: "fraction", format: topOne, value: (m) => m.train_top1, spaceOnly: false, collapsible: false },
  { metric: "val_top1", title: "Val top-1", axisLabel: "top-1 accuracy (val)", scale: "fraction", format: topOne, value: (m) => m.val_top1, spaceOnly: false, collapsible: false },
  { metric: "diversity", title: "Concept diversity", axisLabel: "diff. entropy (nats)", scale: "linear", format: (v) => v.toFixed(2), value: (m) => m.diversity, spaceOnly: true, collapsible: true },
  { metric: "train_loss", title: "Train loss", axisLabel: "loss (train, log)", scale: "log", format: loss, value: (m) => m.train_loss, spaceOnly: false, collapsible: false },
  { metric: "val_loss", title: "Val loss", axisLabel: "loss (val, log)", scale: "log", format: loss, value: (m) => m.val_loss, spaceOnly: false, collapsible: false },
  { metric: "movement", title: "Mean movement", axisLabel: "mean displacement", scale: "linear", format: (v) => v.toFixed(2), value: (m) => m.movement, spaceOnly: true, collapsible: false },
];

/** Everything a draw needs; kept so a resize or a new reference redraws without refetching. */
interface Loaded {
  space: Space;
  runs: RunSummary[];
  metrics: Map<number, EpochMetrics[]>;
  failed: { run: RunSummary; message: string }[];
  current: { runId: number; epoch: number } | null;
}

export class HealthView implements ViewController {
  readonly element = h("section", { class: "view health-view", "data-testid": "health-view" });
  /** False while loading, true once the view shows what the state asks for (tests wait on it). */
  idle = false;

  private readonly tooltip = new Tooltip();
  private readonly metricsCache = new Map<string, Promise<EpochMetrics[]>>();
  /** The chosen reference run per space (default: the space's base run). */
  private readonly references = new Map<number, number>();
  private generation = 0;
  private loaded: Loaded | null = null;
  private drawnWidth = 0;

  constructor(private readonly ctx: ViewContext) {
    // Its own test id: the map's tooltip is another element with the default one.
    this.tooltip.element.dataset.testid = "health-tooltip";
    // Charts are sized to the view: redraw (from what is loaded) when its width changes.
    new ResizeObserver(() => {
      if (this.element.hidden || !this.loaded) return;
      if (Math.abs(this.element.clientWidth - this.drawnWidth) > 8) this.draw(this.loaded);
    }).observe(this.element);
  }

  async render(state: ViewState): Promise<void> {
    const gen = ++this.generation;
    this.idle = false;
    try {
      await this.renderState(state, gen);
    } catch (err) {
      if (gen !== this.generation) return;
      this.loaded = null;
      const message = err instanceof ApiError ? err.detail : err instanceof Error ? err.message : String(err);
      this.showCard(
        h("h2", {}, "The training metrics could not be loaded"),
        h("p", { class: "error" }, message),
        h("p", {}, "The server may be busy or stopped: try again in a moment (start it with ", h("code", {}, "conceptevo serve"), " if it is not running)."),
        h("button", { type: "button", class: "primary", onclick: () => void this.render(this.ctx.store.get()) }, "Try again"),
      );
    } finally {
      if (gen === this.generation) this.idle = true;
    }
  }

  /** New epochs were computed: refetch (the cache keys include the snapshot counts) and redraw. */
  onDataRefreshed(): void {
    void this.render(this.ctx.store.get());
  }

  // ---- loading -----------------------------------------------------------------------------------------

  private async renderState(state: ViewState, gen: number): Promise<void> {
    const { data } = this.ctx;
    if (!data.spaces.length) return this.showNoSpace();
    const spaceId = state.space ?? data.spaces[data.spaces.length - 1].id;
    const space = data.space(spaceId) ?? (await data.loadSpace(spaceId));
    if (gen !== this.generation) return;
    const runs = data.runs.filter((r) => r.dataset_id === space.dataset_id);
    if (!runs.length) {
      this.loaded = null;
      return this.showCard(h("h2", {}, `No run is trained on the dataset of space “${space.name}”`), h("p", {}, "Add one with ", h("code", {}, "conceptevo add-run"), "."));
    }
    if (!this.loaded || this.loaded.space.id !== space.id)
      this.showCard(h("h2", {}, "Loading training metrics…"), h("p", { class: "muted" }, `${runs.length} runs of space “${space.name}”.`));

    const results = await Promise.allSettled(runs.map((r) => this.runMetrics(r, space)));
    if (gen !== this.generation) return;
    const metrics = new Map<number, EpochMetrics[]>();
    const failed: Loaded["failed"] = [];
    results.forEach((res, i) => {
      if (res.status === "fulfilled") metrics.set(runs[i].id, res.value);
      else failed.push({ run: runs[i], message: res.reason instanceof ApiError ? res.reason.detail : String(res.reason) });
    });
    if (!metrics.size) throw new Error(failed[0]?.message ?? "no metrics");
    this.loaded = { space, runs: runs.filter((r) => metrics.has(r.id)), metrics, failed, current: this.currentEpoch(state, space) };
    this.draw(this.loaded);
  }

  /** A run's metrics in a space, cached until its snapshot count or the space's computed count changes. */
  private runMetrics(run: RunSummary, space: Space): Promise<EpochMetrics[]> {
    const key = `${run.id}:${space.id}:${run.n_snapshots}:${space.snapshots.length}`;
    let p = this.metricsCache.get(key);
    if (!p) {
      p = api.metrics(run.id, space.id).then((m) => [...m.epochs].sort((a, b) => a.epoch - b.epoch));
      p.catch(() => this.metricsCache.delete(key));
      this.metricsCache.set(key, p);
    }
    return p;
  }

  /** The epoch the map shows for the state's run (the same fallback as the map: base epoch, else the last computed). */
  private currentEpoch(state: ViewState, space: Space): { runId: number; epoch: number } | null {
    const runId = state.run ?? space.base_run_id;
    const computed = space.snapshots.filter((s) => s.run_id === runId).map((s) => s.epoch);
    if (state.epoch !== null && computed.includes(state.epoch)) return { runId, epoch: state.epoch };
    if (!computed.length) return null;
    if (runId === space.base_run_id && computed.includes(space.base_epoch)) return { runId, epoch: space.base_epoch };
    return { runId, epoch: Math.max(...computed) };
  }

  // ---- drawing -------------------------------------------------------------------------------------------

  private draw(loaded: Loaded): void {
    const { space, runs, metrics } = loaded;
    const referenceId = this.referenceOf(space, runs);
    const reference = runs.find((r) => r.id === referenceId)!;
    const colour = (id: number) => runColour(this.ctx.data.runs, id);
    const assessments = runs
      .filter((r) => r.id !== referenceId)
      .map((r) => ({ run: r, a: assessRun(metrics.get(r.id)!, metrics.get(referenceId)!) }));

    const allEpochs = [...metrics.values()].flatMap((ms) => ms.map((m) => m.epoch));
    if (!allEpochs.length) {
      return this.showCard(
        h("h2", {}, "No epoch is recorded for these runs yet"),
        h("p", {}, "The runs have no checkpoints with training metrics. Once the worker registers them, they appear here."),
      );
    }
    const epochs: [number, number] = [Math.min(...allEpochs), Math.max(...allEpochs)];
    const width = this.element.clientWidth - 40;
    const columns = width >= 1000 ? 3 : width >= 620 ? 2 : 1;
    const chartWidth = Math.floor((width - (columns - 1) * 14) / columns) - 2;
    const chartHeight = Math.max(180, Math.min(250, Math.round(chartWidth * 0.5)));
    this.drawnWidth = this.element.clientWidth;

    const legend = runs.map((r) => ({ name: r.id === referenceId ? `${r.name} (reference)` : r.name, colour: colour(r.id) }));
    const charts = METRICS.map((m) => this.chart(m, loaded, assessments, colour, epochs, chartWidth, chartHeight, legend));
    setChildren(
      this.element,
      h(
        "div",
        { class: "health-head" },
        h("h2", {}, "Training health"),
        h("span", { class: "muted" }, `space “${space.name}” · ${runs.length} runs`),
        this.referencePicker(space, runs, referenceId),
        h(
          "ul",
          { class: "health-legend", "data-testid": "health-legend", "aria-label": "Runs" },
          ...runs.map((r) =>
            h(
              "li",
              { "data-run": r.name },
              h("span", { class: "health-swatch", style: `background:${colour(r.id)}` }),
              r.name,
              r.id === referenceId ? h("span", { class: "muted" }, " (reference)") : null,
            ),
          ),
        ),
      ),
      h("div", { class: "health-findings" }, ...assessments.map(({ run, a }) => this.finding(run, reference, a, colour(run.id)))),
      this.ruleNote(reference, assessments[0]?.a ?? null),
      loaded.failed.length
        ? h("p", { class: "error small" }, ...loaded.failed.map((f) => `Metrics of “${f.run.name}” could not be loaded: ${f.message}. `))
        : null,
      h("div", { class: "health-grid", style: `grid-template-columns:repeat(${columns}, minmax(0, 1fr))` }, ...charts),
    );
  }

  private referenceOf(space: Space, runs: RunSummary[]): number {
    const chosen = this.references.get(space.id);
    if (chosen !== undefined && runs.some((r) => r.id === chosen)) return chosen;
    return runs.some((r) => r.id === space.base_run_id) ? space.base_run_id : runs[0].id;
  }

  private referencePicker(space: Space, runs: RunSummary[], referenceId: number): HTMLElement {
    return h(
      "label",
      { class: "health-reference", title: "The run the others are compared with (default: the space's base run)" },
      "Reference run ",
      h(
        "select",
        {
          "data-testid": "health-reference",
          onchange: (e: Event) => {
            this.references.set(space.id, Number((e.target as HTMLSelectElement).value));
            if (this.loaded) this.draw(this.loaded);
          },
        },
        ...runs.map((r) => h("option", { value: r.id, selected: r.id === referenceId }, r.id === space.base_run_id ? `${r.name} (base)` : r.name)),
      ),
    );
  }

  /** One sentence per run: the warning, or honestly why there is none. */
  private finding(run: RunSummary, reference: RunSummary, a: HealthAssessment, colour: string): HTMLElement {
    const acc = a.accuracy === "train" ? "train accuracy" : "val accuracy";
    const d = a.diversityEpoch;
    const e = a.accuracyEpoch;
    const fell = `Concept diversity of ${run.name} fell ${a.collapsed ? "to collapse (−∞)" : `below ${reference.name}'s`} from epoch ${d}`;
    // The paper (§4.5) shows this sign for a learning rate set too high; other runs (say, one that overfits) can
    // show it too, so the sentence names the paper's case instead of diagnosing this run.
    const paper = "in the paper (§4.5), such an early fall was the sign of a learning rate set too high";
    let text: string;
    switch (a.kind) {
      case "early":
        text = `${fell}, ${plural(a.lead!, "epoch")} before its ${acc} fell behind (epoch ${e}) — ${paper}.`;
        break;
      case "diversity-only":
        text = `${fell}, while its ${acc} has not fallen behind (yet) — ${paper}.`;
        break;
      case "same":
        text = `${fell} — the same epoch its ${acc} fell behind, so here it is not an early warning.`;
        break;
      case "late":
        text = `The ${acc} of ${run.name} fell behind ${reference.name}'s at epoch ${e}, before its concept diversity did (epoch ${d}) — not an early warning.`;
        break;
      case "unclear":
        text = `The ${acc} of ${run.name} fell behind at epoch ${e}; its concept diversity was fine at epoch ${a.diversityFineUntil ?? "–"} and clearly below at ${d}, with the epochs between not computed — compute them on the map to tell which came first.`;
        break;
      case "accuracy-only":
        text = `The ${acc} of ${run.name} fell behind ${reference.name}'s from epoch ${e} without a clear drop of concept diversity — not the learning-rate sign of §4.5.`;
        break;
      case "none":
        text = `${run.name}: no warning — its concept diversity never falls clearly below ${reference.name}'s (by more than ${fmt(a.threshold)} nats) and its ${acc} keeps up, over ${plural(a.compared.length, "compared epoch")}.`;
        break;
      case "too-few":
        text = `${run.name}: too few epochs computed in both runs to compare concept diversity — compute more epochs on the map.`;
        break;
    }
    const warning = isEarlyWarning(a);
    const target = d ?? e;
    return h(
      "div",
      {
        class: `health-finding ${warning ? "warning" : a.kind === "none" ? "ok" : "note"}`,
        "data-testid": warning ? "health-warning" : "health-note",
        "data-run": run.name,
        "data-kind": a.kind,
        "data-diversity-epoch": d,
        "data-accuracy-epoch": e,
        role: warning ? "alert" : null,
        style: `border-left-color:${colour}`,
      },
      h("span", { class: "health-icon", "aria-hidden": "true" }, warning ? "⚠" : a.kind === "none" ? "✓" : "ℹ"),
      h("span", { class: "health-text" }, text),
      target !== null && this.isComputed(run.id, target)
        ? h(
            "button",
            { type: "button", class: "link", onclick: () => this.ctx.store.update({ view: "map", run: run.id, epoch: target }) },
            `show epoch ${target} on the map`,
          )
        : null,
    );
  }

  private ruleNote(reference: RunSummary, a: HealthAssessment | null): HTMLElement | null {
    if (!a) return h("p", { class: "muted small health-rule" }, "Only one run in this space: nothing to compare it with.");
    return h(
      "p",
      { class: "muted small health-rule" },
      `“Clearly below”: more than ${fmt(a.threshold)} nats under ${reference.name}'s diversity (3 × its median epoch-to-epoch change, ` +
        `or a quarter of its range) at two compared epochs in a row, or at the last; a computed epoch with no finite diversity is a collapse (−∞). ` +
        `“Behind”: top-1 more than ${Math.round(100 * a.margin)} points under. Only epochs computed in both runs are compared.`,
    );
  }

  private chart(
    metric: Metric,
    loaded: Loaded,
    assessments: { run: RunSummary; a: HealthAssessment }[],
    colour: (id: number) => string,
    epochs: [number, number],
    width: number,
    height: number,
    legend: { name: string; colour: string }[],
  ): HTMLElement {
    const { space, runs, metrics, current } = loaded;
    const series: ChartRun[] = runs.map((r) => ({
      id: r.id,
      name: r.name,
      colour: colour(r.id),
      emphasis: current?.runId === r.id,
      points: (metrics.get(r.id) ?? []).flatMap((m): ChartPoint[] => {
        const v = metric.value(m);
        if (metric.collapsible && m.computed && (v === null || !Number.isFinite(v))) return [{ epoch: m.epoch, value: NaN, collapsed: true, computed: true }];
        if (metric.spaceOnly && !m.computed) return [];
        if (v === null || !Number.isFinite(v) || (metric.scale === "log" && v <= 0)) return [];
        return [{ epoch: m.epoch, value: v, collapsed: false, computed: m.computed }];
      }),
    }));
    // Warning bands: the lead of each early warning, on the diversity chart and the accuracy it beat.
    const bands: ChartBand[] = [];
    for (const { run, a } of assessments) {
      if (!isEarlyWarning(a) || a.diversityEpoch === null) continue;
      const accMetric = a.accuracy === "train" ? "train_top1" : "val_top1";
      if (metric.metric !== "diversity" && metric.metric !== accMetric) continue;
      bands.push({ colour: colour(run.id), from: a.diversityEpoch, to: a.accuracyEpoch ?? epochs[1], label: `⚠ ${run.name}` });
    }
    const hasData = series.some((s) => s.points.length);
    const svg = drawHealthChart(
      { spec: metric, runs: series, epochs, current, bands, width, height },
      { hover: (hit, event) => this.hover(metric, space, hit, event), click: (hit) => this.open(hit) },
    );
    const exportButton = h(
      "button",
      {
        type: "button",
        class: "health-export",
        title: `Download this chart as conceptevo-${metric.metric}.svg`,
        onclick: () =>
          download(
            `conceptevo-${metric.metric}.svg`,
            new Blob([standaloneSvg(svg, `${metric.title} — space “${space.name}”`, legend)], { type: "image/svg+xml" }),
          ),
      },
      "SVG",
    );
    return h(
      "figure",
      { class: "health-chart", "data-testid": "health-chart", "data-metric": metric.metric },
      h("figcaption", {}, h("span", {}, metric.title), exportButton),
      svg,
      hasData
        ? null
        : h("div", { class: "health-empty" }, metric.spaceOnly ? "Not computed yet: place epochs in the space from the map's slider." : "No run logged this metric."),
    );
  }

  private hover(metric: Metric, space: Space, hit: ChartHit | null, event: MouseEvent): void {
    if (!hit) return this.tooltip.hide();
    const { run, point } = hit;
    this.tooltip.show(`${metric.metric}:${run.id}:${point.epoch}`, event.clientX, event.clientY, () => ({
      title: `${run.name} · epoch ${point.epoch}`,
      lines: [
        `${metric.title}: ${point.collapsed ? "collapsed (−∞)" : metric.scale === "fraction" ? pct(point.value, 1) : metric.format(point.value)}`,
        point.computed
          ? "Click to open this epoch on the map."
          : `Not placed in space “${space.name}” yet — compute it from the map's epoch slider to open it there.`,
      ],
      thumbs: [],
    }));
  }

  /** A click on a chart: open that run × epoch on the map — only when the map can show it. */
  private open(hit: ChartHit): void {
    if (!hit.point.computed) return;
    this.tooltip.hide();
    this.ctx.store.update({ view: "map", run: hit.run.id, epoch: hit.point.epoch });
  }

  private isComputed(runId: number, epoch: number): boolean {
    return this.loaded?.metrics.get(runId)?.some((m) => m.epoch === epoch && m.computed) ?? false;
  }

  // ---- empty states --------------------------------------------------------------------------------------

  private showNoSpace(): void {
    this.loaded = null;
    const busy = this.ctx.jobs.active.length > 0;
    this.showCard(
      h("h2", {}, busy ? "Computing — the charts appear once the first space is built" : "No data yet"),
      busy
        ? h("p", {}, "The worker is busy; follow it on the ", h("a", { href: "/jobs", onclick: (e: Event) => this.goJobs(e) }, "Jobs"), " page. This page updates by itself.")
        : h("p", {}, "Run ", h("code", {}, "make demo"), " (or ", h("code", {}, "conceptevo demo"), ") to build the demo world, then reload."),
    );
  }

  private goJobs(e: Event): void {
    e.preventDefault();
    this.ctx.store.update({ view: "jobs" });
  }

  private showCard(...children: (HTMLElement | null)[]): void {
    this.tooltip.hide();
    setChildren(this.element, h("div", { class: "card health-card", "data-testid": "health-message" }, ...children));
  }
}

/** A run's colour: Okabe-Ito by its order in the run list, so the same run has the same colour everywhere. */
export function runColour(runs: { id: number }[], runId: number): string {
  const i = runs.findIndex((r) => r.id === runId);
  return OKABE_ITO[(i < 0 ? runId : i) % OKABE_ITO.length];
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
