/**
 * Histogram of importance scores I_n per layer (small multiples, one row per layer, shared x axis over
 * [0, 1]). I_n (Eq 7) is a share of the class's images, so with few images it only takes the values k/N:
 * equal-width bins would then hold one or two of those values each and draw a comb that is not in the data.
 * With up to {@link MAX_EXACT} images, the bins are centred on the possible values instead.
 */

import { axisBottom, max, scaleLinear, select, type ScaleLinear } from "d3";

import { layerColour } from "../colors";
import { h } from "../ui/dom";

/** With this many images or fewer, one bin per possible value k/N of I_n. */
export const MAX_EXACT = 40;
/** Equal-width bins over [0, 1] beyond that. */
export const DEFAULT_BINS = 20;

export interface Bins {
  /** Left and right edge of each bin on the I_n axis. */
  edges: [number, number][];
  /** The x domain that shows every bin whole (slightly wider than [0, 1] for centred bins). */
  domain: [number, number];
}

/** Bins for I_n when it was measured on `nImages` images (see module comment). */
export function scoreBins(nImages: number): Bins {
  if (Number.isFinite(nImages) && nImages >= 1 && nImages <= MAX_EXACT) {
    const n = Math.round(nImages);
    const half = 0.5 / n;
    const edges = Array.from({ length: n + 1 }, (_, k): [number, number] => [k / n - half, k / n + half]);
    return { edges, domain: [-half, 1 + half] };
  }
  const edges = Array.from({ length: DEFAULT_BINS }, (_, k): [number, number] => [k / DEFAULT_BINS, (k + 1) / DEFAULT_BINS]);
  return { edges, domain: [0, 1] };
}

/** The bin that holds `score` (clamped into the bins; NaN → -1). */
export function binIndex(bins: Bins, score: number): number {
  if (!Number.isFinite(score)) return -1;
  const [lo, hi] = bins.domain;
  const n = bins.edges.length;
  const k = Math.floor(((score - lo) / (hi - lo)) * n + 1e-9);
  return Math.max(0, Math.min(n - 1, k));
}

export interface LayerCounts {
  layerIdx: number;
  name: string;
  /** Neurons of the layer with a score. */
  n: number;
  counts: number[];
}

/**
 * Counts per layer and bin. `layerOf` maps a neuron id to its layer index; neurons without one are left out.
 * Layers come out in `layers` order, every layer even when it has no score.
 */
export function layerHistograms(
  neuronIds: readonly number[],
  scores: readonly number[],
  layerOf: (neuronId: number) => number | undefined,
  layers: readonly { idx: number; name: string }[],
  bins: Bins,
): LayerCounts[] {
  const rows = new Map(layers.map((l) => [l.idx, { layerIdx: l.idx, name: l.name, n: 0, counts: bins.edges.map(() => 0) }]));
  neuronIds.forEach((id, i) => {
    const layer = layerOf(id);
    const row = layer === undefined ? undefined : rows.get(layer);
    const k = binIndex(bins, scores[i]);
    if (!row || k < 0) return;
    row.counts[k]++;
    row.n++;
  });
  return layers.map((l) => rows.get(l.idx)!);
}

const ROW_H = 34;
const LABEL_W = 118;
const RIGHT = 34;
const TOP = 6;
const AXIS_H = 42;

/** The chart; `update` redraws it, `mark` points at one neuron's score in its layer's row. */
export class ScoreHistogram {
  readonly element = h("figure", { class: "imp-hist", "data-testid": "importance-histogram" });
  private x: ScaleLinear<number, number> | null = null;
  private rows: LayerCounts[] = [];
  private svg: SVGSVGElement | null = null;

