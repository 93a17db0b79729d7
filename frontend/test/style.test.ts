import { describe, expect, it } from "vitest";

import type { Concepts, Points } from "../src/api/columns";
import { classColour, layerColour, mixAbgr, OKABE_ITO, packAbgr, toAbgr } from "../src/colors";
import { alignConcepts, computeStyle, quantile } from "../src/map/style";

const points: Points = {
  n: 4,
  snapshotId: 1,
  epoch: 0,
  neuronId: Int32Array.of(10, 11, 12, 13),
  layerIdx: Int32Array.of(0, 0, 1, 2),
  x: new Float32Array(4),
  y: new Float32Array(4),
};
const layers = [0, 1, 2].map((idx) => ({ id: idx + 1, idx, name: `conv${idx + 1}`, channels: 2 }));

describe("colours", () => {
  it("packs CSS colours as little-endian ImageData words", () => {
    expect(toAbgr("#ff0000")).toBe(packAbgr(255, 0, 0));
    expect(toAbgr("rgb(1, 2, 3)") & 0xff).toBe(1);
    expect((toAbgr("rgb(1, 2, 3)") >>> 16) & 0xff).toBe(3);
  });

  it("uses Okabe-Ito for up to eight layers, distinct colours beyond", () => {
    expect(layerColour(0, 6)).toBe(OKABE_ITO[0]);
    const many = Array.from({ length: 13 }, (_, i) => layerColour(i, 13));
    expect(new Set(many).size).toBe(13);
    expect(classColour(-1)).not.toBe(classColour(0));
  });

  it("mixes towards a colour", () => {
    expect(mixAbgr(packAbgr(0, 0, 0), packAbgr(200, 100, 50), 0.5)).toBe(packAbgr(100, 50, 25));
  });
});

describe("computeStyle", () => {
  it("colours by layer, with a legend entry per layer and hidden layers invisible", () => {
    const r = computeStyle({ points, mode: "layer", layers, hidden: [1], concepts: null, movement: null, importance: null, cls: null });
    expect(r.style.fill[0]).toBe(toAbgr(layerColour(0, 3)));
    expect(r.style.fill[3]).toBe(toAbgr(layerColour(2, 3)));
    expect(Array.from(r.style.visible!)).toEqual([1, 1, 0, 1]);
    expect(r.legend.kind === "categorical" && r.legend.entries.map((e) => [e.label, e.count, e.off])).toEqual([
      ["conv1", 2, false],
      ["conv2", 1, true],
      ["conv3", 1, false],
    ]);
  });

  it("colours by dominant class and highlights a class", () => {
    const concepts: Concepts = {
      n: 4,
      neuronId: Int32Array.of(13, 12, 11, 10),
      classIdx: Int32Array.of(2, 1, 1, -1),
      share: Float32Array.of(0.9, 0.5, 0.6, 0),
      classNames: ["a", "b", "c"],
    };
    const aligned = alignConcepts(points, concepts);
    expect(Array.from(aligned.classIdx)).toEqual([-1, 1, 1, 2]);
    const r = computeStyle({ points, mode: "class", layers, hidden: [], concepts, movement: null, importance: null, cls: 1 });
    expect(r.style.fill[1]).toBe(toAbgr(classColour(1)));
    expect(Array.from(r.style.emphasis!)).toEqual([0, 1, 1, 0]);
    expect(r.highlighted).toBe(2);
  });

  it("colours movement on a ramp scaled to its 95th percentile, unknown in grey", () => {
    const movement = Float32Array.of(0, 1, 2, NaN);
    const r = computeStyle({ points, mode: "movement", layers, hidden: [], concepts: null, movement, importance: null, cls: null });
    expect(r.legend.kind).toBe("ramp");
    expect(r.style.fill[0]).not.toBe(r.style.fill[2]);
    expect(r.style.fill[3]).toBe(toAbgr("#b9b9b4"));
    expect(quantile(movement, 0.95)).toBe(1);
  });

  it("colours importance by neuron id, unscored in grey", () => {
    const importance = new Map([
      [10, 1],
      [11, 0],
    ]);
    const r = computeStyle({ points, mode: "importance", layers, hidden: [], concepts: null, movement: null, importance, cls: null });
    expect(r.style.fill[0]).not.toBe(r.style.fill[1]);
    expect(r.style.fill[2]).toBe(toAbgr("#b9b9b4"));
  });
});
