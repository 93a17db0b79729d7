/**
 * One small multiple of the training-health view: a metric over epochs with every run of the space
 * overlaid (one colour per run), axes with labels, the current epoch marked, warning bands, and the nearest
 * point under the pointer reported for the tooltip and the click. Also the "SVG" export of a chart as a
 * standalone file (styles inlined, title and legend added, interaction layers dropped).
 */

import { axisBottom, axisLeft, format, line, pointer, scaleLinear, scaleLog, select, type ScaleContinuousNumeric } from "d3";

export interface ChartPoint {
  epoch: number;
  /** The value; ignored when `collapsed`. */
  value: number;
  /** Computed in the space, but the value is −∞ (diversity collapsed): drawn on the chart's floor row. */
  collapsed: boolean;
  /** This run × epoch is placed in the space (clicking it can open the map there). */
  computed: boolean;
}

export interface ChartRun {
  id: number;
  name: string;
  colour: string;
  points: ChartPoint[];
  /** The run of the current state: drawn on top, thicker. */
  emphasis: boolean;
}

export interface ChartSpec {
  /** `data-metric` of the chart and the export's file name. */
  metric: string;
  title: string;
  axisLabel: string;
  scale: "fraction" | "linear" | "log";
  format: (v: number) => string;
}

/** A shaded epoch range in a run's colour (the lead of an early warning). */
export interface ChartBand {
  colour: string;
  from: number;
  to: number;
  label: string;
}

export interface ChartInput {
  spec: ChartSpec;
  runs: ChartRun[];
  epochs: [number, number];
  current: { runId: number; epoch: number } | null;
  bands: ChartBand[];
  width: number;
  height: number;
}

export interface ChartHit {
  run: ChartRun;
  point: ChartPoint;
}

export interface ChartHandlers {
  hover: (hit: ChartHit | null, event: MouseEvent) => void;
  click: (hit: ChartHit) => void;
}

/** The top margin holds two label rows: warning bands (upper) and the current epoch (lower), never overlapping. */
const MARGIN = { top: 28, right: 14, bottom: 34, left: 54 };
/** Estimated width of one character of a band label (10.5 px bold), to keep labels apart without a layout. */
const BAND_LABEL_CHAR_PX = 7;
/** Height of the "collapsed (−∞)" row under the plot of a chart that has collapsed points. */
const FLOOR_ROW = 18;
const SVG_NS = "http://www.w3.org/2000/svg";

