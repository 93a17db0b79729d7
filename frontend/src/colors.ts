/**
 * Colour scales of the page. Categorical palettes are colour-blind safe: Okabe & Ito's eight colours for
 * layers (ordered so that the first layers get the most distinct hues; viridis steps beyond eight layers,
 * which keeps early → late readable as dark → light), Paul Tol's "muted" scheme (extended to 12) for classes;
 * continuous values use viridis/plasma-type ramps, clipped where they would vanish on the light background.
 */

import { color as d3color, interpolatePlasma, interpolateViridis, interpolateYlOrRd } from "d3";

export const OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#404040"];

export const TOL_MUTED_12 = [
  "#332288",
  "#88CCEE",
  "#44AA99",
  "#117733",
  "#999933",
  "#DDCC77",
  "#CC6677",
  "#882255",
  "#AA4499",
  "#77AADD",
  "#EE8866",
  "#BBCC33",
];

/** Colour of the run's i-th layer (network order) among `count`. */
export function layerColour(i: number, count: number): string {
  if (count <= OKABE_ITO.length) return OKABE_ITO[i % OKABE_ITO.length];
  return interpolateViridis(count <= 1 ? 0 : (0.9 * i) / (count - 1));
}

/** Colour of class `i` (cycles beyond 12 classes: the map labels name them). */
export function classColour(i: number): string {
  return i < 0 ? "#B0B0B0" : TOL_MUTED_12[i % TOL_MUTED_12.length];
}

/** Movement ramp: small → dark blue, large → orange (plasma, without its pale yellow end). */
export function movementColour(t: number): string {
  return interpolatePlasma(0.05 + 0.8 * clamp01(t));
}

/** Importance ramp: unimportant → pale orange, important → dark red (YlOrRd without its near-white end). */
export function importanceColour(t: number): string {
  return interpolateYlOrRd(0.25 + 0.75 * clamp01(t));
}

export function clamp01(t: number): number {
  return t < 0 ? 0 : t > 1 ? 1 : Number.isFinite(t) ? t : 0;
}

/** A CSS colour as the 32-bit value that `ImageData` holds on little-endian machines (A B G R bytes). */
export function toAbgr(css: string, alpha = 1): number {
  const c = d3color(css)?.rgb();
  if (!c) return packAbgr(0, 0, 0, 255);
  return packAbgr(Math.round(c.r), Math.round(c.g), Math.round(c.b), Math.round(255 * alpha));
}

export function packAbgr(r: number, g: number, b: number, a = 255): number {
  return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** `a` moved a fraction `t` of the way towards `b` (both ABGR), per channel; used to dim points. */
export function mixAbgr(a: number, b: number, t: number): number {
  const ch = (v: number, shift: number) => (v >>> shift) & 255;
  const m = (shift: number) => Math.round(ch(a, shift) + (ch(b, shift) - ch(a, shift)) * t);
  return packAbgr(m(0), m(8), m(16), m(24));
}

/** The CSS form of an ABGR value (for legends drawn with the same colours as the points). */
export function abgrToCss(v: number): string {
  return `rgb(${v & 255},${(v >>> 8) & 255},${(v >>> 16) & 255})`;
}
