import { describe, expect, it } from "vitest";

import { type MapLabel, anyOverlap, placeEpochTags, placeLabels, type TagPoint } from "../src/map/labels";

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

function label(x0: number, y0: number, x1: number, y1: number): MapLabel {
  return { x: (x0 + x1) / 2, y: (y0 + y1) / 2, text: "stars", classIdx: 0, weight: 1, purity: 1, box: [x0, y0, x1, y1] };
}

const boxesOverlap = (a: number[], b: number[]) => a[0] < b[2] && a[2] > b[0] && a[1] < b[3] && a[3] > b[1];

describe("placeEpochTags", () => {
  it("never overlaps tags in a crowded trajectory and always keeps the current epoch and both ends", () => {
    const r = rng(7);
    // eleven epochs within 24 px, the late ones nearly on top of each other (the default world's case)
    const points: TagPoint[] = Array.from({ length: 11 }, (_, e) => ({
      x: 300 + (e < 4 ? e * 8 : 24 + r() * 4),
      y: 200 + (e < 4 ? e * 3 : 10 + r() * 4),
      epoch: e,
      current: e === 6,
    }));
    const { tags, covered } = placeEpochTags(points, [], 800, 600);
    const placed = tags.map((t) => t.index);
    expect(placed).toEqual([...placed].sort((a, b) => a - b));
    expect(placed).toEqual(expect.arrayContaining([0, 6, 10]));
    expect(placed.length).toBeLessThan(11); // some had no room: left out rather than printed over
    for (let i = 0; i < tags.length; i++)
      for (let j = i + 1; j < tags.length; j++) expect(boxesOverlap(tags[i].box, tags[j].box)).toBe(false);
    for (const t of tags)
      points.forEach((p, j) => {
        if (j !== t.index) expect(boxesOverlap(t.box, [p.x - 3, p.y - 3, p.x + 3, p.y + 3])).toBe(false);
      });
    expect(covered).toEqual([]);
  });

  it("moves a tag to a free corner instead of onto a concept label", () => {
    const points: TagPoint[] = [
      { x: 100, y: 100, epoch: 0, current: false },
      { x: 300, y: 300, epoch: 5, current: true },
    ];
    const above = label(290, 270, 360, 298); // covers the corners above the current point
    const { tags, covered } = placeEpochTags(points, [above], 800, 600);
    const current = tags.find((t) => t.index === 1)!;
    expect(current.y).toBeGreaterThan(300); // below it
    expect(boxesOverlap(current.box, above.box)).toBe(false);
    expect(covered).toEqual([]);
  });

  it("puts a tag beside its point when labels take all four corners", () => {
    const points: TagPoint[] = [
      { x: 100, y: 100, epoch: 0, current: false },
      { x: 300, y: 300, epoch: 5, current: true },
    ];
    const labels = [label(240, 270, 360, 290), label(240, 310, 360, 330)]; // over the corners, not the sides
    const { tags, covered } = placeEpochTags(points, labels, 800, 600);
    const current = tags.find((t) => t.index === 1)!;
    expect(current.box[0]).toBeGreaterThan(300); // right of the point, at its height
    expect(current.box[1]).toBeLessThan(300);
    expect(current.box[3]).toBeGreaterThan(300);
    expect(labels.some((l) => boxesOverlap(l.box, current.box))).toBe(false);
    expect(covered).toEqual([]);
  });

  it("keeps the current epoch's tag outside the selection ring drawn around its point", () => {
    const ringOuter = 9 + 2.5 / 2; // mapview.ts: the selected ring's radius and half its stroke
    const distance = (box: number[], x: number, y: number) =>
      Math.hypot(Math.max(box[0] - x, 0, x - box[2]), Math.max(box[1] - y, 0, y - box[3]));
    const points: TagPoint[] = [
      { x: 100, y: 100, epoch: 0, current: false },
      { x: 300, y: 300, epoch: 12, current: true },
    ];
    const corners = [label(240, 270, 360, 286), label(240, 314, 360, 330)]; // pushes the tag to a side
    for (const labels of [[], corners]) {
      const { tags, covered } = placeEpochTags(points, labels, 800, 600);
      const current = tags.find((t) => t.index === 1)!;
      expect(distance(current.box, 300, 300)).toBeGreaterThan(ringOuter);
      expect(covered).toEqual([]);
    }
  });

  it("keeps the current epoch's tag over a label when nothing else is free, and names the label to hide", () => {
    const points: TagPoint[] = [
      { x: 100, y: 100, epoch: 0, current: false },
      { x: 300, y: 300, epoch: 5, current: true },
    ];
    const labels = [label(250, 270, 350, 330), label(600, 500, 700, 520)];
    const { tags, covered } = placeEpochTags(points, labels, 800, 600);
    expect(tags.map((t) => t.index)).toEqual([0, 1]);
    expect(covered).toEqual([0]);
  });

  it("gives each tag a box that holds its glyphs as the browser draws them, bold included", () => {
    // 11 px DejaVu Sans, measured with getBBox: bold digits 7.7 px wide; 10.1 px above the baseline, 3.0 below
    const points: TagPoint[] = [
      { x: 300, y: 300, epoch: 10, current: true },
      { x: 100, y: 100, epoch: 0, current: false },
    ];
    for (const t of placeEpochTags(points, [], 800, 600).tags) {
      const glyphs = `e${points[t.index].epoch}`.length * 7.7;
      expect(t.box[2] - t.box[0]).toBeGreaterThanOrEqual(glyphs);
      expect(t.box[1]).toBeLessThanOrEqual(t.y - 10.1);
      expect(t.box[3]).toBeGreaterThanOrEqual(t.y + 3.0);
    }
  });

  it("stays inside the map and shows nothing for a single point", () => {
    const points: TagPoint[] = [
      { x: 795, y: 5, epoch: 10, current: true },
      { x: 400, y: 300, epoch: 0, current: false },
    ];
    const { tags } = placeEpochTags(points, [], 800, 600);
    const edge = tags.find((t) => t.index === 0)!;
    expect(edge.anchor).toBe("end");
    expect(edge.box[0]).toBeGreaterThanOrEqual(0);
    expect(edge.box[1]).toBeGreaterThanOrEqual(0);
    expect(edge.box[2]).toBeLessThanOrEqual(800);
    expect(placeEpochTags([points[0]], [], 800, 600).tags).toEqual([]);
  });
});