/** Draw a chart; returns its `<svg>` (a new element each time: charts are cheap, redraws are rare). */
export function drawHealthChart(input: ChartInput, handlers: ChartHandlers): SVGSVGElement {
  const { spec, runs, width, height } = input;
  const svg = select(document.createElementNS(SVG_NS, "svg") as SVGSVGElement)
    .attr("class", "health-svg")
    .attr("width", width)
    .attr("height", height)
    .attr("viewBox", `0 0 ${width} ${height}`)
    .attr("role", "img")
    .attr("aria-label", `${spec.title} per epoch, one line per run`);
  const hasFloor = runs.some((r) => r.points.some((p) => p.collapsed));
  const innerW = Math.max(40, width - MARGIN.left - MARGIN.right);
  const plotBottom = height - MARGIN.bottom - (hasFloor ? FLOOR_ROW : 0);
  const floorY = height - MARGIN.bottom - FLOOR_ROW / 2;

  const x = scaleLinear()
    .domain(input.epochs[0] === input.epochs[1] ? [input.epochs[0] - 0.5, input.epochs[1] + 0.5] : input.epochs)
    .range([MARGIN.left, MARGIN.left + innerW]);
  const y = yScale(spec, runs, [plotBottom, MARGIN.top]);
  const py = (p: ChartPoint) => (p.collapsed ? floorY : y(p.value));

  // Axes: integer epochs only; the y axis in the metric's own format.
  const epochSpan = Math.abs(input.epochs[1] - input.epochs[0]);
  const xTicks = x.ticks(Math.max(2, Math.min(epochSpan, Math.floor(innerW / 46)))).filter(Number.isInteger);
  svg
    .append("g")
    .attr("class", "axis axis-x")
    .attr("transform", `translate(0,${height - MARGIN.bottom})`)
    .call(axisBottom(x).tickValues(xTicks).tickFormat(format("d")).tickSizeOuter(0));
  const yAxis = axisLeft(y).tickSizeOuter(0);
  if (spec.scale === "log") yAxis.ticks(4, "~g");
  else yAxis.ticks(5).tickFormat((v) => spec.format(Number(v)));
  svg.append("g").attr("class", "axis axis-y").attr("transform", `translate(${MARGIN.left},0)`).call(yAxis);
  svg
    .append("text")
    .attr("class", "axis-label")
    .attr("x", MARGIN.left + innerW / 2)
    .attr("y", height - 4)
    .attr("text-anchor", "middle")
    .text("epoch");
  svg
    .append("text")
    .attr("class", "axis-label")
    .attr("transform", `translate(12,${(MARGIN.top + plotBottom) / 2}) rotate(-90)`)
    .attr("text-anchor", "middle")
    .text(spec.axisLabel);
  if (hasFloor) {
    svg
      .append("line")
      .attr("class", "floor-rule")
      .attr("x1", MARGIN.left)
      .attr("x2", MARGIN.left + innerW)
      .attr("y1", plotBottom + 2)
      .attr("y2", plotBottom + 2);
    svg
      .append("text")
      .attr("class", "floor-label")
      .attr("x", MARGIN.left - 6)
      .attr("y", floorY)
      .attr("dy", "0.32em")
      .attr("text-anchor", "end")
      .text("−∞");
  }

  // Bands of several runs can touch: each label starts after the previous one's estimated end, never on it.
  let labelsEnd = -Infinity;
  for (const band of input.bands) {
    const x0 = x(band.from);
    const x1 = Math.max(x0 + 3, x(band.to));
    svg
      .append("rect")
      .attr("class", "warning-band")
      .attr("x", x0)
      .attr("y", MARGIN.top)
      .attr("width", x1 - x0)
      .attr("height", plotBottom - MARGIN.top)
      .attr("fill", band.colour);
    const labelX = Math.max(x0, labelsEnd);
    svg
      .append("text")
      .attr("class", "band-label")
      .attr("x", labelX)
      .attr("y", MARGIN.top - 18)
      .attr("fill", band.colour)
      .text(band.label);
    labelsEnd = labelX + band.label.length * BAND_LABEL_CHAR_PX + 8;
  }

  const current = input.current;
  if (current) {
    const cx = x(current.epoch);
    svg.append("line").attr("class", "current-epoch").attr("x1", cx).attr("x2", cx).attr("y1", MARGIN.top - 3).attr("y2", height - MARGIN.bottom);
    svg
      .append("text")
      .attr("class", "current-label")
      .attr("x", cx)
      .attr("y", MARGIN.top - 5)
      .attr("text-anchor", cx > MARGIN.left + innerW - 40 ? "end" : cx < MARGIN.left + 40 ? "start" : "middle")
      .text(`epoch ${current.epoch}`);
  }

  // Lines, then points; the current run last so it lies on top.
  const ordered = [...runs].sort((a, b) => Number(a.emphasis) - Number(b.emphasis));
  const path = line<ChartPoint>()
    .x((p) => x(p.epoch))
    .y(py);
  for (const run of ordered) {
    const g = svg.append("g").attr("class", "run").attr("data-run", run.name);
    g.append("path")
      .attr("class", run.emphasis ? "run-line emphasis" : "run-line")
      .attr("data-run", run.name)
      .attr("stroke", run.colour)
      .attr("d", path(run.points) ?? "");
    g.selectAll("circle")
      .data(run.points)
      .join("circle")
      .attr("class", (p) => (p.computed ? "run-point" : "run-point uncomputed"))
      .attr("cx", (p) => x(p.epoch))
      .attr("cy", py)
      .attr("r", run.emphasis ? 3 : 2.4)
      .attr("stroke", run.colour)
      .attr("fill", (p) => (p.computed ? run.colour : "#ffffff"));
  }
  if (current) {
    const run = runs.find((r) => r.id === current.runId);
    const p = run?.points.find((q) => q.epoch === current.epoch);
    if (run && p) svg.append("circle").attr("class", "current-ring").attr("cx", x(p.epoch)).attr("cy", py(p)).attr("r", 6.5).attr("stroke", run.colour);
  }

  // Interaction: the nearest point (in pixels) to the pointer, over the whole plot.
  const ring = svg.append("circle").attr("class", "hover-ring no-export").attr("r", 7).style("display", "none");
  let hit: ChartHit | null = null;
  const nearest = (event: MouseEvent): ChartHit | null => {
    const [mx, my] = pointer(event, svg.node());
    let best: ChartHit | null = null;
    let bestD = Infinity;
    for (const run of runs)
      for (const p of run.points) {
        const d = (x(p.epoch) - mx) ** 2 + (py(p) - my) ** 2;
        if (d < bestD) {
          bestD = d;
          best = { run, point: p };
        }
      }
    return best;
  };
  svg
    .append("rect")
    .attr("class", "hit-area no-export")
    .attr("x", MARGIN.left - 8)
    .attr("y", MARGIN.top - 8)
    .attr("width", innerW + 16)
    .attr("height", height - MARGIN.bottom - MARGIN.top + 8)
    .on("mousemove", (event: MouseEvent) => {
      hit = nearest(event);
      if (hit) ring.style("display", null).attr("cx", x(hit.point.epoch)).attr("cy", py(hit.point)).attr("stroke", hit.run.colour);
      else ring.style("display", "none");
      select(event.currentTarget as Element).style("cursor", hit?.point.computed ? "pointer" : "default");
      handlers.hover(hit, event);
    })
    .on("mouseleave", (event: MouseEvent) => {
      hit = null;
      ring.style("display", "none");
      handlers.hover(null, event);
    })
    .on("click", (event: MouseEvent) => {
      const h = nearest(event);
      if (h) handlers.click(h);
    });
  return svg.node()!;
}