  update(rows: LayerCounts[], bins: Bins, caption: string, width: number): void {
    this.rows = rows;
    this.element.replaceChildren(h("figcaption", {}, h("b", {}, "Scores per layer "), h("span", { class: "muted" }, caption)));
    const w = Math.max(260, Math.round(width));
    const height = TOP + rows.length * ROW_H + AXIS_H;
    const x = scaleLinear().domain(bins.domain).range([LABEL_W, w - RIGHT]);
    this.x = x;
    const svg = select(this.element)
      .append("svg")
      .attr("width", w)
      .attr("height", height)
      .attr("role", "img")
      .attr("aria-label", "Histogram of importance scores per layer");
    this.svg = svg.node();
    const barW = Math.max(1, x(bins.edges[0][1]) - x(bins.edges[0][0]) - 1);
    rows.forEach((row, i) => {
      const y0 = TOP + i * ROW_H;
      const top = max(row.counts) ?? 0;
      const y = scaleLinear()
        .domain([0, Math.max(1, top)])
        .range([y0 + ROW_H - 4, y0 + 6]);
      const g = svg.append("g").attr("class", "hist-row").attr("data-layer", row.layerIdx);
      g.append("line")
        .attr("class", "hist-base")
        .attr("x1", x(bins.domain[0]))
        .attr("x2", x(bins.domain[1]))
        .attr("y1", y(0) + 0.5)
        .attr("y2", y(0) + 0.5);
      g.append("rect")
        .attr("class", "hist-swatch")
        .attr("x", 0)
        .attr("y", y0 + 8)
        .attr("width", 4)
        .attr("height", ROW_H - 14)
        .attr("fill", layerColour(i, rows.length));
      g.append("text").attr("class", "hist-layer").attr("x", 9).attr("y", y0 + 17).text(shorten(row.name, 15));
      g.append("text").attr("class", "hist-n").attr("x", 9).attr("y", y0 + 29).text(`${row.n} neurons`);
      g.selectAll("rect.hist-bar")
        .data(row.counts.map((c, k) => ({ c, k })).filter((d) => d.c > 0))
        .join("rect")
        .attr("class", "hist-bar")
        .attr("x", (d) => x(bins.edges[d.k][0]) + 0.5)
        .attr("width", barW)
        .attr("y", (d) => y(d.c))
        .attr("height", (d) => y(0) - y(d.c))
        .append("title")
        .text((d) => `${row.name}: ${d.c} neuron${d.c === 1 ? "" : "s"} with I_n in ${fmtEdge(bins.edges[d.k])}`);
      // The row's own count scale: its tallest bar is labelled at the right edge.
      g.append("text")
        .attr("class", "hist-max")
        .attr("x", w - RIGHT + 4)
        .attr("y", y(Math.max(1, top)) + 4)
        .text(top ? String(top) : "");
      g.append("g").attr("class", "hist-mark");
    });
    const axisY = TOP + rows.length * ROW_H;
    svg
      .append("g")
      .attr("class", "hist-axis")
      .attr("transform", `translate(0,${axisY + 2})`)
      .call(axisBottom(x).tickValues([0, 0.25, 0.5, 0.75, 1]).tickFormat((v) => String(+v)).tickSizeOuter(0));
    svg
      .append("text")
      .attr("class", "hist-axis-label")
      .attr("x", (x(0) + x(1)) / 2)
      .attr("y", axisY + 34)
      .attr("text-anchor", "middle")
      .call((t) => {
        t.append("tspan").text("importance ");
        t.append("tspan").attr("font-style", "italic").text("I");
        t.append("tspan").attr("baseline-shift", "sub").attr("font-size", "0.8em").text("n");
        t.append("tspan").text(" (share of the class's images)");
      });
  }

  /** Point at `score` in the row of `layerIdx` (null clears). */
  mark(layerIdx: number | null, score: number | null): void {
    if (!this.svg || !this.x) return;
    const svg = select(this.svg);
    svg.selectAll(".hist-mark").selectAll("*").remove();
    if (layerIdx === null || score === null) return;
    const i = this.rows.findIndex((r) => r.layerIdx === layerIdx);
    if (i < 0) return;
    const y0 = TOP + i * ROW_H;
    const cx = this.x(score);
    const g = svg.select(`.hist-row[data-layer="${layerIdx}"] .hist-mark`);
    g.append("line").attr("class", "hist-mark-line").attr("x1", cx).attr("x2", cx).attr("y1", y0 + 3).attr("y2", y0 + ROW_H - 3);
    g.append("path").attr("class", "hist-mark-head").attr("d", `M${cx - 4},${y0 + 1}L${cx + 4},${y0 + 1}L${cx},${y0 + 6}Z`);
  }
}

function fmtEdge([a, b]: [number, number]): string {
  return `[${Math.max(0, a).toFixed(2)}, ${Math.min(1, b).toFixed(2)}]`;
}

function shorten(s: string, n: number): string {
  return s.length <= n ? s : `…${s.slice(s.length - n + 1)}`;
}
