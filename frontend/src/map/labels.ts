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

type Box = [number, number, number, number];

/** Whether two boxes `[x0, y0, x1, y1]` overlap (touching edges do not). */
const overlaps = (a: Box, b: Box) => a[0] < b[2] && a[2] > b[0] && a[1] < b[3] && a[3] > b[1];

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
        overlaps(q.box, p.box) ||
        (q.classIdx === p.classIdx && Math.hypot(q.x - p.x, q.y - p.y) < o.repeatDistance),
    );
    if (!clash) placed.push(p);
  }
  return placed;
}

/** Whether any two labels' boxes overlap (used by tests and as a runtime assertion in development). */
export function anyOverlap(labels: MapLabel[]): boolean {
  for (let i = 0; i < labels.length; i++)
    for (let j = i + 1; j < labels.length; j++) if (overlaps(labels[i].box, labels[j].box)) return true;
  return false;
}

/** One point of a selected neuron's trajectory, in CSS pixels. */
export interface TagPoint {
  x: number;
  y: number;
  epoch: number;
  current: boolean;
}

/** A trajectory point's epoch tag ("e4") as placed: text anchored at (x, y) on the given side. */
export interface EpochTag {
  /** Index into the points given to {@link placeEpochTags}. */
  index: number;
  x: number;
  y: number;
  anchor: "start" | "end";
  box: [number, number, number, number];
}

export interface TagOptions {
  charWidth: number;
  height: number;
  /** Gap between a point and its tag. */
  gap: number;
  /** Half side of the square kept clear around every trajectory dot. */
  dot: number;
  /** How far the current epoch's own tag keeps from its point: outside the selection ring drawn there
   * (mapview.ts: r 9, stroke 2.5, so 10.25 px out), with a pixel of air. */
  ring: number;
}

/**
 * The tags' text is 11 px (styles.css `.traj-epoch`). Its glyph boxes, as the browser measures them: 7.0 px per
 * digit and 6.8 per "e" in DejaVu Sans (Chromium's sans-serif on Linux), 7.7 and 7.5 in its bold (the current
 * epoch's tag); from 10.1 px above the baseline to 3.0 below. A tag's box must hold the glyphs whatever the
 * font, so it takes the widest character and a pixel of air around (an estimate of 6.4 px and 2 px below once
 * let two real tags overlap by 0.6 px).
 */
export const DEFAULT_TAG_OPTIONS: TagOptions = { charWidth: 7.7, height: 15, gap: 4, dot: 3, ring: 11 };
/** How far a tag's box reaches below its baseline (descenders, and a pixel of air). */
const TAG_DESCENT = 4;

/**
 * Epoch tags of a trajectory without overlaps: the current epoch first, then the first and the last, then the
 * rest from early to late; each tries the four corners around its point (above right, below right, above left,
 * below left), then its right and left sides, and takes the first whose box is inside the map and clear of every
 * tag placed so far, of every trajectory dot and of the concept labels. A tag with no free place is left out (its
 * dot stays, and the slider names every epoch), except the current epoch's and the two ends', which then cover a
 * concept label rather than disappear: those labels' indexes come back in `covered` for the caller to hide.
 *
 * Args: the trajectory's points and the map's concept labels (both in CSS pixels), the map's size.
 * Returns: the tags placed, in the order of `points`, and the labels they cover.
 */
export function placeEpochTags(
  points: TagPoint[],
  labels: MapLabel[],
  width: number,
  height: number,
  options: Partial<TagOptions> = {},
): { tags: EpochTag[]; covered: number[] } {
  const o = { ...DEFAULT_TAG_OPTIONS, ...options };
  if (points.length < 2) return { tags: [], covered: [] };
  const last = points.length - 1;
  const order = points.map((_, i) => i);
  const rank = (i: number) => (points[i].current ? 0 : i === 0 ? 1 : i === last ? 2 : 3);
  order.sort((a, b) => rank(a) - rank(b) || a - b);
  // Other tags may cross the current point's ring (a thin line; their text has a halo) but not its dot: in a
  // crowded trajectory the ring's whole square would leave the last epoch's tag no room.
  const dots: Box[] = points.map((p) => [p.x - o.dot, p.y - o.dot, p.x + o.dot, p.y + o.dot]);
  const placed: EpochTag[] = [];
  const covered = new Set<number>();
  const candidates = (i: number): EpochTag[] => {
    const p = points[i];
    const w = `e${p.epoch}`.length * o.charWidth;
    const gap = p.current ? o.ring : o.gap; // the current point's tag stays outside its selection ring
    const up = p.y - gap; // text baseline of a tag above the point
    const down = p.y + gap + o.height - TAG_DESCENT; // below it: the box starts `gap` under the point
    const level = p.y + o.height / 2 - TAG_DESCENT; // beside it: the box centred on the point's height
    const side = p.current ? o.ring + 1 : o.dot + o.gap; // beside the point, clear of its dot or ring
    return (
      [
        [p.x + gap, up, "start"],
        [p.x + gap, down, "start"],
        [p.x - gap, up, "end"],
        [p.x - gap, down, "end"],
        [p.x + side, level, "start"],
        [p.x - side, level, "end"],
      ] as [number, number, "start" | "end"][]
    ).map(([x, y, anchor]) => {
      const x0 = anchor === "start" ? x : x - w;
      // a pixel of air on each side, so that two tags never read as one ("e4e1")
      return { index: i, x, y, anchor, box: [x0 - 1, y - o.height + TAG_DESCENT, x0 + w + 1, y + TAG_DESCENT] as Box };
    });
  };
  const free = (tag: EpochTag, withLabels: boolean) =>
    tag.box[0] >= 0 &&
    tag.box[1] >= 0 &&
    tag.box[2] <= width &&
    tag.box[3] <= height &&
    !placed.some((q) => overlaps(q.box, tag.box)) &&
    !dots.some((d, j) => j !== tag.index && overlaps(d, tag.box)) &&
    (!withLabels || !labels.some((l) => overlaps(l.box, tag.box)));
  for (const i of order) {
    const options = candidates(i);
    let tag = options.find((t) => free(t, true));
    if (!tag && rank(i) < 3) {
      tag = options.find((t) => free(t, false));
      if (tag) labels.forEach((l, j) => overlaps(l.box, tag!.box) && covered.add(j));
    }
    if (tag) placed.push(tag);
  }
  placed.sort((a, b) => a.index - b.index);
  return { tags: placed, covered: [...covered].sort((a, b) => a - b) };
}
