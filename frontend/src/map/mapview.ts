/**
 * The evolution map: one run's neurons at one epoch as points in the unified space, drawn by the CPU
 * raster (./raster.ts) under an SVG overlay (labels, trajectory, selection rings) that D3 zooms and pans.
 *
 * Coordinates: data (unified-space x, y) → CSS pixels by a fixed base scale (equal aspect, set once per
 * space, so nothing re-lays out when epochs change) and the current zoom transform → device pixels for the
 * raster. Epoch changes glide: positions are interpolated over `glideMs`, one raster frame per animation
 * frame. Hover and click go through a quadtree (./hit.ts).
 */

import {
  brush,
  contourDensity,
  geoPath,
  select,
  zoom,
  zoomIdentity,
  type BrushBehavior,
  type Selection,
  type ZoomBehavior,
  type ZoomTransform,
} from "d3";

import { type Points, sameElements } from "../api/columns";
import { mixAbgr, toAbgr } from "../colors";
import type { ZoomBox } from "../state/url";
import { alignFrom, easeInOut, lerpInto } from "./glide";
import { HitIndex } from "./hit";
import { type MapLabel, placeEpochTags } from "./labels";
import { makeStamp, Raster, type StampSet } from "./raster";

const BACKGROUND = toAbgr("#fbfbfa");
const BACKDROP = toAbgr("#dcdcd8");
const MARGIN = 28;
const HOVER_RADIUS_CSS = 9;

export interface MapStyle {
  /** Fill colour per point (ABGR), aligned with the points. */
  fill: Uint32Array;
  /** Points with 0 are hidden (layer toggled off); null: all shown. */
  visible: Uint8Array | null;
  /** Points with 0 are drawn faded and underneath; null: no emphasis. */
  emphasis: Uint8Array | null;
}

export interface TrajectoryPoint {
  x: number;
  y: number;
  epoch: number;
  current: boolean;
}

export interface MapCallbacks {
  hover?: (index: number, clientX: number, clientY: number) => void;
  click?: (index: number) => void;
  zoomEnd?: (box: ZoomBox | null) => void;
  /** Every zoom/pan step the user makes (not those applied with {@link MapView.applyTransform}). */
  zoom?: (transform: ZoomTransform) => void;
  /** A brushed region (data coordinates), or null when the brush is cleared. */
  brush?: (box: ZoomBox | null) => void;
  glideEnd?: () => void;
  /** The map's size changed (labels placed in screen space must be placed again). */
  resized?: () => void;
}

/** A density contour set: one colour, the points it summarises. */
export interface ContourSet {
  colour: string;
  x: Float32Array;
  y: Float32Array;
}

/** Resolution of the density grid along the domain's wider side. */
const CONTOUR_GRID = 240;

/** Performance and content figures read by the browser tests and bench/ui.py. */
export interface MapStats {
  pointsDrawn: number;
  frames: number;
  glideFrameTimes: number[];
  lastGlideFrames: number;
  gliding: boolean;
}

type Svg = Selection<SVGSVGElement, unknown, null, undefined>;

export class MapView {
  readonly element: HTMLDivElement;
  readonly stats: MapStats = { pointsDrawn: 0, frames: 0, glideFrameTimes: [], lastGlideFrames: 0, gliding: false };
  glideMs = 420;
  /** CSS pixels on the left kept free of points at zoom 1 (where the legend floats). */
  insetLeft = 0;

  private readonly raster: Raster;
  private readonly svg: Svg;
  private readonly zoomBehaviour: ZoomBehavior<SVGSVGElement, unknown>;
  private transform: ZoomTransform = zoomIdentity;
  private cssWidth = 0;
  private cssHeight = 0;
  private domain: ZoomBox | null = null;
  /** Base scale: css = data * k + offset (same k for x and y). */
  private baseK = 1;
  private baseX = 0;
  private baseY = 0;

  private points: Points | null = null;
  private curX: Float32Array = new Float32Array(0);
  private curY: Float32Array = new Float32Array(0);
  private fromX: Float32Array = new Float32Array(0);
  private fromY: Float32Array = new Float32Array(0);
  private px = new Float32Array(0);
  private py = new Float32Array(0);
  private style: MapStyle | null = null;
  private drawFill = new Uint32Array(0);
  private drawRim = new Uint32Array(0);
  private order: Uint32Array | null = null;
  private stampSet: StampSet | null = null;
  private stampKey = "";
  private backdropStampSet: StampSet | null = null;

