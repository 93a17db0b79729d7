/**
 * Concept labels on the map: dense regions carry the name of their dominant stimulus class, placed without
 * overlap, so the map reads like an atlas. Pure (unit-tested): screen positions in, labels out.
 *
 * Method: bin the visible points into square screen cells; in each cell, count the points of each dominant
 * class (weighted by the class's share of their stimuli, so a neuron with 9/10 "stars" stimuli counts more
 * than one with 4/10). A cell whose leading class holds at least `minCount` weight and `minPurity` of the
 * cell's weight proposes a label at the centroid of that class's points there. Proposals are placed greedily,
 * heaviest first, skipping any whose box would overlap a placed label or that repeats a class already
 * labelled within `repeatDistance` pixels.
 */

export interface LabelInput {
  px: Float32Array;
  py: Float32Array;
  classIdx: Int32Array;
  share: Float32Array;
  visible: Uint8Array | null;
  names: string[];
  width: number;
  height: number;
}

export interface LabelOptions {
  cell: number;
  minCount: number;
  minPurity: number;
  charWidth: number;
  lineHeight: number;
  repeatDistance: number;
  maxLabels: number;
}

export interface MapLabel {
  x: number;
  y: number;
  text: string;
  classIdx: number;
  weight: number;
  purity: number;
  box: [number, number, number, number];
}

export const DEFAULT_LABEL_OPTIONS: LabelOptions = {
  cell: 90,
  minCount: 3,
  minPurity: 0.45,
  charWidth: 7.2,
  lineHeight: 16,
  repeatDistance: 180,
  maxLabels: 40,
};

export function placeLabels(input: LabelInput, options: Partial<LabelOptions> = {}): MapLabel[] {
  const o = { ...DEFAULT_LABEL_OPTIONS, ...options };
  const { px, py, classIdx, share, visible, names, width, height } = input;
  const cols = Math.max(1, Math.ceil(width / o.cell));
  // Per (cell, class): weight and weighted position sums.
  const cells = new Map<number, { total: number; perClass: Map<number, { w: number; sx: number; sy: number }> }>();
  for (let i = 0; i < px.length; i++) {
    if (visible !== null && visible[i] === 0) continue;
    const c = classIdx[i];
    const x = px[i];
    const y = py[i];
    if (c < 0 || !(x >= 0 && y >= 0 && x < width && y < height)) continue;
    const key = Math.floor(y / o.cell) * cols + Math.floor(x / o.cell);
    let cell = cells.get(key);
    if (!cell) cells.set(key, (cell = { total: 0, perClass: new Map() }));
    const w = share[i] > 0 ? share[i] : 0;
    cell.total += w;
    let acc = cell.perClass.get(c);
    if (!acc) cell.perClass.set(c, (acc = { w: 0, sx: 0, sy: 0 }));
    acc.w += w;
    acc.sx += w * x;
    acc.sy += w * y;
  }
  const proposals: MapLabel[] = [];
  for (const cell of cells.values()) {
    let best = -1;
    let bestW = 0;
    for (const [c, acc] of cell.perClass) {
      if (acc.w > bestW || (acc.w === bestW && c < best)) {
        best = c;
        bestW = acc.w;
      }
    }
    if (best < 0 || bestW < o.minCount || bestW / cell.total < o.minPurity) continue;
    const acc = cell.perClass.get(best)!;
    const x = acc.sx / acc.w;
    const y = acc.sy / acc.w;
    const text = names[best] ?? `class ${best}`;
    const half = (text.length * o.charWidth) / 2 + 4;
    proposals.push({
      x,
      y,
      text,
      classIdx: best,
      weight: bestW,
      purity: bestW / cell.total,
      box: [x - half, y - o.lineHeight / 2, x + half, y + o.lineHeight / 2],
    });
  }
  proposals.sort((a, b) => b.weight - a.weight || a.classIdx - b.classIdx || a.x - b.x || a.y - b.y);
  const placed: MapLabel[] = [];
  for (const p of proposals) {
    if (placed.length >= o.maxLabels) break;
    const [x0, y0, x1, y1] = p.box;
    if (x0 < 0 || y0 < 0 || x1 > width || y1 > height) continue;
    const clash = placed.some(
      (q) =>
        (x0 < q.box[2] && x1 > q.box[0] && y0 < q.box[3] && y1 > q.box[1]) ||
        (q.classIdx === p.classIdx && Math.hypot(q.x - p.x, q.y - p.y) < o.repeatDistance),
    );
    if (!clash) placed.push(p);
  }
  return placed;
}

/** Whether any two labels' boxes overlap (used by tests and as a runtime assertion in development). */
export function anyOverlap(labels: MapLabel[]): boolean {
  for (let i = 0; i < labels.length; i++)
    for (let j = i + 1; j < labels.length; j++) {
      const a = labels[i].box;
      const b = labels[j].box;
      if (a[0] < b[2] && a[2] > b[0] && a[1] < b[3] && a[3] > b[1]) return true;
    }
  return false;
}
