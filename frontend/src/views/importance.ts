/**
 * View 4 — which concept evolutions matter for a class (paper §3.3, Fig 3; the check of §4.4, Fig 6).
 *
 * One importance computation (a run, a class, a stage t → t′) is `state.imp`; the view ranks the run's
 * neurons by I_n (Eq 7) with their top patches before → after, shows how the scores spread in each layer,
 * and, when a reversion check was run for the stage, how accuracy changes when each importance quarter is
 * reverted. What is not computed yet can be queued from the form at the bottom; the new results appear
 * when the worker is done (the shell calls {@link ImportanceView.onDataRefreshed}).
 *
 * State → data → render, as in the map view: a newer render supersedes an older one still loading.
 */

import { ApiError, api, spriteUrl } from "../api/client";
import type { ImportanceInfo, ImportanceRanking, ImportanceScores, Job, Layer, RankedNeuron, Run, Snapshot } from "../api/types";
import { layerHistograms, ScoreHistogram, scoreBins } from "../charts/histogram";
import { isReversionTable, ReversionChart, type ReversionTable } from "../charts/reversion";
import { downloadCsv } from "../export";
import type { ViewState } from "../state/url";
import { fmt, h, pct, setChildren } from "../ui/dom";
import type { ViewContext, ViewController } from "./view";

export const PAGE_SIZE = 20;
/** Tiles of each sprite shown per side (the sprite holds all k patches; the rest is cropped). */
const TILES_SHOWN = 5;
/** The paper's accuracy milestones that delimit the evolution stages (§4.4). */
export const MILESTONES = [0.25, 0.5, 0.75];

// ---- pure helpers (tested in test/importance.test.ts) ------------------------------------------------------

/** One evolution stage t → t′ and the classes computed for it. */
export interface Stage {
  from: number;
  to: number;
  /** One computation per class, by class index. */
  items: ImportanceInfo[];
}

/** Computations grouped by (epoch_from, epoch_to), in epoch order; classes in index order. */
export function groupStages(list: readonly ImportanceInfo[]): Stage[] {
  const stages = new Map<string, Stage>();
  for (const info of list) {
    const key = `${info.epoch_from}:${info.epoch_to}`;
    let stage = stages.get(key);
    if (!stage) stages.set(key, (stage = { from: info.epoch_from, to: info.epoch_to, items: [] }));
    // Two computations of the same class and stage: the newer one (higher id) wins.
    const same = stage.items.findIndex((i) => i.class_idx === info.class_idx);
    if (same < 0) stage.items.push(info);
    else if (stage.items[same].id < info.id) stage.items[same] = info;
  }
  return [...stages.values()]
    .sort((a, b) => a.from - b.from || a.to - b.to)
    .map((s) => ({ ...s, items: s.items.sort((a, b) => a.class_idx - b.class_idx) }));
}

function top1At(snapshots: readonly Pick<Snapshot, "epoch" | "train_top1">[], epoch: number): string {
  const v = snapshots.find((s) => s.epoch === epoch)?.train_top1;
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(2);
}

/** "epoch 3 → 5 (top-1 0.52 → 0.77)": the stage with the run's train top-1 at both ends. */
export function stageLabel(stage: { from: number; to: number }, snapshots: readonly Pick<Snapshot, "epoch" | "train_top1">[]): string {
  return `epoch ${stage.from} → ${stage.to} (top-1 ${top1At(snapshots, stage.from)} → ${top1At(snapshots, stage.to)})`;
}

/** "rows 21–40 of 432". */
export function pageLabel(offset: number, shown: number, total: number): string {
  if (total <= 0 || shown <= 0) return `no rows of ${Math.max(0, total)}`;
  return `rows ${offset + 1}–${offset + shown} of ${total}`;
}

/**
 * The epochs whose train top-1 is closest to each milestone (the paper's footnote: "epochs 5, 21 and 207
 * give top-1 training accuracies closest to 25 %, 50 % and 75 %"). Each milestone is searched after the
 * previous one's epoch, so a noisy run still gets stages that go forward in training and, mostly, up in
 * accuracy. A milestone the run never comes near (off by more than 0.1) is skipped.
 */
export function milestoneEpochs(
  snapshots: readonly Pick<Snapshot, "epoch" | "train_top1">[],
  milestones: readonly number[] = MILESTONES,
): number[] {
  const known = snapshots
    .filter((s): s is Pick<Snapshot, "epoch"> & { train_top1: number } => s.train_top1 !== null && Number.isFinite(s.train_top1))
    .sort((a, b) => a.epoch - b.epoch);
  const out: number[] = [];
  for (const m of milestones) {
    const after = out.length ? out[out.length - 1] : -Infinity;
    let best: (typeof known)[number] | undefined;
    for (const s of known)
      if (s.epoch > after && (!best || Math.abs(s.train_top1 - m) < Math.abs(best.train_top1 - m))) best = s;
    if (best && Math.abs(best.train_top1 - m) <= 0.1) out.push(best.epoch);
  }
  return out;
}