  private backdrop: Points | null = null;
  private backdropVisible = true;
  private backdropLayer: Uint32Array | null = null;
  private backdropKey = "";
  private drawCallbacks: (() => void)[] = [];
  private backdropPx = new Float32Array(0);
  private backdropPy = new Float32Array(0);
  private backdropFill = new Uint32Array(0);

  private readonly hit = new HitIndex();
  private hitDirty = false;
  private glideStart = 0;
  private lastFrameAt = 0;
  private frameRequested = false;
  private selected = -1;
  private hovered = -1;
  private trajectory: TrajectoryPoint[] = [];
  private labels: MapLabel[] = [];
  private labelsHidden = false;
  private zoomTimer = 0;
  private suppressZoomEvent = false;
  private linking = false;
  /** The region asked for (by the URL or the user's last zoom); kept in view when the map is resized. */
  private wantedBox: ZoomBox | null = null;
  private linked = -1;
  private brushBehaviour: BrushBehavior<unknown> | null = null;
  private brushBox: ZoomBox | null = null;
  private movingBrush = false;
  private contourGrid: { x0: number; y0: number; sx: number; sy: number } | null = null;
  private readonly callbacks: MapCallbacks;

  constructor(callbacks: MapCallbacks = {}) {
    this.callbacks = callbacks;
    this.element = document.createElement("div");
    this.element.className = "map";
    const canvas = document.createElement("canvas");
    canvas.className = "map-canvas";
    this.element.appendChild(canvas);
    this.raster = new Raster(canvas);
    this.svg = select(this.element)
      .append("svg")
      .attr("class", "map-overlay")
      .attr("role", "img")
      .attr("aria-label", "Evolution map: neurons in the unified semantic space") as Svg;
    const defs = this.svg.append("defs");
    defs
      .append("marker")
      .attr("id", "traj-arrow")
      .attr("viewBox", "0 0 10 10")
      .attr("refX", 8)
      .attr("refY", 5)
      .attr("markerWidth", 7)
      .attr("markerHeight", 7)
      .attr("orient", "auto-start-reverse")
      .append("path")
      .attr("d", "M0,0 L10,5 L0,10 z")
      .attr("fill", "#1a1a1a");
    this.svg.append("g").attr("class", "contours");
    this.svg.append("g").attr("class", "labels");
    this.svg.append("g").attr("class", "trajectory");
    this.svg.append("circle").attr("class", "ring hover-ring").attr("r", 7).style("display", "none");
    this.svg.append("circle").attr("class", "ring selected-ring").attr("r", 9).style("display", "none");
    this.svg.append("circle").attr("class", "ring linked-ring").attr("r", 9).style("display", "none");

    this.zoomBehaviour = zoom<SVGSVGElement, unknown>()
      .scaleExtent([0.5, 400])
      // While the brush is on, drags belong to it; the wheel still zooms. (d3's default filter otherwise.)
      .filter((event: MouseEvent) => (!event.ctrlKey || event.type === "wheel") && !event.button && (this.brushBehaviour === null || event.type === "wheel"))
      .on("start", () => this.setLabelsHidden(true))
      .on("zoom", (event: { transform: ZoomTransform }) => {
        this.transform = event.transform;
        // Only the user's gestures are passed on to linked maps; a programmatic zoom (a URL's box) is each map's own.
        if (!this.linking && !this.suppressZoomEvent) this.callbacks.zoom?.(event.transform);
        this.moveBrushToBox();
        this.requestFrame();
      })
      .on("end", () => {
        window.clearTimeout(this.zoomTimer);
        // Programmatic zooms (a URL's box, a linked map's transform) are not reported back as the user's.
        const report = !this.suppressZoomEvent;
        const own = report && !this.linking;
        this.suppressZoomEvent = false;
        if (report) this.wantedBox = this.zoomBox();
        this.zoomTimer = window.setTimeout(() => {
          this.setLabelsHidden(false);
          if (own) this.callbacks.zoomEnd?.(this.zoomBox());
        }, 120);
      });
    this.svg.call(this.zoomBehaviour).on("dblclick.zoom", null);
    this.svg.on("dblclick", (event: MouseEvent) => {
      event.preventDefault();
      this.resetZoom(true);
    });
    this.svg.on("pointermove", (event: PointerEvent) => this.onPointerMove(event));
    this.svg.on("pointerleave", () => this.setHovered(-1, 0, 0));
    this.svg.on("click", (event: MouseEvent) => {
      if (event.defaultPrevented) return;
      const index = this.pick(event.clientX, event.clientY);
      this.callbacks.click?.(index);
    });

    new ResizeObserver(() => this.resize()).observe(this.element);
  }

