/**
 * Decoding of the API's binary columnar answers (points, concepts) into typed arrays, without copying.
 *
 * Layout (little-endian): uint32 header length H, H bytes of JSON `{"n", "columns": [{name, dtype}], ...}`
 * padded so that 4 + H is a multiple of 4, then each column of n values one after the other.
 */

export type Column = Int32Array | Float32Array;

export interface ColumnHeader {
  n: number;
  columns: { name: string; dtype: string }[];
  [key: string]: unknown;
}

export interface Columns {
  header: ColumnHeader;
  columns: Record<string, Column>;
}

const DTYPES: Record<string, { bytes: number; make: (buf: ArrayBuffer, off: number, n: number) => Column }> = {
  int32: { bytes: 4, make: (b, o, n) => new Int32Array(b, o, n) },
  float32: { bytes: 4, make: (b, o, n) => new Float32Array(b, o, n) },
};

/** Views onto the columns of one binary answer; throws on a malformed or truncated body. */
export function decodeColumns(buf: ArrayBuffer): Columns {
  if (buf.byteLength < 4) throw new Error(`binary answer of ${buf.byteLength} bytes has no header`);
  const headerLength = new DataView(buf).getUint32(0, true);
  if (4 + headerLength > buf.byteLength) throw new Error("binary answer is shorter than its header");
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, headerLength))) as ColumnHeader;
  const n = header.n;
  let offset = 4 + headerLength;
  if (offset % 4 !== 0) throw new Error("binary columns are not 4-byte aligned");
  const columns: Record<string, Column> = {};
  for (const col of header.columns) {
    const dtype = DTYPES[col.dtype];
    if (!dtype) throw new Error(`unknown column dtype ${col.dtype}`);
    if (offset + n * dtype.bytes > buf.byteLength) throw new Error(`column ${col.name} is truncated`);
    columns[col.name] = dtype.make(buf, offset, n);
    offset += n * dtype.bytes;
  }
  if (offset !== buf.byteLength) throw new Error(`binary answer has ${buf.byteLength - offset} trailing bytes`);
  return { header, columns };
}

/** The points of one snapshot in one space. */
export interface Points {
  n: number;
  snapshotId: number;
  epoch: number;
  neuronId: Int32Array;
  layerIdx: Int32Array;
  x: Float32Array;
  y: Float32Array;
}

export function decodePoints(buf: ArrayBuffer): Points {
  const { header, columns } = decodeColumns(buf);
  return {
    n: header.n,
    snapshotId: Number(header.snapshot_id),
    epoch: Number(header.epoch),
    neuronId: columns.neuron_id as Int32Array,
    layerIdx: columns.layer_idx as Int32Array,
    x: columns.x as Float32Array,
    y: columns.y as Float32Array,
  };
}

/** Each neuron's dominant stimulus class (-1: none) and the share of its k stimuli in that class. */
export interface Concepts {
  n: number;
  neuronId: Int32Array;
  classIdx: Int32Array;
  share: Float32Array;
  classNames: string[];
}

export function decodeConcepts(buf: ArrayBuffer): Concepts {
  const { header, columns } = decodeColumns(buf);
  return {
    n: header.n,
    neuronId: columns.neuron_id as Int32Array,
    classIdx: columns.class_idx as Int32Array,
    share: columns.share as Float32Array,
    classNames: (header.class_names as string[] | undefined) ?? [],
  };
}

/** Whether two columns hold the same values in the same order (a plain loop: `every` with a closure costs
 * several milliseconds at 100k points, on every epoch change). */
export function sameElements(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
