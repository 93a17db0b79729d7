/** Data extents and zoom boxes (pure). */

import type { Points } from "../api/columns";
import type { ZoomBox } from "../state/url";

/** The extent of the finite points of `sets`, padded by 4 % so that points at the edge are not clipped. */
export function paddedExtent(sets: Points[]): ZoomBox {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const p of sets)
    for (let i = 0; i < p.n; i++) {
      const x = p.x[i];
      const y = p.y[i];
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  if (!Number.isFinite(x0)) return [-1, -1, 1, 1];
  const px = Math.max((x1 - x0) * 0.04, 1e-3);
  const py = Math.max((y1 - y0) * 0.04, 1e-3);
  return [x0 - px, y0 - py, x1 + px, y1 + py];
}

/** Whether two zoom boxes are the same view (to 0.1 % of their span); null is the unzoomed view. */
export function sameZoom(a: ZoomBox | null, b: ZoomBox | null): boolean {
  if (a === null || b === null) return a === b;
  const span = Math.max(Math.abs(a[2] - a[0]), Math.abs(a[3] - a[1]), 1e-9);
  return a.every((v, i) => Math.abs(v - b[i]) <= span * 1e-3);
}

/** Indices of the points inside a data box (NaN positions are outside). */
export function indicesIn(points: Points, box: ZoomBox): number[] {
  const [x0, y0, x1, y1] = box;
  const out: number[] = [];
  for (let i = 0; i < points.n; i++) {
    const x = points.x[i];
    const y = points.y[i];
    if (x >= x0 && x <= x1 && y >= y0 && y <= y1) out.push(i);
  }
  return out;
}