  // ---- data -------------------------------------------------------------------------------------------------

  /** Fix the data extent that fills the view at zoom 1 (once per space: it never changes with epochs). */
  setDomain(domain: ZoomBox): void {
    this.domain = domain;
    this.updateBaseScale();
    this.requestFrame();
  }

  hasDomain(): boolean {
    return this.domain !== null;
  }

  /** The faint grey context drawn under the run's points (the base model), or null. */
  setBackdrop(points: Points | null): void {
    this.backdrop = points;
    this.backdropKey = "";
    if (points) {
      this.backdropPx = new Float32Array(points.n);
      this.backdropPy = new Float32Array(points.n);
      this.backdropFill = new Uint32Array(points.n).fill(BACKDROP);
    }
    this.requestFrame();
  }

  /** Show or hide the backdrop (hidden when the run's points are the base snapshot itself). */
  setBackdropVisible(visible: boolean): void {
    if (visible === this.backdropVisible) return;
    this.backdropVisible = visible;
    this.requestFrame();
  }

  /** Call `callback` once, right after the next frame is drawn. */
  onNextDraw(callback: () => void): void {
    this.drawCallbacks.push(callback);
    this.requestFrame();
  }

  /** Show `points` at once (no glide), styled by `style`. */
  setPoints(points: Points | null, style: MapStyle | null): void {
    this.points = points;
    this.stats.gliding = false;
    const n = points?.n ?? 0;
    this.curX = points ? new Float32Array(points.x) : new Float32Array(0);
    this.curY = points ? new Float32Array(points.y) : new Float32Array(0);
    this.fromX = this.curX;
    this.fromY = this.curY;
    this.px = new Float32Array(n);
    this.py = new Float32Array(n);
    this.selected = -1;
    this.hovered = -1;
    this.setStyle(style);
    this.rebuildHitIndex();
  }

  /** Move from the current points to `points` (same run, another epoch) over `glideMs`. */
  glideTo(points: Points, style: MapStyle): void {
    const previous = this.points;
    if (!previous || this.glideMs <= 0) {
      this.setPoints(points, style);
      this.callbacks.glideEnd?.();
      return;
    }
    const shown: Points = { ...previous, x: this.curX, y: this.curY };
    const from = alignFrom(points, shown);
    this.points = points;
    this.fromX = from.x;
    this.fromY = from.y;
    this.curX = new Float32Array(from.x);
    this.curY = new Float32Array(from.y);
    this.px = new Float32Array(points.n);
    this.py = new Float32Array(points.n);
    this.selected = -1;
    this.setHovered(-1, 0, 0);
    this.stats.gliding = true;
    this.rebuildHitIndex();
    this.setStyle(style);
    this.stats.glideFrameTimes = [];
    // The clock starts at the first frame: work done before it must not eat into (or reverse) the glide.
    this.glideStart = -1;
    this.lastFrameAt = 0;
    this.setLabelsHidden(true);
    this.requestFrame();
  }

  setStyle(style: MapStyle | null): void {
    const n = this.points?.n ?? 0;
    if (style && this.style && this.drawFill.length === n && sameStyle(this.style, style)) {
      // Same colours point for point (an epoch change within a run): keep the mixed colours and draw order.
      this.style = style;
      this.rebuildHitIndex();
      this.requestFrame();
      return;
    }
    this.style = style;
    this.drawFill = new Uint32Array(n);
    this.drawRim = new Uint32Array(n);
    this.order = null;
    if (style && n) {
      const emphasis = style.emphasis;
      // Few distinct colours: mix each once (per point, the mixing was most of an epoch change at 100k).
      const faded = new Map<number, number>();
      const rims = new Map<number, number>();
      for (let i = 0; i < n; i++) {
        const c = style.fill[i];
        if (emphasis !== null && emphasis[i] === 0) {
          let f = faded.get(c);
          if (f === undefined) faded.set(c, (f = mixAbgr(c, BACKGROUND, 0.78)));
          this.drawFill[i] = f;
          this.drawRim[i] = f;
        } else {
          let r = rims.get(c);
          if (r === undefined) rims.set(c, (r = mixAbgr(c, 0xff000000, 0.35)));
          this.drawFill[i] = c;
          this.drawRim[i] = r;
        }
      }
      if (emphasis) {
        const order = new Uint32Array(n);
        let k = 0;
        for (let i = 0; i < n; i++) if (emphasis[i] === 0) order[k++] = i;
        for (let i = 0; i < n; i++) if (emphasis[i] !== 0) order[k++] = i;
        this.order = order;
      }
    }
    this.rebuildHitIndex();
    this.requestFrame();
  }

