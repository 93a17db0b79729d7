import { describe, expect, it } from "vitest";

import { decodeColumns, decodePoints, sameElements } from "../src/api/columns";

/** Encode like backend/api/points.py: uint32 header length, padded JSON header, then the columns. */
function encode(header: object, columns: (Int32Array | Float32Array)[]): ArrayBuffer {
  let json = JSON.stringify(header);
  while ((4 + json.length) % 4) json += " ";
  const head = new TextEncoder().encode(json);
  const bytes = columns.reduce((a, c) => a + c.byteLength, 0);
  const buf = new ArrayBuffer(4 + head.length + bytes);
  new DataView(buf).setUint32(0, head.length, true);
  new Uint8Array(buf, 4, head.length).set(head);
  let off = 4 + head.length;
  for (const c of columns) {
    new Uint8Array(buf, off, c.byteLength).set(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
    off += c.byteLength;
  }
  return buf;
}

const POINT_COLUMNS = [
  { name: "neuron_id", dtype: "int32" },
  { name: "layer_idx", dtype: "int32" },
  { name: "x", dtype: "float32" },
  { name: "y", dtype: "float32" },
];

describe("decodePoints", () => {
  it("views the columns in place, without copying", () => {
    const buf = encode({ n: 3, columns: POINT_COLUMNS, space_id: 1, snapshot_id: 7, epoch: 4 }, [
      Int32Array.of(10, 11, 12),
      Int32Array.of(0, 0, 1),
      Float32Array.of(0.5, -1, NaN),
      Float32Array.of(2, 3, 4),
    ]);
    const p = decodePoints(buf);
    expect(p.n).toBe(3);
    expect(p.epoch).toBe(4);
    expect(p.snapshotId).toBe(7);
    expect(Array.from(p.neuronId)).toEqual([10, 11, 12]);
    expect(Array.from(p.layerIdx)).toEqual([0, 0, 1]);
    expect(p.x[0]).toBe(0.5);
    expect(Number.isNaN(p.x[2])).toBe(true);
    expect(p.x.buffer).toBe(buf);
    expect(p.y.buffer).toBe(buf);
  });

  it("handles an empty snapshot", () => {
    const p = decodePoints(encode({ n: 0, columns: POINT_COLUMNS }, [new Int32Array(0), new Int32Array(0), new Float32Array(0), new Float32Array(0)]));
    expect(p.n).toBe(0);
    expect(p.x.length).toBe(0);
  });

  it("refuses truncated, misaligned and trailing bodies", () => {
    const good = encode({ n: 2, columns: POINT_COLUMNS }, [Int32Array.of(1, 2), Int32Array.of(0, 0), Float32Array.of(0, 0), Float32Array.of(0, 0)]);
    expect(() => decodeColumns(good.slice(0, good.byteLength - 4))).toThrow(/truncated/);
    const trailing = new Uint8Array(good.byteLength + 4);
    trailing.set(new Uint8Array(good));
    expect(() => decodeColumns(trailing.buffer)).toThrow(/trailing/);
    expect(() => decodeColumns(new ArrayBuffer(2))).toThrow(/header/);
    expect(() => decodeColumns(encode({ n: 1, columns: [{ name: "a", dtype: "float64" }] }, [Float32Array.of(0, 0)]))).toThrow(/dtype/);
  });
});

describe("sameElements", () => {
  it("compares values in order, whatever the array type", () => {
    expect(sameElements(new Int32Array([3, 1, 2]), new Int32Array([3, 1, 2]))).toBe(true);
    expect(sameElements(new Int32Array([3, 1, 2]), new Int32Array([3, 2, 1]))).toBe(false);
    expect(sameElements(new Uint32Array([1, 2]), new Uint32Array([1, 2, 3]))).toBe(false);
    expect(sameElements(new Uint8Array(0), new Uint8Array(0))).toBe(true);
  });
});