/** Consecutive pairs of milestone epochs: the stages the paper evaluates. */
export function milestoneStages(snapshots: readonly Pick<Snapshot, "epoch" | "train_top1">[]): { from: number; to: number }[] {
  const e = milestoneEpochs(snapshots);
  return e.slice(1).map((to, i) => ({ from: e[i], to }));
}

/**
 * Which computation to show: `wanted` when it is one of `list`, else the first class of the stage computed
 * for the most classes (the earliest such stage): a one-class experiment is a poor place to land.
 */
export function pickComputation(list: readonly ImportanceInfo[], wanted: number | null): ImportanceInfo | null {
  const hit = wanted === null ? undefined : list.find((i) => i.id === wanted);
  if (hit) return hit;
  let best: Stage | undefined;
  for (const stage of groupStages(list)) if (!best || stage.items.length > best.items.length) best = stage;
  return best?.items[0] ?? null;
}

/** The computation of `stage` for `classIdx`, or the stage's first class when that one is not computed. */
export function computationIn(stage: Stage, classIdx: number): ImportanceInfo {
  return stage.items.find((i) => i.class_idx === classIdx) ?? stage.items[0];
}

export interface TableChoice {
  job: Job;
  table: ReversionTable;
  /** Classes the table averages over; null = all classes. */
  classes: number[] | null;
}

/** Which classes a table averages over, as a key: "all" or the sorted class indices. */
export function scopeKey(classes: readonly number[] | null): string {
  return classes === null ? "all" : [...classes].sort((a, b) => a - b).join(",");
}

/**
 * The reversion tables of a stage among done `revert_eval` jobs, the newest of each scope (set of classes),
 * best first: all classes (the paper averages over classes; one class alone is noisy), then exactly this
 * class, then any that includes the class, then the rest.
 */
