/**
 * The early-warning rule of the training-health view (paper §4.5): a run trained with an ill-suited
 * hyperparameter (e.g. a too-high learning rate) loses concept diversity *before* its accuracy shows it.
 * Pure functions over the stored per-epoch metrics, so the rule is unit-tested and the view only words it.
 */

import type { EpochMetrics } from "../api/types";

/** What the rule reads of one epoch of a run (an {@link EpochMetrics} fits). */
export type HealthEpoch = Pick<EpochMetrics, "epoch" | "computed" | "diversity" | "val_top1" | "train_top1">;

export interface WarningOptions {
  /** Diversity is "clearly below" when lower than the reference's by more than k × its median epoch step. */
  k?: number;
  /** … or by more than this fraction of the reference's diversity range, whichever is larger … */
  rangeFraction?: number;
  /** … and never by less than this (nats), so a flat reference does not turn noise into warnings. */
  floor?: number;
  /** Accuracy "falls behind" when lower than the reference's by more than this (top-1 as a fraction). */
  accuracyMargin?: number;
}

export const DEFAULT_WARNING_OPTIONS: Required<WarningOptions> = { k: 3, rangeFraction: 0.25, floor: 0.05, accuracyMargin: 0.05 };

/**
 * How a run's drops relate:
 * - `early`: diversity fell clearly below the reference's before accuracy fell behind — the warning;
 * - `diversity-only`: diversity fell, accuracy has not fallen behind (yet) — a warning too;
 * - `same`: both at the same epoch — not an early sign;
 * - `late`: accuracy fell behind first — not an early sign;
 * - `unclear`: accuracy fell behind at an epoch whose diversity is not computed, between the last epoch
 *   where diversity was fine and the first where it was low — which came first is unknown;
 * - `accuracy-only`: accuracy fell behind without a clear drop of diversity;
 * - `none`: neither;
 * - `too-few`: fewer than two epochs with diversity computed in both runs — nothing to say.
 */
export type WarningKind = "early" | "diversity-only" | "same" | "late" | "unclear" | "accuracy-only" | "none" | "too-few";

export interface HealthAssessment {
  kind: WarningKind;
  /** First epoch of the (sustained) clear drop of diversity, null when none. */
  diversityEpoch: number | null;
  /** The last compared epoch before `diversityEpoch` (diversity was not clearly below there), null when none. */
  diversityFineUntil: number | null;
  /** Whether the run's diversity is collapsed (computed, but −∞) at `diversityEpoch`. */
  collapsed: boolean;
  /** First epoch of the (sustained) accuracy fall, null when none. */
  accuracyEpoch: number | null;
  /** Which accuracy was compared: val top-1 when both runs have it, else train top-1; null when neither. */
  accuracy: "val" | "train" | null;
  /** Epochs between the diversity drop and the accuracy fall (`accuracyEpoch − diversityEpoch`), when both. */
  lead: number | null;
  /** The diversity gap (nats) counted as "clearly below". */
  threshold: number;
  /** The accuracy gap counted as "behind". */
  margin: number;
  /** Epochs whose diversity is computed in both runs (the ones compared), ascending. */
  compared: number[];
}

/** Whether an assessment is the early warning (diversity first, accuracy later or not yet). */
export function isEarlyWarning(a: HealthAssessment): boolean {
  return a.kind === "early" || a.kind === "diversity-only";
}

/** Diversity of a computed epoch as a number: null (computed but collapsed) is −∞. Undefined when not computed. */
function diversityOf(e: HealthEpoch): number | undefined {
  if (!e.computed) return undefined;
  if (e.diversity === null) return -Infinity;
  return Number.isNaN(e.diversity) ? -Infinity : e.diversity;
}

