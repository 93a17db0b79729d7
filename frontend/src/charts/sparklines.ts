/**
 * Small multiples under the epoch slider: accuracy (train and val top-1), concept diversity and movement
 * per epoch of the run, the current epoch marked. Clicking a chart selects the nearest computed epoch.
 */

import { line, max, min, scaleLinear, select } from "d3";

import type { EpochMetrics } from "../api/types";
import { h } from "../ui/dom";

interface Series {
  key: string;
  label: string;
  values: (m: EpochMetrics) => number | null;
  colour: string;
  dashed?: boolean;
}

const CHARTS: { title: string; series: Series[]; format: (v: number) => string }[] = [
  {
    title: "top-1 accuracy",
    series: [
      { key: "train", label: "train", values: (m) => m.train_top1, colour: "#0072B2" },
      { key: "val", label: "val", values: (m) => m.val_top1, colour: "#D55E00", dashed: true },
    ],
    format: (v) => v.toFixed(2),
  },
  {
    title: "concept diversity",
    series: [{ key: "div", label: "entropy", values: (m) => m.diversity, colour: "#009E73" }],
    format: (v) => v.toFixed(2),
  },
  {
    title: "movement",
    series: [{ key: "mov", label: "mean", values: (m) => m.movement, colour: "#CC79A7" }],
    format: (v) => v.toFixed(2),
  },
];

export class Sparklines {
  readonly element = h("div", { class: "sparklines", "data-testid": "sparklines" });
  private markers: ((current: number | null) => void)[] = [];

  /** What was drawn last: an epoch change with the same metrics only moves the markers. */
  private drawn: { metrics: EpochMetrics[]; move: (current: number | null) => void } | null = null;

  constructor(private readonly onSelect: (epoch: number) => void) {}

  update(metrics: EpochMetrics[], current: number | null): void {
    if (this.drawn?.metrics === metrics) return this.drawn.move(current);
    this.drawn = { metrics, move: (c) => this.markers.forEach((m) => m(c)) };
    this.markers = [];
    this.element.replaceChildren();
    if (!metrics.length) return;
    const width = 168;
    const height = 46;
    const x = scaleLinear()
      .domain([metrics[0].epoch, Math.max(metrics[metrics.length - 1].epoch, metrics[0].epoch + 1)])
      .range([4, width - 4]);
    for (const chart of CHARTS) {
      const values = metrics.flatMap((m) => chart.series.map((s) => s.values(m))).filter((v): v is number => v !== null && Number.isFinite(v));
      const box = h("figure", { class: "spark" });
      const caption = h("b", {});
      const captionFor = (c: number | null) => {
        const now = c === null ? undefined : metrics.find((m) => m.epoch === c);
        caption.textContent = now
          ? chart.series
              .map((s) => s.values(now))
              .map((v) => (v === null || !Number.isFinite(v) ? "–" : chart.format(v)))
              .join(" / ")
          : "";
      };
      box.appendChild(h("figcaption", {}, h("span", {}, chart.title), caption));
      captionFor(current);
      this.markers.push(captionFor);
      this.element.appendChild(box);
      const svg = select(box).append("svg").attr("width", width).attr("height", height);
      if (!values.length) {
        svg.append("text").attr("class", "spark-empty").attr("x", width / 2).attr("y", height / 2).text("not computed yet");
        continue;
      }
      const lo = min(values) ?? 0;
      const hi = max(values) ?? 1;
      const y = scaleLinear()
        .domain(lo === hi ? [lo - 1, hi + 1] : [lo, hi])
        .range([height - 4, 4]);
      for (const s of chart.series) {
        const pts = metrics.filter((m) => {
          const v = s.values(m);
          return v !== null && Number.isFinite(v);
        });
        svg
          .append("path")
          .attr("class", "spark-line")
          .attr("stroke", s.colour)
          .attr("stroke-dasharray", s.dashed ? "3,2" : null)
          .attr(
            "d",
            line<EpochMetrics>()
              .x((m) => x(m.epoch))
              .y((m) => y(s.values(m) as number))(pts) ?? "",
          );
      }
      const marker = svg.append("line").attr("class", "spark-now").attr("y1", 0).attr("y2", height);
      const markAt = (c: number | null) =>
        marker.attr("display", c === null ? "none" : null).attr("x1", x(c ?? 0)).attr("x2", x(c ?? 0));
      markAt(current);
      this.markers.push(markAt);
      svg.on("click", (event: MouseEvent) => {
        const e = x.invert(event.offsetX);
        const computed = metrics.filter((m) => m.computed);
        if (!computed.length) return;
        const best = computed.reduce((a, b) => (Math.abs(b.epoch - e) < Math.abs(a.epoch - e) ? b : a));
        this.onSelect(best.epoch);
      });
    }
  }
}