export function reversionChoices(jobs: readonly Job[], runId: number, from: number, to: number, classIdx: number): TableChoice[] {
  const choices: TableChoice[] = [];
  for (const job of jobs) {
    const p = job.params;
    if (job.kind !== "revert_eval" || job.status !== "done") continue;
    if (Number(p.run_id) !== runId || Number(p.epoch_from) !== from || Number(p.epoch_to) !== to) continue;
    const table = job.result?.table;
    if (!isReversionTable(table)) continue;
    const classes = Array.isArray(p.classes) ? (p.classes as unknown[]).map(Number) : null;
    choices.push({ job, table, classes });
  }
  const score = (c: TableChoice) =>
    c.classes === null ? 0 : c.classes.length === 1 && c.classes[0] === classIdx ? 1 : c.classes.includes(classIdx) ? 2 : 3;
  choices.sort((a, b) => score(a) - score(b) || b.job.id - a.job.id);
  const seen = new Set<string>();
  return choices.filter((c) => {
    const key = scopeKey(c.classes);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The best reversion table of a stage for a class (see {@link reversionChoices}), or null. */
export function pickReversion(jobs: readonly Job[], runId: number, from: number, to: number, classIdx: number): TableChoice | null {
  return reversionChoices(jobs, runId, from, to, classIdx)[0] ?? null;
}

/** Mean S_n for display: small values in exponent form so they do not read as zero. */
export function formatMeanS(v: number): string {
  if (!Number.isFinite(v)) return "–";
  if (v !== 0 && Math.abs(v) < 0.001) return v.toExponential(1).replace(/-/g, "−");
  return v.toFixed(3).replace("-", "−");
}

// ---- the view -------------------------------------------------------------------------------------------

/** What is on screen: everything `render` resolved for the current state. */
interface Shown {
  run: Run;
  info: ImportanceInfo;
  stages: Stage[];
  stage: Stage;
  layers: Layer[];
  classNames: string[];
  scores: ImportanceScores;
  ranking: ImportanceRanking;
  /** The stage's reversion tables, best first; the one shown is {@link ImportanceView.revScope}'s or the first. */
  reversions: TableChoice[];
}

type JobKind = "importance" | "revert_eval";

export class ImportanceView implements ViewController {
  readonly element = h("section", { class: "view importance-view" });
  /** True while nothing is loading (tests wait on it). */
  idle = false;
  shown: Shown | null = null;

  private readonly head = h("div", { class: "imp-head" });
  private readonly message = h("div", { class: "imp-message", "data-testid": "importance-message" });
  private readonly list = h("ol", { class: "imp-list", "data-testid": "importance-list" });
  private readonly pager = h("div", { class: "imp-pager", "data-testid": "importance-pager" });
  private readonly histogram = new ScoreHistogram();
  private readonly reversionChart = new ReversionChart();
  private readonly reversionSlot = h("div", { class: "imp-reversion-slot" });
  private readonly form = h("form", { class: "imp-form", "data-testid": "importance-form" });
  private readonly formJobs = h("div", { class: "imp-form-jobs", "data-testid": "importance-jobs" });
  private readonly side = h("aside", { class: "imp-side" });
  private readonly body: HTMLElement;

  private generation = 0;
  private pageGeneration = 0;
  private offset = 0;
  /** Caches, dropped when jobs finish: all computations, and the done reversion jobs. */
  private computations: ImportanceInfo[] | null = null;
  private revertJobs: Job[] | null = null;
  private readonly scoreCache = new Map<number, ImportanceScores>();
  /** The form's run and snapshots (rebuilt when they change) and what was queued from it, to follow when done. */
  private formKey = "";
  private formRunId: number | null = null;
  private requested: { runId: number; from: number; to: number; classIdx: number | null } | null = null;
  private chartWidth = 0;
  /** The reversion table scope the user picked ("all", or class indices), kept across stages and classes. */
  private revScope: string | null = null;
  private layerOf: (neuronId: number) => number | undefined = () => undefined;

  constructor(private readonly ctx: ViewContext) {
    this.body = h(
      "div",
      { class: "imp-body" },
      h(
        "div",
        { class: "imp-main" },
        h("div", { class: "imp-list-head" }, h("h3", {}, "Ranking ", h("small", {}, "click a row to see the neuron on the map")), this.pager),
        h(
          "div",
          { class: "imp-row imp-row-head", "aria-hidden": "true" },
          h("span", {}, "#"),
          h("span", {}, "neuron"),
          h("span", { class: "imp-patch-head" }, "top patches: before → after"),
          h("span", { title: "share of the class's images whose logit rises along the neuron's evolution (Eq 7)" }, "importance ", sub("I", "n")),
          h("span", { class: "imp-num", title: "mean directional derivative of the class logit along the evolution (Eq 5)" }, "mean ", sub("S", "n")),
        ),
        this.list,
      ),
      h("div", { class: "imp-side-wrap" }, this.side),
    );
    this.body.hidden = true;
    this.message.hidden = true;
    this.element.append(this.head, this.message, this.body);
    setChildren(this.side, this.histogram.element, this.reversionSlot);
    ctx.jobs.onChange((active) => this.onJobs(active));
    // Jobs that finish while another view is shown: refetch when this one is shown again.
    ctx.jobs.onFinished((jobs) => {
      if (jobs.some((j) => j.kind === "importance" || j.kind === "revert_eval")) this.invalidate();
    });
    new ResizeObserver(() => this.onResize()).observe(this.side);
  }

  // ---- public -----------------------------------------------------------------------------------------------

  async render(state: ViewState): Promise<void> {
    const gen = ++this.generation;
    this.idle = false;
    this.element.classList.add("loading");
    try {
      await this.renderState(state, gen);
    } catch (err) {
      if (gen !== this.generation) return;
      this.showFailure(err);
    } finally {
      if (gen === this.generation) {
        this.element.classList.remove("loading");
        this.idle = true;
      }
    }
  }

  /** Jobs finished and the shell refreshed its data: refetch, and follow a stage queued from here. */
  onDataRefreshed(): void {
    this.invalidate();
    void this.followRequested().then((moved) => {
      if (!moved) void this.render(this.ctx.store.get());
    });
  }

  // ---- loading --------------------------------------------------------------------------------------------

  private invalidate(): void {
    this.computations = null;
    this.revertJobs = null;
  }

  private async allComputations(): Promise<ImportanceInfo[]> {
    if (!this.computations) this.computations = await api.importances();
    return this.computations;
  }

  private async reversionJobs(): Promise<Job[]> {
    if (!this.revertJobs) this.revertJobs = await api.jobs("?kind=revert_eval&status=done&limit=1000");
    return this.revertJobs;
  }

  private async scores(id: number): Promise<ImportanceScores> {
    let s = this.scoreCache.get(id);
    if (!s) {
      s = await api.scores(id);
      this.scoreCache.set(id, s);
      if (this.scoreCache.size > 24) this.scoreCache.delete(this.scoreCache.keys().next().value as number);
    }
    return s;
  }

  /** The run to show: the URL's, else the run of the URL's computation, else the first run with one. */
  private chooseRun(state: ViewState, all: ImportanceInfo[]): number | null {
    if (state.run !== null) return state.run;
    const ofImp = state.imp === null ? undefined : all.find((i) => i.id === state.imp);
    if (ofImp) return ofImp.run_id;
    const withImportance = this.ctx.data.runs.find((r) => all.some((i) => i.run_id === r.id));
    if (withImportance) return withImportance.id;
    const space = this.ctx.data.spaces.find((s) => s.id === state.space) ?? this.ctx.data.spaces[this.ctx.data.spaces.length - 1];
    return space?.base_run_id ?? this.ctx.data.runs[0]?.id ?? null;
  }

  private async renderState(state: ViewState, gen: number): Promise<void> {
    const stale = () => gen !== this.generation;
    const { data } = this.ctx;
    if (!data.runs.length) return this.showNoRun();
    if (!this.shown) this.showLoading();
    const all = await this.allComputations();
    if (stale()) return;
    const runId = this.chooseRun(state, all);
    if (runId === null) return this.showNoRun();
    const run = data.run(runId) ?? (await data.loadRun(runId));
    if (stale()) return;
    const list = all.filter((i) => i.run_id === run.id);
    const info = pickComputation(list, state.imp);
    if ((state.run === null && (list.length || state.imp !== null)) || state.imp !== (info?.id ?? null)) {
      // Normalise the URL to what is shown (no history entry); the update re-enters render.
      this.ctx.store.update({ run: run.id, imp: info?.id ?? null }, "replace");
      return;
    }
    this.buildForm(run, list);
    if (!info) return this.showNothingComputed(run);

    const stages = groupStages(list);
    const stage = stages.find((s) => s.from === info.epoch_from && s.to === info.epoch_to)!;
    if (this.shown?.info.id !== info.id) this.offset = 0;
    const [layers, scores, ranking, jobs, neurons] = await Promise.all([
      data.layers(run.id),
      this.scores(info.id),
      api.ranking(info.id, PAGE_SIZE, this.offset),
      this.reversionJobs(),
      data.neurons(run.id),
    ]);
    if (stale()) return;
    this.ctx.showError(null);
    const shown: Shown = {
      run,
      info,
      stages,
      stage,
      layers: [...layers].sort((a, b) => a.idx - b.idx),
      classNames: data.classNames(run.dataset_id),
      scores,
      ranking,
      reversions: reversionChoices(jobs, run.id, stage.from, stage.to, info.class_idx),
    };
    this.shown = shown;
    this.message.hidden = true;
    this.body.hidden = false;
    this.renderHead(shown);
    await this.renderRanking(shown, ranking);
    if (stale()) return;
    this.renderCharts(shown, (id) => neurons.layer.get(id));
    this.side.append(this.form);
  }

  // ---- header: class and stage ----------------------------------------------------------------------------

  private className(shown: { classNames: string[] }, info: ImportanceInfo): string {
    return info.class_name ?? shown.classNames[info.class_idx] ?? `class ${info.class_idx}`;
  }

  private renderHead(s: Shown): void {
    const cls = this.className(s, s.info);
    const classSelect = h(
      "select",
      {
        "aria-label": "Class",
        "data-testid": "importance-class",
        onchange: (e: Event) => this.ctx.store.update({ imp: Number((e.target as HTMLSelectElement).value) }),
      },
      ...s.stage.items.map((i) => h("option", { value: i.id, selected: i.id === s.info.id }, this.className(s, i))),
    );
    const stageSelect = h(
      "select",
      {
        "aria-label": "Evolution stage",
        "data-testid": "importance-stage",
        onchange: (e: Event) => {
          const stage = s.stages[Number((e.target as HTMLSelectElement).value)];
          // Keep the class when the new stage has it computed.
          if (stage) this.ctx.store.update({ imp: computationIn(stage, s.info.class_idx).id });
        },
      },
      ...s.stages.map((st, k) => h("option", { value: k, selected: st === s.stage }, stageLabel(st, s.run.snapshots))),
    );
    setChildren(
      this.head,
      h(
        "div",
        { class: "imp-title" },
        h("h2", {}, "Which concept evolutions matter for ", h("q", {}, cls), "?"),
        h(
          "p",
          { class: "muted" },
          `Neurons of “${s.run.name}” ranked by `,
          sub("I", "n"),
          `: the share of ${s.info.n_images} “${cls}” images whose class logit rises when the layer's activation moves along the neuron's evolution from epoch ${s.info.epoch_from} to ${s.info.epoch_to} (paper §3.3, Eq 7).`,
        ),
      ),
      h(
        "div",
        { class: "imp-controls" },
        h("label", {}, h("span", {}, "Class"), classSelect),
        h("label", {}, h("span", {}, "Stage"), stageSelect),
        h(
          "button",
          {
            type: "button",
            class: "primary",
            "data-testid": "importance-colour-map",
            title: "Open the map coloured by this ranking",
            onclick: () => this.openMap(s, null),
          },
          "Colour the map by this ranking",
        ),
        h(
          "button",
          { type: "button", class: "small-button", "data-testid": "export-ranking", title: "Download the whole ranking as CSV", onclick: () => void this.exportRanking(s) },
          "CSV",
        ),
      ),
    );
  }

  /** The whole ranking (every page) as CSV. */
  private async exportRanking(s: Shown): Promise<void> {
    const rows: (string | number)[][] = [];
    try {
      for (let offset = 0; ; offset += 1000) {
        const page = await api.ranking(s.info.id, 1000, offset);
        for (const r of page.items) rows.push([r.rank, r.neuron_id, r.layer_name, r.channel, r.score, r.mean_s]);
        if (offset + page.items.length >= page.total || !page.items.length) break;
      }
    } catch (err) {
      this.ctx.showError(err instanceof ApiError ? err.detail : String(err));
      return;
    }
    const cls = (s.info.class_name ?? `class${s.info.class_idx}`).replace(/[^\w.-]+/g, "_");
    downloadCsv(
      `conceptevo-importance-${s.run.name}-${cls}-e${s.info.epoch_from}-e${s.info.epoch_to}.csv`,
      ["rank", "neuron_id", "layer", "channel", "importance", "mean_s"],
      rows,
    );
  }

  private openMap(s: Shown, neuronId: number | null): void {
    this.ctx.store.update({ view: "map", run: s.run.id, epoch: s.info.epoch_to, neuron: neuronId, color: "importance", imp: s.info.id });
  }

  // ---- the ranked list ---------------------------------------------------------------------------------------

  private async renderRanking(s: Shown, ranking: ImportanceRanking): Promise<void> {
    const total = ranking.total;
    const count = ranking.items.length;
    const at = ranking.offset;
    setChildren(
      this.pager,
      h(
        "button",
        { type: "button", "data-testid": "importance-prev", disabled: at <= 0, onclick: () => void this.goToPage(at - PAGE_SIZE) },
        "‹ prev",
      ),
      h("span", { class: "imp-page-label", "data-testid": "importance-page" }, pageLabel(at, count, total)),
      h(
        "button",
        { type: "button", "data-testid": "importance-next", disabled: at + count >= total, onclick: () => void this.goToPage(at + PAGE_SIZE) },
        "next ›",
      ),
    );
    this.list.start = at + 1;
    setChildren(this.list, ...ranking.items.map((item) => this.row(s, item)));
    if (!count) this.list.append(h("li", { class: "muted imp-empty-row" }, "No neuron on this page."));
    await imagesSettled(this.list);
  }

  private row(s: Shown, n: RankedNeuron): HTMLElement {
    const score = Math.max(0, Math.min(1, n.score));
    return h(
      "li",
      {
        "data-testid": "importance-row",
        "data-neuron": n.neuron_id,
        onmouseenter: () => this.histogram.mark(n.layer_idx, n.score),
        onmouseleave: () => this.histogram.mark(null, null),
      },
      h(
        "button",
        {
          type: "button",
          class: "imp-row",
          title: `Show ${n.layer_name}:${n.channel} on the map at epoch ${s.info.epoch_to}`,
          onclick: () => this.openMap(s, n.neuron_id),
        },
        h("span", { class: "imp-rank" }, String(n.rank)),
        h("span", { class: "imp-neuron" }, h("b", {}, n.layer_name), h("span", { class: "muted" }, `:${n.channel}`)),
        h(
          "span",
          { class: "imp-patches" },
          this.sprite(s, n, "before"),
          h("span", { class: "imp-arrow", "aria-hidden": "true" }, "→"),
          this.sprite(s, n, "after"),
        ),
        h(
          "span",
          { class: "imp-score" },
          h("span", { class: "imp-bar", "aria-hidden": "true" }, h("span", { style: `width:${(100 * score).toFixed(1)}%` })),
          h("span", { class: "imp-num" }, fmt(n.score, 2)),
        ),
        h("span", { class: "imp-num imp-means" }, formatMeanS(n.mean_s)),
      ),
    );
  }

  /** The first tiles of the neuron's sprite at epoch_from ("before") or epoch_to ("after"). */
  private sprite(s: Shown, n: RankedNeuron, side: "before" | "after"): HTMLElement {
    const refs = n[side];
    const epoch = side === "before" ? s.info.epoch_from : s.info.epoch_to;
    if (!refs.length) return h("span", { class: "imp-sprite missing", title: `no patches at epoch ${epoch}` }, "no patches");
    const k = refs.length;
    const shown = Math.min(TILES_SHOWN, k);
    // A neuron whose k maxima all tie detects nothing there: its patches are arbitrary images, say so.
    const tied = (side === "before" ? n.tied_before : n.tied_after) === true;
    return h(
      "span",
      {
        class: tied ? "imp-sprite tied" : "imp-sprite",
        style: `--k:${k};--shown:${shown}`,
        title: tied
          ? `tied at epoch ${epoch}: all ${k} stimuli reach the same maximum, so these patches show no concept (left out of the reversion check's bins)`
          : `top ${shown} of ${k} patches at epoch ${epoch}`,
        "data-testid": tied ? "tied-sprite" : null,
      },
      h("img", { src: spriteUrl(refs[0].snapshot_id, n.neuron_id), alt: `${side}: patches at epoch ${epoch}`, loading: "eager", decoding: "async" }),
      tied ? h("span", { class: "imp-tied" }, "tied") : null,
    );
  }

  private async goToPage(offset: number): Promise<void> {
    const s = this.shown;
    if (!s) return;
    const gen = ++this.pageGeneration;
    const renderGen = this.generation;
    this.idle = false;
    this.list.classList.add("loading");
    try {
      const ranking = await api.ranking(s.info.id, PAGE_SIZE, Math.max(0, Math.min(offset, Math.max(0, s.ranking.total - 1))));
      if (gen !== this.pageGeneration || renderGen !== this.generation || this.shown !== s) return;
      this.offset = ranking.offset;
      s.ranking = ranking;
      await this.renderRanking(s, ranking);
      this.list.scrollIntoView({ block: "nearest" });
    } catch (err) {
      this.ctx.showError(errorText(err));
    } finally {
      if (gen === this.pageGeneration && renderGen === this.generation) {
        this.list.classList.remove("loading");
        this.idle = true;
      }
    }
  }

  // ---- charts -----------------------------------------------------------------------------------------------

  private renderCharts(s: Shown, layerOf: (id: number) => number | undefined): void {
    this.layerOf = layerOf;
    const width = this.sideWidth();
    this.chartWidth = width;
    const bins = scoreBins(s.info.n_images);
    const rows = layerHistograms(s.scores.neuron_id, s.scores.score, layerOf, s.layers, bins);
    this.histogram.update(rows, bins, `${s.scores.neuron_id.length} neurons, one row per layer`, width);
    this.renderReversion(s, width);
  }

  /** Width of a chart inside a side card (the card's border and padding: 2 × 11 px). */
  private sideWidth(): number {
    return Math.max(280, (this.side.clientWidth || 420) - 22);
  }

  /** What a table averages over, for captions and the scope picker. */
  private scopeLabel(s: Shown, classes: number[] | null): string {
    if (classes === null) return s.classNames.length ? `all ${s.classNames.length} classes` : "all classes";
    if (classes.length === 1) return `class “${s.classNames[classes[0]] ?? classes[0]}”`;
    return `${classes.length} classes`;
  }

  private renderReversion(s: Shown, width: number): void {
    const r = s.reversions.find((c) => scopeKey(c.classes) === this.revScope) ?? s.reversions[0];
    if (!r) return setChildren(this.reversionSlot, this.reversionPlaceholder(s));
    const classes = r.classes;
    const reps = r.table.reps;
    const scope = classes === null || classes.length > 1 ? `averaged over ${this.scopeLabel(s, classes)}` : `for ${this.scopeLabel(s, classes)} only`;
    const other = classes !== null && !classes.includes(s.info.class_idx) ? " (not this class)" : "";
    this.reversionChart.update(
      r.table,
      `epoch ${s.stage.from} → ${s.stage.to}, ${scope}${other}, ${reps} repetition${reps === 1 ? "" : "s"}`,
      width,
    );
    if (s.reversions.length > 1) {
      // Tables of other scopes exist for this stage (one class, all classes): let the user switch.
      const picker = h(
        "label",
        { class: "rev-scope" },
        h("span", {}, "Table"),
        h(
          "select",
          {
            "aria-label": "Reversion table",
            "data-testid": "reversion-scope",
            onchange: (e: Event) => {
              this.revScope = (e.target as HTMLSelectElement).value;
              this.renderReversion(s, this.sideWidth());
            },
          },
          ...s.reversions.map((c) =>
            h("option", { value: scopeKey(c.classes), selected: c === r }, `${this.scopeLabel(s, c.classes)} (job #${c.job.id})`),
          ),
        ),
      );
      this.reversionChart.element.querySelector("figcaption")?.after(picker);
    }
    setChildren(this.reversionSlot, this.reversionChart.element);
  }

  private reversionPlaceholder(s: Shown): HTMLElement {
    const running = this.activeFor(s.run.id).find(
      (j) => j.kind === "revert_eval" && Number(j.params.epoch_from) === s.stage.from && Number(j.params.epoch_to) === s.stage.to,
    );
    return h(
      "div",
      { class: "imp-reversion-empty", "data-testid": "reversion-empty" },
      h("b", {}, "Reversion check "),
      h("span", { class: "muted" }, `epoch ${s.stage.from} → ${s.stage.to}`),
      running
        ? h(
            "div",
            {},
            h("p", {}, `Running (job #${running.id}, ${running.status}) — ${running.message || "waiting for the worker"}.`),
            h("div", { class: "bar" }, h("span", { style: `width:${(100 * running.progress).toFixed(1)}%` })),
          )
        : h(
            "p",
            {},
            "Not run for this stage yet. It reverts each importance quarter of every layer's evolutions and measures the accuracy change, as in the paper's §4.4 — ",
            h(
              "button",
              {
                type: "button",
                class: "imp-link",
                "data-testid": "reversion-request",
                onclick: () => void this.queue("revert_eval", s.run.id, s.stage.from, s.stage.to, null),
              },
              "run it for all classes",
            ),
            ".",
          ),
    );
  }

  private onResize(): void {
    const s = this.shown;
    if (!s || this.element.hidden || this.body.hidden) return;
    const width = this.sideWidth();
    if (Math.abs(width - this.chartWidth) < 8) return;
    this.renderCharts(s, this.layerOf);
  }

  // ---- the request form -----------------------------------------------------------------------------------

  /** (Re)build the form for `run`: from/to epochs, class, Compute and Run reversion check. */
  private buildForm(run: Run, list: ImportanceInfo[]): void {
    const key = `${run.id}:${run.snapshots.map((x) => x.epoch).join(",")}`;
    if (key === this.formKey) return this.updateFormHint(run, list);
    this.formKey = key;
    this.formRunId = run.id;
    const epochs = [...run.snapshots].sort((a, b) => a.epoch - b.epoch);
    const suggested = milestoneStages(epochs);
    const computed = new Set(list.map((i) => `${i.epoch_from}:${i.epoch_to}`));
    const first = suggested.find((st) => !computed.has(`${st.from}:${st.to}`)) ?? suggested[0];
    const defFrom = first?.from ?? epochs[0]?.epoch;
    const defTo = first?.to ?? epochs[epochs.length - 1]?.epoch;
    const option = (s: Snapshot, selected: boolean) =>
      h("option", { value: s.epoch, selected }, `${s.epoch}${s.train_top1 === null ? "" : ` (top-1 ${s.train_top1.toFixed(2)})`}`);
    const from = h("select", { name: "from", "aria-label": "From epoch", "data-testid": "importance-from" }, ...epochs.map((s) => option(s, s.epoch === defFrom)));
    const to = h("select", { name: "to", "aria-label": "To epoch", "data-testid": "importance-to" }, ...epochs.map((s) => option(s, s.epoch === defTo)));
    const names = this.ctx.data.classNames(run.dataset_id);
    const nClasses = names.length || run.num_classes;
    const cls = h(
      "select",
      { name: "class", "aria-label": "Class", "data-testid": "importance-form-class" },
      h("option", { value: "" }, "all classes"),
      ...Array.from({ length: nClasses }, (_, i) => h("option", { value: i }, names[i] ?? `class ${i}`)),
    );
    const hint = h("p", { class: "imp-form-hint muted", "data-testid": "importance-form-hint" });
    const submit = (kind: JobKind) => {
      const a = Number(from.value);
      const b = Number(to.value);
      void this.queue(kind, run.id, a, b, cls.value === "" ? null : Number(cls.value));
    };
    const compute = h("button", { type: "submit", class: "primary", "data-testid": "importance-compute" }, "Compute");
    const check = h(
      "button",
      { type: "button", "data-testid": "reversion-compute", onclick: () => submit("revert_eval"), title: "Queue the §4.4 reversion check for this stage" },
      "Run reversion check",
    );
    const validate = () => {
      const bad = Number(from.value) >= Number(to.value);
      compute.disabled = bad;
      check.disabled = bad;
      this.updateFormHint(run, this.computations?.filter((i) => i.run_id === run.id) ?? list);
    };
    from.addEventListener("change", validate);
    to.addEventListener("change", validate);
    cls.addEventListener("change", validate);
    this.form.onsubmit = (e) => {
      e.preventDefault();
      submit("importance");
    };
    setChildren(
      this.form,
      h("h3", {}, "Compute another stage or class"),
      suggested.length
        ? h(
            "div",
            { class: "imp-suggest" },
            h("span", { class: "muted" }, "Stages between the top-1 milestones 0.25 / 0.5 / 0.75: "),
            ...suggested.map((st) =>
              h(
                "button",
                {
                  type: "button",
                  class: "chip",
                  onclick: () => {
                    from.value = String(st.from);
                    to.value = String(st.to);
                    validate();
                  },
                },
                `${st.from} → ${st.to}`,
              ),
            ),
          )
        : null,
      h(
        "div",
        { class: "imp-form-row imp-form-fields" },
        h("label", {}, h("span", {}, "From epoch"), from),
        h("label", {}, h("span", {}, "To epoch"), to),
        h("label", {}, h("span", {}, "Class"), cls),
      ),
      h("div", { class: "imp-form-row" }, compute, check),
      hint,
      this.formJobs,
    );
    validate();
    this.onJobs(this.ctx.jobs.active);
  }

  /** Under the form: whether the chosen stage/class is computed already, or what is wrong with it. */
  private updateFormHint(run: Run, list: ImportanceInfo[]): void {
    const hint = this.form.querySelector<HTMLElement>(".imp-form-hint");
    const from = this.form.querySelector<HTMLSelectElement>("select[name=from]");
    const to = this.form.querySelector<HTMLSelectElement>("select[name=to]");
    const cls = this.form.querySelector<HTMLSelectElement>("select[name=class]");
    if (!hint || !from || !to || !cls) return;
    const a = Number(from.value);
    const b = Number(to.value);
    if (a >= b) {
      hint.textContent = "The “to” epoch must come after the “from” epoch.";
      hint.classList.add("error");
      return;
    }
    hint.classList.remove("error");
    const here = list.filter((i) => i.run_id === run.id && i.epoch_from === a && i.epoch_to === b);
    const nClasses = this.ctx.data.classNames(run.dataset_id).length || run.num_classes;
    const wanted = cls.value === "" ? null : Number(cls.value);
    const done = wanted === null ? here.length >= nClasses : here.some((i) => i.class_idx === wanted);
    hint.textContent = done
      ? `Already computed for ${wanted === null ? "every class" : "this class"}: pick it in “Stage” above. Computing again replaces it.`
      : `Runs on the worker (${wanted === null ? `${nClasses} classes` : "one class"}); the ranking appears here when it is done. From the shell: conceptevo importance ${run.name} --from ${a} --to ${b}${wanted === null ? "" : ` --classes ${wanted}`}`;
  }

  private async queue(kind: JobKind, runId: number, from: number, to: number, classIdx: number | null): Promise<void> {
    const params: Record<string, unknown> = { run_id: runId, epoch_from: from, epoch_to: to };
    if (classIdx !== null) params.classes = [classIdx];
    try {
      await api.createJob(kind, params, 50);
      if (kind === "importance") this.requested = { runId, from, to, classIdx };
      this.ctx.showError(null);
      this.ctx.jobs.poke();
    } catch (err) {
      this.ctx.showError(errorText(err));
    }
  }

  /** When a stage queued from here is computed now, show it; true when the state moved there. */
  private async followRequested(): Promise<boolean> {
    const r = this.requested;
    if (!r) return false;
    let all: ImportanceInfo[];
    try {
      all = await this.allComputations();
    } catch {
      return false;
    }
    const stage = groupStages(all.filter((i) => i.run_id === r.runId)).find((s) => s.from === r.from && s.to === r.to);
    if (!stage) return false;
    this.requested = null;
    const state = this.ctx.store.get();
    const keepClass = this.shown?.info.class_idx ?? 0;
    const info = computationIn(stage, r.classIdx ?? keepClass);
    if (state.view !== "importance" || (state.run !== null && state.run !== r.runId) || state.imp === info.id) return false;
    this.ctx.store.update({ run: r.runId, imp: info.id });
    return true;
  }

  private activeFor(runId: number, active: Job[] = this.ctx.jobs.active): Job[] {
    return active.filter(
      (j) => (j.kind === "importance" || j.kind === "revert_eval") && Number(j.params.run_id) === runId,
    );
  }

  /** Live progress of this run's importance and reversion jobs, under the form and in the chart slot. */
  private onJobs(active: Job[]): void {
    if (this.element.hidden) return;
    const runId = this.shown?.run.id ?? this.formRunId;
    const mine = runId === null ? [] : this.activeFor(runId, active);
    setChildren(
      this.formJobs,
      ...mine.map((j) => {
        const p = j.params;
        const classes = Array.isArray(p.classes) ? (p.classes as number[]) : null;
        const run = this.ctx.data.run(runId ?? -1);
        const names = run ? this.ctx.data.classNames(run.dataset_id) : [];
        const forWhom = classes ? classes.map((c) => names[c] ?? `class ${c}`).join(", ") : "all classes";
        const what = `${j.kind === "importance" ? "Importance" : "Reversion check"} ${String(p.epoch_from)} → ${String(p.epoch_to)}, ${forWhom}`;
        return h(
          "div",
          { class: "job-row", "data-job": j.id },
          h("div", { class: "job-msg" }, h("b", {}, what), h("span", { class: "muted" }, ` · #${j.id} ${j.status}${j.status === "running" ? ` ${pct(j.progress)}` : ""}`)),
          h("div", { class: "bar" }, h("span", { style: `width:${(100 * (j.status === "running" ? j.progress : 0)).toFixed(1)}%` })),
          j.message && j.message !== j.status ? h("div", { class: "muted small" }, j.message) : null,
        );
      }),
    );
    const s = this.shown;
    if (s && !s.reversions.length && !this.body.hidden) setChildren(this.reversionSlot, this.reversionPlaceholder(s));
  }

  // ---- empty, loading and error states -------------------------------------------------------------------

  private showCard(...children: (HTMLElement | string | null)[]): void {
    this.body.hidden = true;
    this.message.hidden = false;
    setChildren(this.message, h("div", { class: "card" }, ...children));
  }

  private showLoading(): void {
    setChildren(this.head);
    this.showCard(h("p", { class: "muted" }, "Loading the importance rankings…"));
  }

  private showNoRun(): void {
    this.shown = null;
    setChildren(this.head);
    this.showCard(
      h("h2", {}, "No run yet"),
      h("p", {}, "Importance is computed for a run's evolution between two epochs. Run ", h("code", {}, "make demo"), " (or ", h("code", {}, "conceptevo demo"), ") to build the demo world, or add your own run with ", h("code", {}, "conceptevo add-run"), ", then reload."),
    );
  }

  private showNothingComputed(run: Run): void {
    this.shown = null;
    setChildren(this.head);
    this.showCard(
      h("h2", {}, `No importance computed for “${run.name}” yet`),
      h(
        "p",
        {},
        "Pick two epochs and a class and press ",
        h("b", {}, "Compute"),
        " below, or from a shell: ",
        h("code", {}, `conceptevo importance ${run.name} --from T --to T2`),
        ". The ranking appears here when the worker is done (",
        h("code", {}, "conceptevo worker"),
        " must be running).",
      ),
      this.form,
    );
  }

  private showFailure(err: unknown): void {
    const detail = errorText(err);
    this.ctx.showError(detail);
    this.shown = null;
    setChildren(this.head);
    this.showCard(
      h("h2", {}, "The importance ranking could not be loaded"),
      h("p", { class: "error" }, detail),
      h("button", { type: "button", class: "primary", onclick: () => { this.invalidate(); void this.render(this.ctx.store.get()); } }, "Retry"),
    );
  }
}

/** A math symbol with a subscript, e.g. I with n. */
function sub(symbol: string, index: string): HTMLElement {
  return h("span", { class: "imp-sym" }, h("i", {}, symbol), h("sub", {}, index));
}

function errorText(err: unknown): string {
  return err instanceof ApiError ? err.detail : err instanceof Error ? err.message : String(err);
}

/** Resolves when every `<img>` under `root` has loaded or failed (or after `ms`): the page is shown then. */
function imagesSettled(root: HTMLElement, ms = 8000): Promise<void> {
  const images = [...root.querySelectorAll("img")].filter((img) => !img.complete);
  if (!images.length) return Promise.resolve();
  const each = images.map(
    (img) =>
      new Promise<void>((resolve) => {
        img.addEventListener("load", () => resolve(), { once: true });
        img.addEventListener("error", () => resolve(), { once: true });
      }),
  );
  return Promise.race([Promise.all(each).then(() => undefined), new Promise<void>((resolve) => window.setTimeout(resolve, ms))]);
}
