/**
 * Epoch transitions: the same neurons at two epochs, aligned by neuron id, and positions in between.
 * Pure functions over typed arrays (unit-tested).
 */

import { type Points, sameElements } from "../api/columns";

/**
 * Where each of `target`'s neurons was in `source`: arrays in `target`'s order. A neuron that `source` lacks
 * (or places at NaN) starts where it ends, so it appears in place rather than flying in from the origin.
 */
export function alignFrom(target: Points, source: Points): { x: Float32Array; y: Float32Array } {
  const x = new Float32Array(target.n);
  const y = new Float32Array(target.n);
  const sameOrder = source.n === target.n && sameElements(source.neuronId, target.neuronId);
  if (sameOrder) {
    for (let i = 0; i < target.n; i++) {
      const sx = source.x[i];
      const sy = source.y[i];
      const ok = sx === sx && sy === sy;
      x[i] = ok ? sx : target.x[i];
      y[i] = ok ? sy : target.y[i];
    }
    return { x, y };
  }
  const index = new Map<number, number>();
  for (let i = 0; i < source.n; i++) index.set(source.neuronId[i], i);
  for (let i = 0; i < target.n; i++) {
    const j = index.get(target.neuronId[i]);
    const sx = j === undefined ? NaN : source.x[j];
    const sy = j === undefined ? NaN : source.y[j];
    const ok = sx === sx && sy === sy;
    x[i] = ok ? sx : target.x[i];
    y[i] = ok ? sy : target.y[i];
  }
  return { x, y };
}

/** out = from + (to − from)·t, element-wise (NaN where `to` is NaN). */
export function lerpInto(from: Float32Array, to: Float32Array, t: number, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) out[i] = from[i] + (to[i] - from[i]) * t;
}

/** Each neuron's 2-D distance moved from `source` to `target` (target order; NaN where either is unknown). */
export function displacement(target: Points, source: Points): Float32Array {
  const index = new Map<number, number>();
  for (let i = 0; i < source.n; i++) index.set(source.neuronId[i], i);
  const out = new Float32Array(target.n);
  for (let i = 0; i < target.n; i++) {
    const j = index.get(target.neuronId[i]);
    out[i] = j === undefined ? NaN : Math.hypot(target.x[i] - source.x[j], target.y[i] - source.y[j]);
  }
  return out;
}

/** Smooth start and stop (cubic in-out), t in [0, 1]. */
export function easeInOut(t: number): number {
  return t < 0.5 ? 4 * t * t * t : 1 - Math.pow(-2 * t + 2, 3) / 2;
}
