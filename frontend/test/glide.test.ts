import { describe, expect, it } from "vitest";

import type { Points } from "../src/api/columns";
import { alignFrom, displacement, easeInOut, lerpInto } from "../src/map/glide";

function points(ids: number[], xs: number[], ys: number[]): Points {
  return {
    n: ids.length,
    snapshotId: 1,
    epoch: 0,
    neuronId: Int32Array.from(ids),
    layerIdx: new Int32Array(ids.length),
    x: Float32Array.from(xs),
    y: Float32Array.from(ys),
  };
}

describe("glide", () => {
  it("aligns the previous positions by neuron id, whatever the order", () => {
    const target = points([1, 2, 3], [10, 20, 30], [1, 2, 3]);
    const source = points([3, 1, 2], [3, 1, 2], [-3, -1, -2]);
    const from = alignFrom(target, source);
    expect(Array.from(from.x)).toEqual([1, 2, 3]);
    expect(Array.from(from.y)).toEqual([-1, -2, -3]);
  });

  it("a neuron new to the target, or undefined before, starts where it ends", () => {
    const target = points([1, 2, 3], [10, 20, 30], [1, 2, 3]);
    const source = points([1, 2], [0, NaN], [0, 0]);
    const from = alignFrom(target, source);
    expect(Array.from(from.x)).toEqual([0, 20, 30]);
    expect(Array.from(from.y)).toEqual([0, 2, 3]);
  });

  it("interpolates linearly between the two epochs", () => {
    const out = new Float32Array(2);
    lerpInto(Float32Array.of(0, 10), Float32Array.of(10, 0), 0.25, out);
    expect(Array.from(out)).toEqual([2.5, 7.5]);
    lerpInto(Float32Array.of(0, 10), Float32Array.of(10, 0), 1, out);
    expect(Array.from(out)).toEqual([10, 0]);
  });

  it("eases from 0 to 1 monotonically", () => {
    let last = -1;
    for (let t = 0; t <= 1.0001; t += 0.05) {
      const e = easeInOut(Math.min(1, t));
      expect(e).toBeGreaterThanOrEqual(last);
      last = e;
    }
    expect(easeInOut(0)).toBe(0);
    expect(easeInOut(1)).toBe(1);
    expect(easeInOut(0.5)).toBeCloseTo(0.5);
  });

  it("measures each neuron's displacement, NaN where unknown", () => {
    const d = displacement(points([1, 2, 3], [3, 0, 5], [4, 1, 5]), points([2, 1], [0, 0], [0, 0]));
    expect(d[0]).toBeCloseTo(5);
    expect(d[1]).toBeCloseTo(1);
    expect(Number.isNaN(d[2])).toBe(true);
  });
});
