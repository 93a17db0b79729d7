/**
 * The epoch slider: one tick per checkpoint of the run. Computed epochs are solid and selectable; epochs
 * that exist as checkpoints but are not placed in the space yet are hollow grey, and clicking one asks the
 * worker for it (its job's progress then fills the tick). A play button steps through computed epochs.
 */

import { scaleLinear, select, type Selection } from "d3";

import { h } from "./dom";

export interface SliderEpoch {
  epoch: number;
  computed: boolean;
  /** Progress (0–1) of the job computing it, when one is queued or running. */
  pending: number | null;
  /** Why its placement is flagged unstable (split-half stability), or absent when it is not. */
  unstable?: string | null;
}

export interface SliderCallbacks {
  select: (epoch: number) => void;
  request: (epoch: number) => void;
  togglePlay: () => void;
}

export class EpochSlider {
  readonly element: HTMLDivElement;
  private readonly playButton: HTMLButtonElement;
  private readonly label: HTMLSpanElement;
  /** A small flag beside the label while the shown epoch's placement is unstable. */
  private readonly unstableFlag: HTMLSpanElement;
  private readonly svg: Selection<SVGSVGElement, unknown, null, undefined>;
  private epochs: SliderEpoch[] = [];
  private current: number | null = null;
  private dragging = false;
  /** The track's width, from the resize observer: reading it in render would force a layout per epoch. */
  private width = 0;

  constructor(private readonly callbacks: SliderCallbacks) {
    this.playButton = h("button", {
      class: "play",
      type: "button",
      title: "Play / pause (space)",
      "aria-label": "Play",
      "data-testid": "play",
      onclick: () => callbacks.togglePlay(),
    });
    this.label = h("span", { class: "epoch-label", "data-testid": "epoch-label" });
    this.element = h("div", { class: "slider" }, this.playButton);
    this.svg = select(this.element)
      .append("svg")
      .attr("class", "slider-track")
      .attr("data-testid", "slider")
      .attr("height", 44) as Selection<SVGSVGElement, unknown, null, undefined>;
    this.element.appendChild(this.label);
    this.unstableFlag = h("span", { class: "unstable-flag", "data-testid": "unstable-flag", role: "status" }, "⚠ unstable");
    this.unstableFlag.hidden = true;
    this.element.appendChild(this.unstableFlag);
    // The track itself is observed: its width also changes when its neighbours (label, flags) do.
    new ResizeObserver((entries) => {
      const width = entries[entries.length - 1].contentRect.width;
      if (width === this.width) return;
      this.width = width;
      this.render();
    }).observe(this.svg.node() as SVGSVGElement);
    this.svg.on("pointerdown", (e: PointerEvent) => {
      this.dragging = true;
      this.svg.node()?.setPointerCapture(e.pointerId);
      this.pickAt(e, true);
    });
    this.svg.on("pointermove", (e: PointerEvent) => {
      if (this.dragging) this.pickAt(e, false);
    });
    this.svg.on("pointerup", () => (this.dragging = false));
  }

  update(epochs: SliderEpoch[], current: number | null, playing: boolean): void {
    this.epochs = epochs;
    this.current = current;
    this.playButton.textContent = playing ? "❚❚" : "▶";
    this.playButton.setAttribute("aria-label", playing ? "Pause" : "Play");
    this.playButton.disabled = epochs.filter((e) => e.computed).length < 2;
    const computed = epochs.filter((e) => e.computed).length;
    const last = epochs.length ? epochs[epochs.length - 1].epoch : 0;
    this.label.textContent =
      current === null ? `no epoch computed (${epochs.length} checkpoints)` : `epoch ${current} / ${last}`;
    this.label.title = `${computed} of ${epochs.length} epochs placed in this space`;
    const why = epochs.find((e) => e.epoch === current)?.unstable ?? null;
    this.unstableFlag.hidden = !why;
    this.unstableFlag.title = why ?? "";
    this.render();
  }

  private scale() {
    const width = this.width || 600;
    const lo = this.epochs.length ? this.epochs[0].epoch : 0;
    const hi = this.epochs.length ? this.epochs[this.epochs.length - 1].epoch : 1;
    return scaleLinear()
      .domain([lo, Math.max(hi, lo + 1)])
      .range([14, width - 14]);
  }

  private pickAt(event: PointerEvent, click: boolean): void {
    if (!this.epochs.length) return;
    const x = this.scale().invert(event.offsetX);
    let best = this.epochs[0];
    for (const e of this.epochs) if (Math.abs(e.epoch - x) < Math.abs(best.epoch - x)) best = e;
    if (best.computed) {
      if (best.epoch !== this.current) this.callbacks.select(best.epoch);
    } else if (click && best.pending === null) this.callbacks.request(best.epoch);
  }

  private render(): void {
    const x = this.scale();
    const y = 17;
    const svg = this.svg;
    svg
      .selectAll("line.track")
      .data([0])
      .join("line")
      .attr("class", "track")
      .attr("x1", x.range()[0])
      .attr("x2", x.range()[1])
      .attr("y1", y)
      .attr("y2", y);
    const ticks = svg
      .selectAll<SVGGElement, SliderEpoch>("g.tick")
      .data(this.epochs, (d) => String(d.epoch))
      .join((enter) => {
        const g = enter.append("g").attr("class", "tick");
        g.append("circle").attr("class", "dot");
        g.append("path").attr("class", "progress");
        g.append("text").attr("class", "tick-label").attr("y", y + 20);
        g.append("title");
        return g;
      });
    ticks
      .attr("transform", (d) => `translate(${x(d.epoch)},0)`)
      .attr("data-epoch", (d) => d.epoch)
      .attr("data-computed", (d) => (d.computed ? "1" : "0"))
      .classed("computed", (d) => d.computed)
      .classed("pending", (d) => d.pending !== null)
      .classed("current", (d) => d.epoch === this.current);
    ticks
      .select("circle.dot")
      .attr("cy", y)
      .attr("r", (d) => (d.epoch === this.current ? 8 : 5));
    ticks.select("path.progress").attr("d", (d) => (d.pending === null ? "" : arc(0, y, 8, Math.max(0.02, d.pending))));
    const every = Math.max(1, Math.ceil(this.epochs.length / Math.max(1, (x.range()[1] - x.range()[0]) / 34)));
    ticks
      .select("text.tick-label")
      .text((d, i) => (i % every === 0 || d.epoch === this.current ? String(d.epoch) : ""));
    ticks
      .select("title")
      .text((d) =>
        d.computed
          ? `epoch ${d.epoch}`
          : d.pending !== null
            ? `epoch ${d.epoch}: being computed (${Math.round(100 * d.pending)} %)`
            : `epoch ${d.epoch}: not placed in this space yet — click to compute it`,
      );
  }
}

/** An SVG arc path for a progress ring of `fraction` around (cx, cy). */
function arc(cx: number, cy: number, r: number, fraction: number): string {
  const a = Math.min(fraction, 0.999) * 2 * Math.PI;
  const x = cx + r * Math.sin(a);
  const y = cy - r * Math.cos(a);
  return `M${cx},${cy - r} A${r},${r} 0 ${a > Math.PI ? 1 : 0} 1 ${x.toFixed(2)},${y.toFixed(2)}`;
}
