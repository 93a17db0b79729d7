import { describe, expect, it } from "vitest";

import { HitIndex } from "../src/map/hit";

/** The literal definition: the nearest point within the radius, by a scan over every point. */
function bruteForce(x: Float32Array, y: Float32Array, visible: Uint8Array | null, qx: number, qy: number, r: number): number {
  let best = -1;
  let bestD = r * r;
  for (let i = 0; i < x.length; i++) {
    if (visible && !visible[i]) continue;
    if (!Number.isFinite(x[i]) || !Number.isFinite(y[i])) continue;
    const d = (x[i] - qx) ** 2 + (y[i] - qy) ** 2;
    if (d < bestD || (d === bestD && i < best)) {
      best = i;
      bestD = d;
    }
  }
  return best;
}

function rng(seed: number) {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 4294967296;
  };
}

describe("HitIndex", () => {
  it("agrees with a scan over every point, clusters, hidden points and NaN included", () => {
    const r = rng(3);
    const n = 5000;
    const x = new Float32Array(n);
    const y = new Float32Array(n);
    const visible = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const cluster = i % 5;
      x[i] = cluster * 10 + (r() - 0.5) * (cluster + 1);
      y[i] = (cluster % 2) * 7 + (r() - 0.5) * 3;
      visible[i] = r() < 0.8 ? 1 : 0;
    }
    x[7] = NaN;
    const index = new HitIndex();
    index.build(x, y, visible);
    for (let q = 0; q < 2000; q++) {
      const qx = r() * 55 - 5;
      const qy = r() * 14 - 4;
      const radius = r() * 2;
      expect(index.find(qx, qy, radius)).toBe(bruteForce(x, y, visible, qx, qy, radius));
    }
  });

  it("is empty before a build, after a clear and with nothing visible", () => {
    const index = new HitIndex();
    expect(index.find(0, 0, 1)).toBe(-1);
    index.build(Float32Array.of(0, 1), Float32Array.of(0, 1), Uint8Array.of(0, 0));
    expect(index.find(0, 0, 10)).toBe(-1);
    index.build(Float32Array.of(0, 1), Float32Array.of(0, 1), null);
    expect(index.find(0.9, 0.9, 1)).toBe(1);
    index.clear();
    expect(index.find(0.9, 0.9, 1)).toBe(-1);
  });

  it("handles a single point and identical points", () => {
    const index = new HitIndex();
    index.build(Float32Array.of(2, 2, 2), Float32Array.of(3, 3, 3), null);
    expect(index.find(2, 3, 0.1)).toBe(0);
  });
});
