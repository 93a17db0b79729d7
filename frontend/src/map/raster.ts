/**
 * A CPU point raster: points are stamped as small discs straight into the 32-bit pixels of an `ImageData`,
 * which is put on a 2-D canvas once per frame.
 *
 * Why not WebGL: on the software-rendered WebGL of a headless browser (and of many virtual machines) a
 * minimal shader drawing 100k points took ~60 ms a frame, regl-scatterplot ~105 ms, while this raster takes
 * well under one 60 Hz frame (see bench/ui.py). Its cost is O(points + pixels) with no driver in between, so
 * it stays fast on a laptop too; one code path everywhere means what the tests see is what users get.
 */

export interface StampSet {
  /** Linear pixel offsets of the disc's inner pixels and of its rim, for the current canvas width. */
  inner: Int32Array;
  rim: Int32Array;
  /** Offsets as (dx, dy) pairs, for points near the canvas edge that need per-pixel bounds checks. */
  innerXY: Int16Array;
  rimXY: Int16Array;
  radius: number;
  /** Canvas width the linear offsets were computed for. */
  width: number;
}

/** The pixel offsets of a disc of `radius` device pixels (rim: its outermost ring, one pixel wide). */
export function makeStamp(radius: number, width: number): StampSet {
  const inner: number[] = [];
  const rim: number[] = [];
  const innerXY: number[] = [];
  const rimXY: number[] = [];
  const r = Math.max(0.5, radius);
  const R = Math.ceil(r);
  for (let dy = -R; dy <= R; dy++) {
    for (let dx = -R; dx <= R; dx++) {
      const d = Math.hypot(dx, dy);
      if (d > r) continue;
      const isRim = r >= 2 && d > r - 1;
      (isRim ? rim : inner).push(dy * width + dx);
      (isRim ? rimXY : innerXY).push(dx, dy);
    }
  }
  return {
    inner: Int32Array.from(inner),
    rim: Int32Array.from(rim),
    innerXY: Int16Array.from(innerXY),
    rimXY: Int16Array.from(rimXY),
    radius: R,
    width,
  };
}

export class Raster {
  readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  private image: ImageData | null = null;
  private pixels = new Uint32Array(0);
  width = 0;
  height = 0;
  dpr = 1;

  constructor(canvas: HTMLCanvasElement) {
    this.canvas = canvas;
    const ctx = canvas.getContext("2d", { alpha: false });
    if (!ctx) throw new Error("this browser cannot draw on a canvas");
    this.ctx = ctx;
  }

  /** Size the canvas to `cssWidth × cssHeight` CSS pixels at device-pixel ratio `dpr`. */
  resize(cssWidth: number, cssHeight: number, dpr: number): void {
    const w = Math.max(1, Math.round(cssWidth * dpr));
    const h = Math.max(1, Math.round(cssHeight * dpr));
    this.dpr = dpr;
    if (w === this.width && h === this.height && this.image) return;
    this.width = w;
    this.height = h;
    this.canvas.width = w;
    this.canvas.height = h;
    this.canvas.style.width = `${cssWidth}px`;
    this.canvas.style.height = `${cssHeight}px`;
    this.image = this.ctx.createImageData(w, h);
    this.pixels = new Uint32Array(this.image.data.buffer);
  }

  clear(background: number): void {
    this.pixels.fill(background);
  }

  /**
   * Stamp every point `i` with `visible[i] !== 0` (all when `visible` is null) at device-pixel position
   * (px[i], py[i]) in `fill[i]`, its rim in `rim[i]` (or `fill[i]` when `rim` is null), in index order (later
   * points on top). Points whose position is NaN are skipped. Returns how many points were drawn.
   */
  stamp(
    px: Float32Array,
    py: Float32Array,
    count: number,
    fill: Uint32Array,
    rim: Uint32Array | null,
    visible: Uint8Array | null,
    stamp: StampSet,
    order: Uint32Array | null = null,
  ): number {
    const { width: w, height: h, pixels } = this;
    const R = stamp.radius;
    const { inner, innerXY } = stamp;
    const rimOffsets = stamp.rim;
    const rimXY = stamp.rimXY;
    let drawn = 0;
    for (let j = 0; j < count; j++) {
      const i = order ? order[j] : j;
      if (visible !== null && visible[i] === 0) continue;
      const x = px[i];
      const y = py[i];
      if (!(x === x && y === y)) continue; // NaN: undefined position
      const cx = x | 0;
      const cy = y | 0;
      if (cx < -R || cy < -R || cx >= w + R || cy >= h + R) continue;
      drawn++;
      const f = fill[i];
      const rc = rim === null ? f : rim[i];
      if (cx >= R && cy >= R && cx < w - R && cy < h - R) {
        const base = cy * w + cx;
        for (let k = 0; k < rimOffsets.length; k++) pixels[base + rimOffsets[k]] = rc;
        for (let k = 0; k < inner.length; k++) pixels[base + inner[k]] = f;
      } else {
        for (let k = 0; k < rimXY.length; k += 2) {
          const xx = cx + rimXY[k];
          const yy = cy + rimXY[k + 1];
          if (xx >= 0 && yy >= 0 && xx < w && yy < h) pixels[yy * w + xx] = rc;
        }
        for (let k = 0; k < innerXY.length; k += 2) {
          const xx = cx + innerXY[k];
          const yy = cy + innerXY[k + 1];
          if (xx >= 0 && yy >= 0 && xx < w && yy < h) pixels[yy * w + xx] = f;
        }
      }
    }
    return drawn;
  }

  /** A copy of the pixels drawn so far (a layer to restore with {@link restore}). */
  save(into: Uint32Array | null): Uint32Array {
    const copy = into && into.length === this.pixels.length ? into : new Uint32Array(this.pixels.length);
    copy.set(this.pixels);
    return copy;
  }

  /** Put back pixels saved by {@link save} (same canvas size). */
  restore(layer: Uint32Array): void {
    this.pixels.set(layer);
  }

  /** Put the pixels on the canvas. */
  flush(): void {
    if (this.image) this.ctx.putImageData(this.image, 0, 0);
  }

  /** The canvas as a PNG data URL (export). */
  toDataUrl(): string {
    return this.canvas.toDataURL("image/png");
  }
}
