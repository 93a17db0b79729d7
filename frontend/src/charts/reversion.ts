/**
 * The reversion check of paper §4.4 (Fig 6, Table 1): how much top-1 accuracy at t′ changes when one
 * importance quarter of each layer's evolutions is reverted to t (averaged over layers and classes), and
 * for a random quarter. Dots with ± std error bars, train and val side by side, a zero line; and a
 * sentence that says whether this run shows the paper's ordering, computed from the numbers.
 */

import { axisBottom, axisLeft, max, min, precisionFixed, scaleBand, scaleLinear, select } from "d3";

import { h } from "../ui/dom";

/** `result.table` of a done `revert_eval` job (worker/engine/reversion.py `ReversionTable.to_dict`). */
export interface ReversionTable {
  label: string;
  /** "0-25%", "25-50%", "50-75%", "75-100%" (most → least important), "random". */
  rows: string[];
  /** "train_top1", "train_top5", "val_top1", "val_top5". */
  columns: string[];
  /** rows × columns: accuracy change (reverted − unreverted), averaged over layers, classes, repetitions. */
  mean: number[][];
  std: number[][];
  base_accuracy: Record<string, number> | number;
  classes?: number[];
  layers?: string[];
  reps: number;
  n_images?: number;
}

/** Whether a job result holds a usable table (the shape is checked, not trusted). */
export function isReversionTable(value: unknown): value is ReversionTable {
  const t = value as Partial<ReversionTable> | null;
  return (
    !!t &&
    Array.isArray(t.rows) &&
    Array.isArray(t.columns) &&
    Array.isArray(t.mean) &&
    Array.isArray(t.std) &&
    t.mean.length === t.rows.length &&
    t.mean.every((r) => Array.isArray(r) && r.length === t.columns!.length)
  );
}

export interface BinChanges {
  /** Change for the four importance quarters, most important first. */
  bins: [number, number, number, number];
  random: number;
}

/** The four quarters' and the random quarter's change in `column`, or null when the table lacks them. */
export function binChanges(table: ReversionTable, column: string): BinChanges | null {
  const j = table.columns.indexOf(column);
  if (j < 0) return null;
  const r = table.rows.findIndex((row) => row.toLowerCase().startsWith("random"));
  const quarters = table.rows.map((_, i) => i).filter((i) => i !== r);
  if (r < 0 || quarters.length !== 4) return null;
  const v = (i: number) => Number(table.mean[i][j]);
  const bins = quarters.map(v) as [number, number, number, number];
  if (![...bins, v(r)].every(Number.isFinite)) return null;
  return { bins, random: v(r) };
}

export interface Ordering {
  /** Reverting the most important quarter changes accuracy the least favourably (largest drop). */
  mostHurtsMost: boolean;
  /** Reverting the least important quarter hurts least. */
  leastHurtsLeast: boolean;
  /** The random quarter lies between the most and the least important quarter. */
  randomBetween: boolean;
  /** All four quarters in order (each hurts at least as much as the next less important one). */
  monotone: boolean;
  /** The paper's finding holds: the first three together. */
  holds: boolean;
}

const EPS = 1e-9;
/** Changes this close together (in accuracy) do not order anything. */
const FLAT = 1e-3;

/** How the changes are ordered (lower change = bigger drop = more harm). */
export function ordering(c: BinChanges): Ordering {
  const [b0, b1, b2, b3] = c.bins;
  // Strictly: a flat table (every quarter the same) shows no ordering at all.
  const mostHurtsMost = b0 <= Math.min(b1, b2, b3) + EPS && b0 < b3 - EPS;
  const leastHurtsLeast = b3 >= Math.max(b0, b1, b2) - EPS && b3 > b0 + EPS;
  const randomBetween = c.random >= b0 - EPS && c.random <= b3 + EPS;
  const monotone = b0 <= b1 + EPS && b1 <= b2 + EPS && b2 <= b3 + EPS;
  return { mostHurtsMost, leastHurtsLeast, randomBetween, monotone, holds: mostHurtsMost && leastHurtsLeast && randomBetween };
}

/** A signed change in accuracy for text: −0.213 → "−0.213", 0.004 → "+0.004". */
export function signed(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return "–";
  const s = Math.abs(v).toFixed(digits);
  if (Number(s) === 0) return (0).toFixed(digits);
  return `${v < 0 ? "−" : "+"}${s}`;
}

const PAPER =
  "The paper found that reverting the most important quarter of evolutions hurts accuracy most, the least important quarter least, and a random quarter lands in between.";

