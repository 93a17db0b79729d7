/**
 * Hit-testing through a spatial index: a uniform grid over data coordinates, built with two counting passes
 * over typed arrays (~10 ms for 100k points, where a d3-quadtree took 230–640 ms on this machine's
 * software-rendered Chromium). A query scans only the cells the search circle touches — never every point.
 */

export class HitIndex {
  private x: Float32Array = new Float32Array(0);
  private y: Float32Array = new Float32Array(0);
  private x0 = 0;
  private y0 = 0;
  private cell = 1;
  private cols = 0;
  private rows = 0;
  /** Points of cell c are items[start[c] .. start[c + 1]). */
  private start: Int32Array = new Int32Array(1);
  private items: Int32Array = new Int32Array(0);
  private built = false;

  /** Index the points `i` with finite positions and `visible[i] !== 0` (all when `visible` is null). */
  build(x: Float32Array, y: Float32Array, visible: Uint8Array | null): void {
    const n = x.length;
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    let count = 0;
    const ok = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const xi = x[i];
      const yi = y[i];
      if ((visible !== null && visible[i] === 0) || !(xi === xi && yi === yi) || !Number.isFinite(xi + yi)) continue;
      ok[i] = 1;
      count++;
      if (xi < x0) x0 = xi;
      if (xi > x1) x1 = xi;
      if (yi < y0) y0 = yi;
      if (yi > y1) y1 = yi;
    }
    this.x = x;
    this.y = y;
    this.built = true;
    if (!count) {
      this.cols = this.rows = 0;
      this.start = new Int32Array(1);
      this.items = new Int32Array(0);
      return;
    }
    // About two points per cell on average; at most 1024 cells a side.
    const w = Math.max(x1 - x0, 1e-9);
    const h = Math.max(y1 - y0, 1e-9);
    const cell = Math.max(Math.sqrt((w * h * 2) / count), w / 1024, h / 1024);
    this.x0 = x0;
    this.y0 = y0;
    this.cell = cell;
    this.cols = Math.floor(w / cell) + 1;
    this.rows = Math.floor(h / cell) + 1;
    const cellOf = new Int32Array(n);
    const start = new Int32Array(this.cols * this.rows + 1);
    for (let i = 0; i < n; i++) {
      if (!ok[i]) continue;
      const c = Math.floor((y[i] - y0) / cell) * this.cols + Math.floor((x[i] - x0) / cell);
      cellOf[i] = c;
      start[c + 1]++;
    }
    for (let c = 0; c < this.cols * this.rows; c++) start[c + 1] += start[c];
    const fill = start.slice(0, -1);
    const items = new Int32Array(count);
    for (let i = 0; i < n; i++) if (ok[i]) items[fill[cellOf[i]]++] = i;
    this.start = start;
    this.items = items;
  }

  clear(): void {
    this.built = false;
    this.cols = this.rows = 0;
  }

  get ready(): boolean {
    return this.built;
  }

  /** The indexed point nearest to (x, y) within `radius` (data units), or -1. Ties: the lower index. */
  find(x: number, y: number, radius: number): number {
    if (!this.cols) return -1;
    const c0 = Math.max(0, Math.floor((x - radius - this.x0) / this.cell));
    const c1 = Math.min(this.cols - 1, Math.floor((x + radius - this.x0) / this.cell));
    const r0 = Math.max(0, Math.floor((y - radius - this.y0) / this.cell));
    const r1 = Math.min(this.rows - 1, Math.floor((y + radius - this.y0) / this.cell));
    let best = -1;
    let bestD = radius * radius;
    for (let r = r0; r <= r1; r++)
      for (let c = c0; c <= c1; c++) {
        const cell = r * this.cols + c;
        for (let k = this.start[cell]; k < this.start[cell + 1]; k++) {
          const i = this.items[k];
          const dx = this.x[i] - x;
          const dy = this.y[i] - y;
          const d = dx * dx + dy * dy;
          if (d < bestD || (d === bestD && i < best)) {
            best = i;
            bestD = d;
          }
        }
      }
    return best;
  }
}