function yScale(spec: ChartSpec, runs: ChartRun[], range: [number, number]): ScaleContinuousNumeric<number, number> {
  const values = runs.flatMap((r) => r.points.filter((p) => !p.collapsed).map((p) => p.value));
  if (spec.scale === "fraction") {
    // Accuracy on its full 0–1 range: runs compare honestly, and chance level is visibly near the floor.
    return scaleLinear().domain([0, Math.max(1, ...values)]).range(range);
  }
  if (spec.scale === "log") {
    const positive = values.filter((v) => v > 0);
    if (positive.length) {
      const lo = Math.min(...positive);
      const hi = Math.max(...positive);
      return scaleLog()
        .domain(lo === hi ? [lo / 2, hi * 2] : [lo / 1.15, hi * 1.15])
        .range(range)
        .nice();
    }
  }
  if (!values.length) return scaleLinear().domain([0, 1]).range(range);
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = lo === hi ? Math.max(Math.abs(lo) * 0.1, 0.1) : (hi - lo) * 0.06;
  return scaleLinear()
    .domain([lo - pad, hi + pad])
    .range(range)
    .nice(5);
}

// ---- export ---------------------------------------------------------------------------------------------

/** Presentation properties copied from the page's computed styles into the exported file. */
const INLINE = [
  "fill",
  "fill-opacity",
  "stroke",
  "stroke-width",
  "stroke-opacity",
  "stroke-dasharray",
  "stroke-linecap",
  "stroke-linejoin",
  "opacity",
  "font-family",
  "font-size",
  "font-weight",
  "text-anchor",
  "dominant-baseline",
];

/**
 * The chart as a standalone SVG document: every element's computed presentation styles inlined (so it
 * renders the same without the page's stylesheet), interaction layers removed, a white background, the
 * title above and a legend of the runs below.
 */
export function standaloneSvg(svg: SVGSVGElement, title: string, legend: { name: string; colour: string }[]): string {
  const clone = svg.cloneNode(true) as SVGSVGElement;
  const source = [svg, ...svg.querySelectorAll("*")];
  const target = [clone, ...clone.querySelectorAll("*")];
  source.forEach((el, i) => {
    const cs = getComputedStyle(el);
    // SVG presentation properties inherit (all but opacity): write what differs from the parent, and what
    // the element sets itself (an attribute such as d3's stroke="currentColor" would win over inheritance).
    const parent = el === svg || !el.parentElement ? null : getComputedStyle(el.parentElement);
    const style = INLINE.map((p) => [p, cs.getPropertyValue(p)] as const)
      .filter(
        ([p, v]) =>
          v !== "" && (el.hasAttribute(p) || (p === "opacity" ? v !== "1" : !parent || parent.getPropertyValue(p) !== v)),
      )
      .map(([p, v]) => `${p}:${v}`)
      .join(";");
    if (style) target[i].setAttribute("style", style);
    target[i].removeAttribute("class");
    if (el.classList.contains("no-export")) target[i].setAttribute("data-drop", "");
  });
  clone.querySelectorAll("[data-drop]").forEach((el) => el.remove());

  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const top = 26;
  const perRow = Math.max(1, Math.floor((width - 20) / 150));
  const rows = Math.ceil(legend.length / perRow);
  const total = top + height + rows * 18 + 8;
  const font = getComputedStyle(svg).fontFamily || "sans-serif";

  const out = document.createElementNS(SVG_NS, "svg");
  out.setAttribute("xmlns", SVG_NS);
  out.setAttribute("width", String(width));
  out.setAttribute("height", String(total));
  out.setAttribute("viewBox", `0 0 ${width} ${total}`);
  out.setAttribute("style", `font-family:${font}`);
  const bg = document.createElementNS(SVG_NS, "rect");
  for (const [k, v] of Object.entries({ width, height: total, fill: "#ffffff" })) bg.setAttribute(k, String(v));
  out.append(bg);
  const heading = document.createElementNS(SVG_NS, "text");
  for (const [k, v] of Object.entries({ x: 10, y: 18, "font-size": 14, "font-weight": 600, fill: "#1d1d1b" })) heading.setAttribute(k, String(v));
  heading.textContent = title;
  out.append(heading);
  const body = document.createElementNS(SVG_NS, "g");
  body.setAttribute("transform", `translate(0,${top})`);
  // The chart's own root styles (font size, colour) now live on its group.
  body.setAttribute("style", clone.getAttribute("style") ?? "");
  body.append(...clone.childNodes);
  out.append(body);
  legend.forEach((entry, i) => {
    const gx = 14 + (i % perRow) * 150;
    const gy = top + height + 6 + Math.floor(i / perRow) * 18;
    const swatch = document.createElementNS(SVG_NS, "rect");
    for (const [k, v] of Object.entries({ x: gx, y: gy + 3, width: 14, height: 4, rx: 2, fill: entry.colour })) swatch.setAttribute(k, String(v));
    const label = document.createElementNS(SVG_NS, "text");
    for (const [k, v] of Object.entries({ x: gx + 20, y: gy + 9, "font-size": 11, fill: "#1d1d1b" })) label.setAttribute(k, String(v));
    label.textContent = entry.name;
    out.append(swatch, label);
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(out)}\n`;
}
