/** Hit-testing through a spatial index (d3-quadtree over data coordinates): never a linear scan per move. */

import { quadtree, type Quadtree } from "d3";

export class HitIndex {
  private tree: Quadtree<number> | null = null;

  /** Index the points `i` with finite positions and `visible[i] !== 0` (all when `visible` is null). */
  build(x: Float32Array, y: Float32Array, visible: Uint8Array | null): void {
    const ids: number[] = [];
    for (let i = 0; i < x.length; i++) {
      if (visible !== null && visible[i] === 0) continue;
      if (Number.isFinite(x[i]) && Number.isFinite(y[i])) ids.push(i);
    }
    this.tree = quadtree<number>()
      .x((i) => x[i])
      .y((i) => y[i])
      .addAll(ids);
  }

  clear(): void {
    this.tree = null;
  }

  /** The indexed point nearest to (x, y) within `radius` (data units), or -1. */
  find(x: number, y: number, radius: number): number {
    if (!this.tree) return -1;
    const found = this.tree.find(x, y, radius);
    return found === undefined ? -1 : found;
  }
}