/** One finding per split: does it show the ordering, and if not, what breaks it; with the numbers. */
function splitSentence(name: string, c: BinChanges): string {
  const o = ordering(c);
  const nums = `most important ${signed(c.bins[0])}, least ${signed(c.bins[3])}, random ${signed(c.random)}`;
  if (o.holds) return `${name} top-1 shows it (${nums}).`;
  const broken: string[] = [];
  if (!o.mostHurtsMost) broken.push("the most important quarter is not the most harmful");
  if (!o.leastHurtsLeast) broken.push("the least important quarter is not the least harmful");
  if (!o.randomBetween) broken.push("the random quarter is not in between");
  const list = broken.length > 1 ? `${broken.slice(0, -1).join(", ")} and ${broken[broken.length - 1]}` : broken[0];
  return `${name} top-1: ${list} (${nums}).`;
}

/** The sentence under the chart: the paper's finding, and whether this run's table shows it (top-1). */
export function reversionVerdict(table: ReversionTable): { holds: boolean | null; text: string } {
  const train = binChanges(table, "train_top1");
  const val = binChanges(table, "val_top1");
  const parts: string[] = [];
  if (train) parts.push(splitSentence("Train", train));
  if (val) parts.push(splitSentence("Val", val));
  if (!parts.length) return { holds: null, text: `${PAPER} This table has no top-1 accuracy to compare.` };
  const splits = [train, val].filter((c): c is BinChanges => c !== null);
  const flat = splits.every((c) => Math.max(...c.bins, c.random) - Math.min(...c.bins, c.random) <= FLAT);
  if (flat)
    return {
      holds: null,
      text: `${PAPER} Here reverting any quarter changed top-1 accuracy by less than ${FLAT} — too few images or too small a stage to tell; run it for all classes or another stage.`,
    };
  const all = splits.map((c) => ordering(c).holds);
  const holds = all.every(Boolean);
  if (holds) {
    // Both agree: one short sentence with the numbers side by side.
    const names = [train && "train", val && "val"].filter(Boolean).join(" and ");
    const both = (f: (c: BinChanges) => number) => splits.map((c) => signed(f(c))).join(" / ");
    const inAll = splits.every((c) => ordering(c).monotone) ? ", in all four quarters" : "";
    const unit = splits.length > 1 ? ` (${[train && "train", val && "val"].filter(Boolean).join(" / ")})` : "";
    return {
      holds,
      text: `${PAPER} This run shows that ordering in ${names} top-1${inAll}: most important ${both((c) => c.bins[0])}, least ${both((c) => c.bins[3])}, random ${both((c) => c.random)}${unit}.`,
    };
  }
  const lead = all.some(Boolean) ? "This run shows it only in part" : "This run does not show that ordering";
  return { holds, text: `${PAPER} ${lead}. ${parts.join(" ")}` };
}

const SERIES = [
  { column: "train_top1", label: "train top-1", colour: "#0072B2", shape: "circle" },
  { column: "val_top1", label: "val top-1", colour: "#D55E00", shape: "square" },
] as const;

const BIN_NAMES: Record<string, [string, string]> = {
  "0-25%": ["0–25 %", "most important"],
  "25-50%": ["25–50 %", ""],
  "50-75%": ["50–75 %", ""],
  "75-100%": ["75–100 %", "least important"],
  random: ["random", "25 %"],
};

/** The chart; `update` redraws it for a table. */
export class ReversionChart {
  readonly element = h("figure", { class: "imp-reversion", "data-testid": "reversion-chart" });

