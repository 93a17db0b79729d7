/**
 * How the points look: colour by layer, dominant stimulus class, movement or importance; layers switched
 * off; a highlighted class. Pure: arrays in, a {@link MapStyle} and its legend out (unit-tested).
 */

import { type Concepts, type Points, sameElements } from "../api/columns";
import type { Layer } from "../api/types";
import { classColour, importanceColour, layerColour, movementColour, toAbgr } from "../colors";
import type { Colouring } from "../state/url";
import type { MapStyle } from "./mapview";

export interface StyleInput {
  points: Points;
  mode: Colouring;
  layers: Layer[];
  hidden: number[];
  concepts: Concepts | null;
  /** Per point (points order): distance moved on the map since the previous computed epoch. */
  movement: Float32Array | null;
  /** Neuron id → importance score I_n in [0, 1]. */
  importance: Map<number, number> | null;
  /** Highlight the neurons whose dominant stimulus class is this one. */
  cls: number | null;
}

export interface LegendEntry {
  key: number;
  label: string;
  colour: string;
  count: number;
  off: boolean;
}

export type Legend =
  | { kind: "categorical"; title: string; entries: LegendEntry[] }
  | { kind: "ramp"; title: string; low: string; high: string; colours: string[]; note: string };

export interface StyleResult {
  style: MapStyle;
  legend: Legend;
  /** Points (points order) highlighted by the class picker; null without one. */
  highlighted: number;
}

const MISSING = "#b9b9b4";

/** Concepts reordered to the points' order (they normally share it; ids decide). */
export function alignConcepts(points: Points, concepts: Concepts): { classIdx: Int32Array; share: Float32Array } {
  const classIdx = new Int32Array(points.n).fill(-1);
  const share = new Float32Array(points.n);
  const same = concepts.n === points.n && sameElements(concepts.neuronId, points.neuronId);
  if (same) {
    classIdx.set(concepts.classIdx);
    share.set(concepts.share);
    return { classIdx, share };
  }
  const index = new Map<number, number>();
  for (let i = 0; i < concepts.n; i++) index.set(concepts.neuronId[i], i);
  for (let i = 0; i < points.n; i++) {
    const j = index.get(points.neuronId[i]);
    if (j !== undefined) {
      classIdx[i] = concepts.classIdx[j];
      share[i] = concepts.share[j];
    }
  }
  return { classIdx, share };
}

/** A robust top of a distribution (the q-quantile of the finite values), for ramp scaling. */
export function quantile(values: Float32Array, q: number): number {
  const finite = Array.from(values).filter(Number.isFinite).sort((a, b) => a - b);
  if (!finite.length) return 0;
  return finite[Math.min(finite.length - 1, Math.floor(q * (finite.length - 1)))];
}

export function computeStyle(input: StyleInput): StyleResult {
  const { points, mode, layers } = input;
  const n = points.n;
  const fill = new Uint32Array(n);
  const hidden = new Set(input.hidden);
  let visible: Uint8Array | null = null;
  if (hidden.size) {
    visible = new Uint8Array(n);
    for (let i = 0; i < n; i++) visible[i] = hidden.has(points.layerIdx[i]) ? 0 : 1;
  }
  const aligned = input.concepts ? alignConcepts(points, input.concepts) : null;
  const classNames = input.concepts?.classNames ?? [];
  let legend: Legend;

  if (mode === "class" && aligned) {
    const counts = new Map<number, number>();
    const cache = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const c = aligned.classIdx[i];
      counts.set(c, (counts.get(c) ?? 0) + 1);
      let v = cache.get(c);
      if (v === undefined) cache.set(c, (v = toAbgr(classColour(c))));
      fill[i] = v;
    }
    legend = {
      kind: "categorical",
      title: "Dominant stimulus class",
      entries: [...counts.keys()]
        .sort((a, b) => a - b)
        .map((c) => ({
          key: c,
          label: c < 0 ? "no stimuli" : (classNames[c] ?? `class ${c}`),
          colour: classColour(c),
          count: counts.get(c) ?? 0,
          off: false,
        })),
    };
  } else if (mode === "movement" && input.movement) {
    const top = quantile(input.movement, 0.95) || 1;
    const missing = toAbgr(MISSING);
    for (let i = 0; i < n; i++) {
      const m = input.movement[i];
      fill[i] = Number.isFinite(m) ? toAbgr(movementColour(m / top)) : missing;
    }
    legend = {
      kind: "ramp",
      title: "Moved on the map since the previous computed epoch",
      low: "0",
      high: `≥ ${top.toPrecision(2)}`,
      colours: [0, 0.25, 0.5, 0.75, 1].map(movementColour),
      note: "grey: first computed epoch",
    };
  } else if (mode === "importance" && input.importance) {
    const missing = toAbgr(MISSING);
    for (let i = 0; i < n; i++) {
      const s = input.importance.get(points.neuronId[i]);
      fill[i] = s === undefined ? missing : toAbgr(importanceColour(s));
    }
    legend = {
      kind: "ramp",
      title: "Importance I of the evolution for the class",
      low: "0",
      high: "1",
      colours: [0, 0.25, 0.5, 0.75, 1].map(importanceColour),
      note: "share of the class's images the evolution helped",
    };
  } else {
    // Layer indices are small integers: arrays instead of maps keep this loop cheap at 100k points
    // (it runs on every epoch change).
    const maxIdx = layers.reduce((m, l) => Math.max(m, l.idx), -1);
    const colourOf = new Uint32Array(maxIdx + 1).fill(toAbgr(MISSING));
    layers.forEach((l, i) => (colourOf[l.idx] = toAbgr(layerColour(i, layers.length))));
    const missing = toAbgr(MISSING);
    const perLayer = new Int32Array(maxIdx + 1);
    for (let i = 0; i < n; i++) {
      const l = points.layerIdx[i];
      if (l >= 0 && l <= maxIdx) {
        perLayer[l]++;
        fill[i] = colourOf[l];
      } else fill[i] = missing;
    }
    legend = {
      kind: "categorical",
      title: "Layer",
      entries: layers.map((l, i) => ({
        key: l.idx,
        label: l.name,
        colour: layerColour(i, layers.length),
        count: l.idx >= 0 && l.idx <= maxIdx ? perLayer[l.idx] : 0,
        off: hidden.has(l.idx),
      })),
    };
  }

  let emphasis: Uint8Array | null = null;
  let highlighted = 0;
  if (input.cls !== null && aligned) {
    emphasis = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      if (aligned.classIdx[i] === input.cls) {
        emphasis[i] = 1;
        if (!visible || visible[i]) highlighted++;
      }
    }
  }
  return { style: { fill, visible, emphasis }, legend, highlighted };
}
