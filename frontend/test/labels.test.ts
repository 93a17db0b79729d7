import { describe, expect, it } from "vitest";

import { anyOverlap, placeLabels } from "../src/map/labels";

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function clusters(centres: [number, number, number][], perCluster: number, spread: number, seed = 1) {
  const r = rng(seed);
  const px: number[] = [];
  const py: number[] = [];
  const cls: number[] = [];
  for (const [cx, cy, c] of centres)
    for (let i = 0; i < perCluster; i++) {
      px.push(cx + (r() - 0.5) * spread);
      py.push(cy + (r() - 0.5) * spread);
      cls.push(c);
    }
  return {
    px: Float32Array.from(px),
    py: Float32Array.from(py),
    classIdx: Int32Array.from(cls),
    share: new Float32Array(px.length).fill(0.8),
  };
}

const NAMES = ["stars", "dotted", "red square", "blue circle"];

describe("placeLabels", () => {
  it("labels each dense, pure cluster with its class at its centre", () => {
    const c = clusters([[150, 150, 0], [600, 150, 1], [150, 500, 2], [600, 500, 3]], 40, 40);
    const labels = placeLabels({ ...c, visible: null, names: NAMES, width: 800, height: 700 });
    expect(labels.map((l) => l.text).sort()).toEqual([...NAMES].sort());
    const stars = labels.find((l) => l.text === "stars")!;
    expect(Math.hypot(stars.x - 150, stars.y - 150)).toBeLessThan(40);
  });

  it("never overlaps labels and never leaves the view", () => {
    const r = rng(7);
    const centres: [number, number, number][] = [];
    for (let i = 0; i < 60; i++) centres.push([r() * 600, r() * 400, i % 4]);
    const c = clusters(centres, 12, 30, 3);
    const labels = placeLabels({ ...c, visible: null, names: NAMES, width: 600, height: 400 });
    expect(labels.length).toBeGreaterThan(0);
    expect(anyOverlap(labels)).toBe(false);
    for (const l of labels) {
      expect(l.box[0]).toBeGreaterThanOrEqual(0);
      expect(l.box[2]).toBeLessThanOrEqual(600);
    }
  });

  it("skips mixed regions, sparse regions and hidden points", () => {
    const mixed = clusters([[100, 100, 0], [100, 100, 1], [100, 100, 2]], 10, 20);
    expect(placeLabels({ ...mixed, visible: null, names: NAMES, width: 400, height: 400 })).toEqual([]);
    const sparse = clusters([[100, 100, 0]], 2, 10);
    expect(placeLabels({ ...sparse, visible: null, names: NAMES, width: 400, height: 400 })).toEqual([]);
    const dense = clusters([[100, 100, 0]], 30, 10);
    const hidden = new Uint8Array(30);
    expect(placeLabels({ ...dense, visible: hidden, names: NAMES, width: 400, height: 400 })).toEqual([]);
  });

  it("does not repeat a class label close to itself", () => {
    const c = clusters([[100, 100, 0], [190, 100, 0], [700, 100, 0]], 30, 30);
    const labels = placeLabels({ ...c, visible: null, names: NAMES, width: 800, height: 300 });
    expect(labels.filter((l) => l.text === "stars").length).toBe(2);
  });
});