function median(values: number[]): number {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The diversity gap that counts as "clearly below" for a reference run:
 * `max(k × median |Δ| between its consecutive computed epochs, rangeFraction × (max − min), floor)`,
 * over its finite diversities. The median step is the reference's own epoch-to-epoch wobble, robust to one
 * big jump; the range term keeps a smoothly trending reference from flagging runs that merely train at a
 * slightly different pace.
 */
export function diversityThreshold(reference: HealthEpoch[], options: WarningOptions = {}): number {
  const o = { ...DEFAULT_WARNING_OPTIONS, ...options };
  const values = [...reference]
    .sort((a, b) => a.epoch - b.epoch)
    .map(diversityOf)
    .filter((v): v is number => v !== undefined && Number.isFinite(v));
  const steps = values.slice(1).map((v, i) => Math.abs(v - values[i]));
  const range = values.length ? Math.max(...values) - Math.min(...values) : 0;
  return Math.max(o.k * median(steps), o.rangeFraction * range, o.floor);
}

/**
 * The first onset of a sustained condition over ascending epochs: the first `i` where `below[i]` holds and
 * also holds at the next compared epoch (a one-epoch blip is not an onset); an onset at the last compared
 * epoch counts — it is the newest news. Returns the index, or -1.
 */
function sustainedOnset(below: boolean[]): number {
  for (let i = 0; i < below.length; i++) if (below[i] && (i === below.length - 1 || below[i + 1])) return i;
  return -1;
}

/**
 * Compare a run with a reference run (usually the space's base run), epoch by epoch:
 *
 * - **Diversity "clearly below"** at an epoch: computed in both runs, and the run's diversity is lower than
 *   the reference's by more than {@link diversityThreshold}. A computed epoch with null diversity is a
 *   collapse (−∞): below any finite reference value (both collapsed: not below). Epochs not computed in
 *   both runs are skipped, never guessed.
 * - **Accuracy "behind"** at an epoch: both runs have the accuracy (val top-1 when both runs have some,
 *   else train top-1 — from the training log, so every checkpoint counts, computed in the space or not)
 *   and the run's is lower than the reference's by more than `accuracyMargin` (default 0.05 = 5 points).
 * - Both are **sustained**: the onset is the first epoch where the condition holds and still holds at the
 *   next compared epoch (or is the last compared one), so a single bad epoch that recovers is not an onset.
 *
 * The kinds are described at {@link WarningKind}; only `early` and `diversity-only` are the paper's early sign.
 */
export function assessRun(run: HealthEpoch[], reference: HealthEpoch[], options: WarningOptions = {}): HealthAssessment {
  const o = { ...DEFAULT_WARNING_OPTIONS, ...options };
  const threshold = diversityThreshold(reference, o);
  const refByEpoch = new Map(reference.map((e) => [e.epoch, e]));
  const sorted = [...run].sort((a, b) => a.epoch - b.epoch);

  // Diversity, over the epochs computed in both runs.
  const compared: number[] = [];
  const divBelow: boolean[] = [];
  const divCollapsed: boolean[] = [];
  for (const e of sorted) {
    const r = refByEpoch.get(e.epoch);
    const mine = diversityOf(e);
    const theirs = r ? diversityOf(r) : undefined;
    if (mine === undefined || theirs === undefined) continue;
    compared.push(e.epoch);
    divCollapsed.push(mine === -Infinity);
    // −∞ against −∞ is not below; −∞ against a finite value is.
    divBelow.push(theirs !== -Infinity && (mine === -Infinity || theirs - mine > threshold));
  }

  // Accuracy: val top-1 when both runs report it somewhere, else train top-1.
  const hasVal = sorted.some((e) => finite(e.val_top1)) && reference.some((e) => finite(e.val_top1));
  const hasTrain = sorted.some((e) => finite(e.train_top1)) && reference.some((e) => finite(e.train_top1));
  const accuracy: HealthAssessment["accuracy"] = hasVal ? "val" : hasTrain ? "train" : null;
  const pick = (e: HealthEpoch) => (accuracy === "val" ? e.val_top1 : e.train_top1);
  const accEpochs: number[] = [];
  const accBehind: boolean[] = [];
  if (accuracy)
    for (const e of sorted) {
      const r = refByEpoch.get(e.epoch);
      const mine = pick(e);
      const theirs = r ? pick(r) : null;
      if (!finite(mine) || !finite(theirs)) continue;
      accEpochs.push(e.epoch);
      accBehind.push(theirs - mine > o.accuracyMargin);
    }

  const d = sustainedOnset(divBelow);
  const a = sustainedOnset(accBehind);
  const diversityEpoch = d >= 0 ? compared[d] : null;
  const diversityFineUntil = d > 0 ? compared[d - 1] : null;
  const accuracyEpoch = a >= 0 ? accEpochs[a] : null;
  const base = {
    diversityEpoch,
    diversityFineUntil,
    collapsed: d >= 0 && divCollapsed[d],
    accuracyEpoch,
    accuracy,
    lead: diversityEpoch !== null && accuracyEpoch !== null ? accuracyEpoch - diversityEpoch : null,
    threshold,
    margin: o.accuracyMargin,
    compared,
  };
  return { kind: kindOf(diversityEpoch, diversityFineUntil, accuracyEpoch, compared.length), ...base };
}

function kindOf(div: number | null, fineUntil: number | null, acc: number | null, nCompared: number): WarningKind {
  if (div === null) {
    // Without two compared epochs "no drop of diversity" would be a guess.
    if (nCompared < 2) return "too-few";
    return acc !== null ? "accuracy-only" : "none";
  }
  if (acc === null) return "diversity-only";
  if (div < acc) return "early";
  if (div === acc) return "same";
  // Accuracy first — unless its epoch lies in the gap of uncomputed diversity just before the drop.
  return fineUntil === null || acc > fineUntil ? "unclear" : "late";
}

function finite(v: number | null | undefined): v is number {
  return v !== null && v !== undefined && Number.isFinite(v);
}