  update(table: ReversionTable, caption: string, width: number): void {
    const verdict = reversionVerdict(table);
    this.element.replaceChildren(
      h("figcaption", {}, h("b", {}, "Reversion check "), h("span", { class: "muted" }, caption)),
    );
    const w = Math.max(280, Math.round(width));
    const height = 214;
    const margin = { top: 12, right: 10, bottom: 44, left: 52 };
    const cols = SERIES.map((s) => ({ ...s, j: table.columns.indexOf(s.column) })).filter((s) => s.j >= 0);
    const values = table.rows.flatMap((_, i) =>
      cols.flatMap((s) => [table.mean[i][s.j] - (table.std[i]?.[s.j] ?? 0), table.mean[i][s.j] + (table.std[i]?.[s.j] ?? 0)]),
    );
    const lo = Math.min(0, min(values) ?? 0);
    const hi = Math.max(0, max(values) ?? 0);
    // At least ±0.01 around zero, so that ticks of two decimals are distinct even for a flat table.
    const pad = Math.max((hi - lo) * 0.08, 0.01);
    const y = scaleLinear()
      .domain([lo - pad, hi + pad])
      .nice(5)
      .range([height - margin.bottom, margin.top]);
    // Enough decimals that neighbouring ticks read differently (a flat table has ticks 0.005 apart).
    const ticks = y.ticks(5);
    const digits = Math.max(2, ticks.length > 1 ? precisionFixed(ticks[1] - ticks[0]) : 2);
    const x = scaleBand<string>()
      .domain(table.rows)
      .range([margin.left, w - margin.right])
      .paddingInner(0.25)
      .paddingOuter(0.1);
    const svg = select(this.element)
      .append("svg")
      .attr("width", w)
      .attr("height", height)
      .attr("role", "img")
      .attr("aria-label", "Change in top-1 accuracy when each importance quarter of evolutions is reverted");
    // The random quarter is the baseline: a shaded band behind it sets it apart from the ranked quarters.
    const rnd = table.rows.find((r) => r.toLowerCase().startsWith("random"));
    if (rnd !== undefined) {
      const x0 = (x(rnd) ?? 0) - (x.step() - x.bandwidth()) / 2;
      svg
        .append("rect")
        .attr("class", "rev-random-band")
        .attr("x", x0)
        .attr("width", Math.max(0, w - margin.right - x0))
        .attr("y", margin.top)
        .attr("height", height - margin.top - margin.bottom);
    }
    svg
      .append("g")
      .attr("class", "rev-axis")
      .attr("transform", `translate(${margin.left},0)`)
      .call(axisLeft(y).ticks(5).tickFormat((v) => signed(+v, digits)).tickSizeOuter(0));
    svg
      .append("line")
      .attr("class", "rev-zero")
      .attr("x1", margin.left)
      .attr("x2", w - margin.right)
      .attr("y1", y(0))
      .attr("y2", y(0));
    const xAxis = svg
      .append("g")
      .attr("class", "rev-axis rev-x")
      .attr("transform", `translate(0,${height - margin.bottom})`)
      .call(axisBottom(x).tickSize(0).tickFormat(() => ""));
    xAxis.select(".domain").remove();
    for (const row of table.rows) {
      const [top, sub] = BIN_NAMES[row] ?? [row, ""];
      const cx = (x(row) ?? 0) + x.bandwidth() / 2;
      const t = svg.append("text").attr("class", "rev-bin").attr("x", cx).attr("y", height - margin.bottom + 16).attr("text-anchor", "middle");
      t.append("tspan").text(top);
      if (sub) t.append("tspan").attr("class", "rev-bin-sub").attr("x", cx).attr("dy", 13).text(sub);
    }
    svg
      .append("text")
      .attr("class", "rev-ylabel")
      .attr("transform", `translate(12,${(margin.top + height - margin.bottom) / 2}) rotate(-90)`)
      .attr("text-anchor", "middle")
      .text("Δ top-1 accuracy");
    const offset = x.bandwidth() / (cols.length + 1);
    cols.forEach((s, k) => {
      const g = svg.append("g").attr("class", "rev-series").attr("data-column", s.column);
      table.rows.forEach((row, i) => {
        const cx = (x(row) ?? 0) + offset * (k + 1);
        const m = table.mean[i][s.j];
        const sd = table.std[i]?.[s.j] ?? 0;
        const p = g.append("g").attr("class", "rev-point");
        p.append("title").text(`${s.label}, ${row}: ${signed(m)} ± ${sd.toFixed(3)}`);
        p.append("line").attr("class", "rev-err").attr("x1", cx).attr("x2", cx).attr("y1", y(m - sd)).attr("y2", y(m + sd)).attr("stroke", s.colour);
        for (const v of [m - sd, m + sd])
          p.append("line").attr("class", "rev-err").attr("x1", cx - 4).attr("x2", cx + 4).attr("y1", y(v)).attr("y2", y(v)).attr("stroke", s.colour);
        if (s.shape === "circle") p.append("circle").attr("cx", cx).attr("cy", y(m)).attr("r", 4.5).attr("fill", s.colour);
        else p.append("rect").attr("x", cx - 4).attr("y", y(m) - 4).attr("width", 8).attr("height", 8).attr("fill", s.colour);
      });
    });
    this.element.append(
      h(
        "div",
        { class: "rev-legend" },
        ...cols.map((s) =>
          h("span", {}, h("i", { class: `rev-key ${s.shape}`, style: `background:${s.colour}` }), s.label),
        ),
        h("span", { class: "muted" }, "error bars: ± std over repetitions"),
      ),
      h("p", { class: verdict.holds === false ? "rev-verdict differs" : "rev-verdict", "data-testid": "reversion-verdict" }, verdict.text),
    );
  }
}