  currentPoints(): Points | null {
    return this.points;
  }

  // ---- overlays ---------------------------------------------------------------------------------------------

  setSelected(index: number): void {
    this.selected = index;
    this.requestFrame();
  }

  setTrajectory(points: TrajectoryPoint[]): void {
    this.trajectory = points;
    this.requestFrame();
  }

  setLabels(labels: MapLabel[]): void {
    this.labels = labels;
    this.drawLabels();
  }

  /** Ring a point chosen elsewhere (the same neuron hovered on a linked map); -1 clears. */
  setLinkedHover(index: number): void {
    if (index === this.linked) return;
    this.linked = index;
    this.drawOverlay();
  }

  /** Density contours of each set, in its colour, over the map (empty: none). */
  setContours(sets: ContourSet[]): void {
    const g = this.svg.select<SVGGElement>("g.contours");
    if (!sets.length || !this.domain) {
      g.selectAll("*").remove();
      this.contourGrid = null;
      return;
    }
    const [x0, y0, x1, y1] = this.domain;
    const s = CONTOUR_GRID / Math.max(x1 - x0, y1 - y0);
    const width = Math.ceil((x1 - x0) * s);
    const height = Math.ceil((y1 - y0) * s);
    this.contourGrid = { x0, y0, sx: 1 / s, sy: 1 / s };
    const path = geoPath();
    const layers = sets.map((set) => {
      const ids: number[] = [];
      for (let i = 0; i < set.x.length; i++) if (Number.isFinite(set.x[i]) && Number.isFinite(set.y[i])) ids.push(i);
      const density = contourDensity<number>()
        .x((i) => (set.x[i] - x0) * s)
        .y((i) => (set.y[i] - y0) * s)
        .size([width, height])
        .bandwidth(7)
        .thresholds(7)(ids);
      return { colour: set.colour, paths: density.slice(1).map((d) => path(d) ?? "") };
    });
    g.selectAll<SVGGElement, (typeof layers)[number]>("g.contour-set")
      .data(layers)
      .join("g")
      .attr("class", "contour-set")
      .attr("stroke", (d) => d.colour)
      .selectAll("path")
      .data((d) => d.paths)
      .join("path")
      .attr("d", (d) => d);
    this.drawOverlay();
  }

  /** Turn the rectangular brush on (drag selects a region) or off (drag pans). */
  setBrushEnabled(enabled: boolean): void {
    if (enabled === (this.brushBehaviour !== null)) return;
    this.svg.select("g.brush").remove();
    this.brushBehaviour = null;
    if (!enabled) {
      this.brushBox = null;
      return;
    }
    const b = brush<unknown>()
      .extent([
        [0, 0],
        [this.cssWidth, this.cssHeight],
      ])
      .on("end", (event: { selection: [[number, number], [number, number]] | null; sourceEvent: unknown }) => {
        if (this.movingBrush) return;
        if (!event.selection) {
          this.brushBox = null;
          this.callbacks.brush?.(null);
          return;
        }
        const [[ax, ay], [bx, by]] = event.selection;
        const [x0, y0] = this.cssToData(ax, ay);
        const [x1, y1] = this.cssToData(bx, by);
        this.brushBox = [x0, y0, x1, y1];
        this.callbacks.brush?.(this.brushBox);
      });
    this.brushBehaviour = b;
    this.svg.append("g").attr("class", "brush").call(b);
  }

  /** Show a brushed region chosen elsewhere (the linked map), without reporting it back. */
  setBrushBox(box: ZoomBox | null): void {
    this.brushBox = box;
    this.moveBrushToBox();
  }

  private moveBrushToBox(): void {
    const b = this.brushBehaviour;
    if (!b) return;
    const g = this.svg.select<SVGGElement>("g.brush");
    this.movingBrush = true;
    if (!this.brushBox) b.move(g, null);
    else {
      const [x0, y0, x1, y1] = this.brushBox;
      b.move(g, [this.dataToCss(x0, y0), this.dataToCss(x1, y1)]);
    }
    this.movingBrush = false;
  }

  /** Apply a zoom transform that another (linked) map made, without reporting it back. */
  applyTransform(transform: ZoomTransform): void {
    this.linking = true;
    this.svg.call(this.zoomBehaviour.transform, transform);
    this.linking = false;
  }

