/**
 * How the comparison's second run follows the first: by epoch, by accuracy milestone, or not at all.
 * Pure (unit-tested).
 */

import type { SyncMode } from "../state/url";

export interface EpochAccuracy {
  epoch: number;
  train_top1: number | null;
}

/** The computed epoch of `computed` nearest to `epoch` (ties: the earlier), or null when there is none. */
export function nearestEpoch(epoch: number, computed: number[]): number | null {
  let best: number | null = null;
  for (const e of computed) if (best === null || Math.abs(e - epoch) < Math.abs(best - epoch) || (Math.abs(e - epoch) === Math.abs(best - epoch) && e < best)) best = e;
  return best;
}

/**
 * The epoch of run B to show beside run A's `epochA`.
 *
 * - `epoch`: the same epoch (the nearest computed one when B lacks it);
 * - `milestone`: the computed epoch of B whose train top-1 is closest to A's at `epochA` (ties: the earlier;
 *   falls back to `epoch` when A's accuracy there is unknown) — the paper compares runs at the same
 *   accuracy rather than the same time;
 * - `free`: `current` (B's own choice) when B has it computed, else its last computed epoch.
 */
export function syncedEpoch(
  mode: SyncMode,
  epochA: number,
  historyA: EpochAccuracy[],
  historyB: EpochAccuracy[],
  computedB: number[],
  current: number | null,
): number | null {
  if (!computedB.length) return null;
  if (mode === "free") return current !== null && computedB.includes(current) ? current : computedB[computedB.length - 1];
  if (mode === "milestone") {
    const target = historyA.find((h) => h.epoch === epochA)?.train_top1;
    if (target !== null && target !== undefined) {
      let best: EpochAccuracy | null = null;
      for (const h of historyB) {
        if (!computedB.includes(h.epoch) || h.train_top1 === null) continue;
        const d = Math.abs(h.train_top1 - target);
        if (best === null || d < Math.abs((best.train_top1 as number) - target) - 1e-12) best = h;
      }
      if (best) return best.epoch;
    }
  }
  return nearestEpoch(epochA, computedB);
}

/** Neurons per layer inside a region, for each run: `{layer: [countA, countB]}` in layer order. */
export function countByLayer(
  layerNames: Map<number, string>,
  layersA: Int32Array,
  indicesA: number[],
  layersB: Int32Array,
  indicesB: number[],
): { layer: string; a: number; b: number }[] {
  const counts = new Map<number, [number, number]>();
  for (const i of indicesA) {
    const c = counts.get(layersA[i]) ?? [0, 0];
    c[0]++;
    counts.set(layersA[i], c);
  }
  for (const i of indicesB) {
    const c = counts.get(layersB[i]) ?? [0, 0];
    c[1]++;
    counts.set(layersB[i], c);
  }
  return [...counts.entries()]
    .sort((x, y) => x[0] - y[0])
    .map(([idx, [a, b]]) => ({ layer: layerNames.get(idx) ?? `layer ${idx}`, a, b }));
}
