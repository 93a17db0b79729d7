import { describe, expect, it } from "vitest";

import { countByLayer, nearestEpoch, syncedEpoch } from "../src/compare/sync";

const A = [0, 1, 2, 3, 4].map((epoch) => ({ epoch, train_top1: [0.1, 0.5, 0.7, 0.9, 0.95][epoch] }));
const B = [0, 1, 2, 3, 4].map((epoch) => ({ epoch, train_top1: [0.1, 0.2, 0.3, 0.5, 0.7][epoch] }));

describe("epoch sync", () => {
  it("by epoch: the same, or the nearest computed", () => {
    expect(syncedEpoch("epoch", 2, A, B, [0, 1, 2, 3, 4], null)).toBe(2);
    expect(syncedEpoch("epoch", 2, A, B, [0, 1, 3, 4], null)).toBe(1);
    expect(nearestEpoch(5, [])).toBeNull();
  });

  it("by milestone: the epoch of B closest in train accuracy", () => {
    expect(syncedEpoch("milestone", 1, A, B, [0, 1, 2, 3, 4], null)).toBe(3);
    expect(syncedEpoch("milestone", 2, A, B, [0, 1, 2, 3, 4], null)).toBe(4);
    expect(syncedEpoch("milestone", 2, A, B, [0, 1, 2, 3], null)).toBe(3);
    expect(syncedEpoch("milestone", 0, A, B, [0, 1, 2, 3, 4], null)).toBe(0);
  });

  it("by milestone falls back to epoch when accuracy is unknown", () => {
    const noAcc = A.map((h) => ({ ...h, train_top1: null }));
    expect(syncedEpoch("milestone", 2, noAcc, B, [0, 2, 4], null)).toBe(2);
  });

  it("free keeps B's own epoch", () => {
    expect(syncedEpoch("free", 0, A, B, [1, 3], 3)).toBe(3);
    expect(syncedEpoch("free", 0, A, B, [1, 3], 2)).toBe(3);
    expect(syncedEpoch("free", 0, A, B, [], 2)).toBeNull();
  });
});

describe("region counts", () => {
  it("counts each run's neurons per layer", () => {
    const names = new Map([
      [0, "conv1"],
      [1, "conv2"],
    ]);
    expect(countByLayer(names, Int32Array.of(0, 0, 1), [0, 1, 2], Int32Array.of(1, 1, 0), [0])).toEqual([
      { layer: "conv1", a: 2, b: 0 },
      { layer: "conv2", a: 1, b: 1 },
    ]);
  });
});