  currentTransform(): ZoomTransform {
    return this.transform;
  }

  /** Indices of the shown points inside a data box. */
  indicesIn(box: ZoomBox): number[] {
    const [x0, y0, x1, y1] = box;
    const out: number[] = [];
    const visible = this.style?.visible ?? null;
    for (let i = 0; i < this.curX.length; i++) {
      if (visible && !visible[i]) continue;
      const x = this.curX[i];
      const y = this.curY[i];
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) out.push(i);
    }
    return out;
  }

  // ---- zoom -------------------------------------------------------------------------------------------------

  /** The data box currently in view, or null at the default (unzoomed) view. */
  zoomBox(): ZoomBox | null {
    const t = this.transform;
    if (t.k === 1 && t.x === 0 && t.y === 0) return null;
    const [x0, y0] = this.cssToData(0, 0);
    const [x1, y1] = this.cssToData(this.cssWidth, this.cssHeight);
    return [x0, y0, x1, y1];
  }

  /** Zoom so that `box` (data coordinates) fills the view; null resets. Does not report a zoomEnd. */
  setZoomBox(box: ZoomBox | null): void {
    if (!box || !this.cssWidth) {
      if (!box) this.resetZoom(false);
      return;
    }
    this.wantedBox = box;
    const [x0, y0, x1, y1] = box;
    const w = (x1 - x0) * this.baseK;
    const h = (y1 - y0) * this.baseK;
    const k = Math.min(this.cssWidth / w, this.cssHeight / h);
    const cx = ((x0 + x1) / 2) * this.baseK + this.baseX;
    const cy = ((y0 + y1) / 2) * this.baseK + this.baseY;
    const t = zoomIdentity.translate(this.cssWidth / 2 - k * cx, this.cssHeight / 2 - k * cy).scale(k);
    this.suppressZoomEvent = true;
    this.svg.call(this.zoomBehaviour.transform, t);
  }

  resetZoom(animate: boolean): void {
    this.wantedBox = null;
    if (animate) this.svg.transition().duration(350).call(this.zoomBehaviour.transform, zoomIdentity);
    else {
      this.suppressZoomEvent = true;
      this.svg.call(this.zoomBehaviour.transform, zoomIdentity);
    }
  }

  // ---- geometry helpers (also used by tests through the app's debug handle) ---------------------------------

  dataToCss(x: number, y: number): [number, number] {
    const t = this.transform;
    return [t.k * (x * this.baseK + this.baseX) + t.x, t.k * (y * this.baseK + this.baseY) + t.y];
  }

  cssToData(cx: number, cy: number): [number, number] {
    const t = this.transform;
    return [((cx - t.x) / t.k - this.baseX) / this.baseK, ((cy - t.y) / t.k - this.baseY) / this.baseK];
  }

  /** The client (viewport) position of point `index` as now drawn, or null when it is not drawn. */
  clientPosition(index: number): [number, number] | null {
    if (!this.points || index < 0 || index >= this.points.n) return null;
    const [cx, cy] = this.dataToCss(this.curX[index], this.curY[index]);
    if (!Number.isFinite(cx) || !Number.isFinite(cy)) return null;
    const rect = this.element.getBoundingClientRect();
    return [rect.left + cx, rect.top + cy];
  }

  /** Screen positions (CSS px inside the map) of the current points, for label placement. */
  cssPositions(): { x: Float32Array; y: Float32Array; width: number; height: number } {
    const n = this.points?.n ?? 0;
    const x = new Float32Array(n);
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) [x[i], y[i]] = this.dataToCss(this.curX[i], this.curY[i]);
    return { x, y, width: this.cssWidth, height: this.cssHeight };
  }

  /**
   * The map drawn afresh at `scale`× its CSS size on a new canvas (for export): backdrop, points with the
   * current style and zoom. Overlays (labels, legend) are the caller's to add with the canvas's 2-D context.
   */
  renderToCanvas(scale: number): HTMLCanvasElement {
    const canvas = document.createElement("canvas");
    const raster = new Raster(canvas);
    raster.resize(this.cssWidth, this.cssHeight, scale);
    raster.clear(BACKGROUND);
    const t = this.transform;
    const project = (x: Float32Array, y: Float32Array) => {
      const px = new Float32Array(x.length);
      const py = new Float32Array(x.length);
      const a = t.k * this.baseK * scale;
      for (let i = 0; i < x.length; i++) {
        px[i] = x[i] * a + (t.k * this.baseX + t.x) * scale;
        py[i] = y[i] * a + (t.k * this.baseY + t.y) * scale;
      }
      return [px, py] as const;
    };
    const n = this.points?.n ?? 0;
    const radius = (this.stampFor(n).radius / this.raster.dpr) * scale;
    if (this.backdrop && this.backdropVisible) {
      const [px, py] = project(this.backdrop.x, this.backdrop.y);
      raster.stamp(px, py, this.backdrop.n, this.backdropFill, null, null, makeStamp(Math.max(1, radius - scale), raster.width));
    }
    if (this.points && this.style) {
      const [px, py] = project(this.curX, this.curY);
      raster.stamp(px, py, n, this.drawFill, this.drawRim, this.style.visible, makeStamp(radius, raster.width), this.order);
    }
    raster.flush();
    return canvas;
  }

  /** The labels now on the map, in CSS pixels (for export). */
  currentLabels(): MapLabel[] {
    return this.labelsHidden ? [] : this.labels;
  }

  // ---- internals --------------------------------------------------------------------------------------------

  private resize(): void {
    const rect = this.element.getBoundingClientRect();
    this.cssWidth = Math.max(1, Math.floor(rect.width));
    this.cssHeight = Math.max(1, Math.floor(rect.height));
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    this.raster.resize(this.cssWidth, this.cssHeight, dpr);
    this.svg.attr("width", this.cssWidth).attr("height", this.cssHeight);
    this.updateBaseScale();
    this.stampKey = "";
    // The same region stays in view whatever the size (the panel opening, the window resized); the pointer
    // is no longer over what it hovered.
    if (this.wantedBox) this.setZoomBox(this.wantedBox);
    if (this.hovered >= 0) this.setHovered(-1, 0, 0);
    if (this.brushBehaviour) {
      this.brushBehaviour.extent([
        [0, 0],
        [this.cssWidth, this.cssHeight],
      ]);
      this.svg.select<SVGGElement>("g.brush").call(this.brushBehaviour);
      this.moveBrushToBox();
    }
    this.requestFrame();
    this.callbacks.resized?.();
  }

  private updateBaseScale(): void {
    if (!this.domain || !this.cssWidth) return;
    const [x0, y0, x1, y1] = this.domain;
    const w = Math.max(x1 - x0, 1e-9);
    const h = Math.max(y1 - y0, 1e-9);
    // Leave the legend's column free when the map is wide enough to afford it.
    const inset = this.cssWidth > 3 * this.insetLeft ? this.insetLeft : 0;
    const k = Math.min((this.cssWidth - inset - 2 * MARGIN) / w, (this.cssHeight - 2 * MARGIN) / h);
    this.baseK = Math.max(k, 1e-9);
    this.baseX = inset + (this.cssWidth - inset - w * this.baseK) / 2 - x0 * this.baseK;
    this.baseY = (this.cssHeight - h * this.baseK) / 2 - y0 * this.baseK;
  }

  private requestFrame(): void {
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame((now) => this.frame(now));
  }

  private frame(now: number): void {
    this.frameRequested = false;
    let finishedGlide = false;
    if (this.stats.gliding && this.points) {
      if (this.glideStart < 0) this.glideStart = now;
      const t = Math.max(0, Math.min(1, (now - this.glideStart) / this.glideMs));
      const e = easeInOut(t);
      lerpInto(this.fromX, this.points.x, e, this.curX);
      lerpInto(this.fromY, this.points.y, e, this.curY);
      if (this.lastFrameAt) this.stats.glideFrameTimes.push(now - this.lastFrameAt);
      this.lastFrameAt = now;
      if (t >= 1) {
        this.curX.set(this.points.x);
        this.curY.set(this.points.y);
        this.stats.gliding = false;
        this.stats.lastGlideFrames = this.stats.glideFrameTimes.length + 1;
        finishedGlide = true;
      }
    }
    this.draw();
    this.drawOverlay();
    if (finishedGlide) {
      this.rebuildHitIndex();
      // After this frame is on screen: what follows a glide (labels) must not delay its last frame.
      window.setTimeout(() => {
        if (this.stats.gliding) return;
        this.setLabelsHidden(false);
        this.callbacks.glideEnd?.();
      }, 0);
    }
    if (this.stats.gliding) this.requestFrame();
  }

  private stampFor(n: number): StampSet {
    const dpr = this.raster.dpr;
    const cssRadius = n < 3000 ? 4.2 : n < 30000 ? 3 : 2;
    const zoomBoost = Math.min(1.8, Math.max(1, Math.sqrt(this.transform.k) * 0.9));
    const radius = cssRadius * dpr * (n < 3000 ? zoomBoost : 1);
    const key = `${radius.toFixed(2)}:${this.raster.width}`;
    if (key !== this.stampKey || !this.stampSet) {
      this.stampSet = makeStamp(radius, this.raster.width);
      this.stampKey = key;
    }
    return this.stampSet;
  }

  private backdropStamp(radius: number): StampSet {
    const s = this.backdropStampSet;
    if (s && s.radius === Math.ceil(radius) && s.width === this.raster.width) return s;
    return (this.backdropStampSet = makeStamp(radius, this.raster.width));
  }

  private project(x: Float32Array, y: Float32Array, outX: Float32Array, outY: Float32Array): void {
    const t = this.transform;
    const dpr = this.raster.dpr;
    const ax = t.k * this.baseK * dpr;
    const bx = (t.k * this.baseX + t.x) * dpr;
    const by = (t.k * this.baseY + t.y) * dpr;
    for (let i = 0; i < x.length; i++) {
      outX[i] = x[i] * ax + bx;
      outY[i] = y[i] * ax + by;
    }
  }

  private draw(): void {
    const r = this.raster;
    if (!r.width) return;
    const n = this.points?.n ?? 0;
    const stamp = this.stampFor(n);
    if (this.backdrop && this.backdropVisible && this.domain) {
      // The backdrop only changes with the zoom and the size: drawn once, then restored from a saved layer
      // (one copy per frame instead of re-stamping every base neuron while the points glide).
      const t = this.transform;
      const key = `${t.k}:${t.x}:${t.y}:${r.width}:${r.height}:${this.baseK}:${this.baseX}:${this.baseY}:${this.backdrop.n}`;
      if (key === this.backdropKey && this.backdropLayer) r.restore(this.backdropLayer);
      else {
        r.clear(BACKGROUND);
        this.project(this.backdrop.x, this.backdrop.y, this.backdropPx, this.backdropPy);
        const small = this.backdropStamp(Math.max(1, stamp.radius - 1));
        r.stamp(this.backdropPx, this.backdropPy, this.backdrop.n, this.backdropFill, null, null, small);
        this.backdropLayer = r.save(this.backdropLayer);
        this.backdropKey = key;
      }
    } else r.clear(BACKGROUND);
    let drawn = 0;
    if (this.points && this.style && this.domain) {
      this.project(this.curX, this.curY, this.px, this.py);
      drawn = r.stamp(this.px, this.py, n, this.drawFill, this.drawRim, this.style.visible, stamp, this.order);
    }
    r.flush();
    this.stats.pointsDrawn = drawn;
    this.stats.frames++;
    const callbacks = this.drawCallbacks;
    this.drawCallbacks = [];
    for (const callback of callbacks) callback();
  }

  private drawOverlay(): void {
    const ring = (cls: string, index: number) => {
      const el = this.svg.select<SVGCircleElement>(`.${cls}`);
      if (index < 0 || !this.points || index >= this.points.n) return void el.style("display", "none");
      const [cx, cy] = this.dataToCss(this.curX[index], this.curY[index]);
      if (!Number.isFinite(cx)) return void el.style("display", "none");
      el.style("display", null).attr("cx", cx).attr("cy", cy);
    };
    ring("hover-ring", this.hovered);
    ring("selected-ring", this.selected);
    ring("linked-ring", this.linked);
    if (this.contourGrid) {
      const c = this.contourGrid;
      const [ox, oy] = this.dataToCss(c.x0, c.y0);
      const k = this.transform.k * this.baseK;
      this.svg.select("g.contours").attr("transform", `translate(${ox},${oy}) scale(${k * c.sx},${k * c.sy})`);
    }

    const g = this.svg.select<SVGGElement>("g.trajectory");
    const pts = this.trajectory
      .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
      .map((p) => ({ ...p, c: this.dataToCss(p.x, p.y) }));
    // The current epoch's point follows the glide, so the line ends where the neuron is drawn.
    if (this.selected >= 0 && this.points) {
      const cur = pts.find((p) => p.current);
      if (cur) cur.c = this.dataToCss(this.curX[this.selected], this.curY[this.selected]);
    }
    g.selectAll("path.traj-line")
      .data(pts.length > 1 ? [pts] : [])
      .join("path")
      .attr("class", "traj-line")
      .attr("marker-end", "url(#traj-arrow)")
      .attr("d", (d) => "M" + d.map((p) => `${p.c[0].toFixed(1)},${p.c[1].toFixed(1)}`).join("L"));
    g.selectAll("circle.traj-dot")
      .data(pts)
      .join("circle")
      .attr("class", (d) => (d.current ? "traj-dot current" : "traj-dot"))
      .attr("r", (d) => (d.current ? 4 : 2.6))
      .attr("cx", (d) => d.c[0])
      .attr("cy", (d) => d.c[1]);
    // Epoch tags placed without overlaps (labels.ts); a tag that must stay (current, first, last) hides the
    // concept label under it rather than print over it.
    const shownLabels = this.labelsHidden ? [] : this.labels;
    const { tags, covered } = placeEpochTags(
      pts.map((p) => ({ x: p.c[0], y: p.c[1], epoch: p.epoch, current: p.current })),
      shownLabels,
      this.cssWidth,
      this.cssHeight,
    );
    const hidden = new Set(covered.map((i) => shownLabels[i]));
    this.svg.selectAll<SVGGElement, MapLabel>("g.map-label").classed("covered", (d) => hidden.has(d));
    g.selectAll("text.traj-epoch")
      .data(tags)
      .join("text")
      .attr("class", (d) => (pts[d.index].current ? "traj-epoch current" : "traj-epoch"))
      .attr("text-anchor", (d) => d.anchor)
      .attr("x", (d) => d.x)
      .attr("y", (d) => d.y)
      .text((d) => `e${pts[d.index].epoch}`);
    if (!this.labelsHidden && this.transform !== this.labelTransform) this.setLabelsHidden(true);
  }

  private labelTransform: ZoomTransform | null = null;

  private setLabelsHidden(hidden: boolean): void {
    this.labelsHidden = hidden;
    if (!hidden) this.labelTransform = this.transform;
    this.svg.select("g.labels").style("display", hidden ? "none" : "");
  }

  /** Labels are placed by the app in CSS pixels for the current transform (see labels.ts). */
  private drawLabels(): void {
    this.labelTransform = this.transform;
    const g = this.svg.select<SVGGElement>("g.labels");
    const sel = g
      .selectAll<SVGGElement, MapLabel>("g.map-label")
      .data(this.labels, (d) => `${d.classIdx}:${Math.round(d.x)}:${Math.round(d.y)}`)
      .join((enter) => {
        const e = enter.append("g").attr("class", "map-label");
        e.append("text").attr("class", "halo");
        e.append("text").attr("class", "fg");
        return e;
      });
    sel.attr("transform", (d) => `translate(${d.x.toFixed(1)},${d.y.toFixed(1)})`);
    sel.selectAll<SVGTextElement, MapLabel>("text").text((d) => d.text);
    this.setLabelsHidden(this.stats.gliding);
    this.drawOverlay(); // the trajectory's epoch tags make room for the new labels
  }

  /** Positions or visibility changed: the hit index is rebuilt lazily, at the next pointer query. */
  private rebuildHitIndex(): void {
    this.hit.clear();
    this.hitDirty = this.points !== null;
  }

  private pick(clientX: number, clientY: number): number {
    if (this.stats.gliding) return -1;
    if (this.hitDirty && this.points) {
      this.hit.build(this.curX, this.curY, this.style?.visible ?? null);
      this.hitDirty = false;
    }
    const rect = this.element.getBoundingClientRect();
    const [x, y] = this.cssToData(clientX - rect.left, clientY - rect.top);
    const radius = HOVER_RADIUS_CSS / (this.transform.k * this.baseK);
    return this.hit.find(x, y, radius);
  }

  private onPointerMove(event: PointerEvent): void {
    if (event.buttons !== 0) return; // panning
    this.setHovered(this.pick(event.clientX, event.clientY), event.clientX, event.clientY);
  }

  private setHovered(index: number, clientX: number, clientY: number): void {
    const changed = index !== this.hovered;
    this.hovered = index;
    if (changed) this.drawOverlay();
    this.callbacks.hover?.(index, clientX, clientY);
  }
}

/** Whether two styles draw every point the same (equal arrays, element by element): an epoch change within a
 * run usually keeps the colouring, and then the map keeps its mixed colours instead of redoing them. */
export function sameStyle(a: MapStyle | null, b: MapStyle | null): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return equalArrays(a.fill, b.fill) && equalArrays(a.visible, b.visible) && equalArrays(a.emphasis, b.emphasis);
}

function equalArrays(a: Uint32Array | Uint8Array | null, b: Uint32Array | Uint8Array | null): boolean {
  return a === b || (a !== null && b !== null && sameElements(a, b));
}
