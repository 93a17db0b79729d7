import { describe, expect, it } from "vitest";

import { assessRun, diversityThreshold, isEarlyWarning, type HealthEpoch } from "../src/health/warning";

/**
 * A hand-made run: `div[i]` is the diversity of epoch i (null: computed but collapsed; undefined: not
 * computed), `acc[i]` its val top-1 (null: not logged).
 */
function series(div: (number | null | undefined)[], acc: (number | null)[], train?: (number | null)[]): HealthEpoch[] {
  const n = Math.max(div.length, acc.length);
  return Array.from({ length: n }, (_, epoch) => ({
    epoch,
    computed: div[epoch] !== undefined,
    diversity: div[epoch] ?? null,
    val_top1: acc[epoch] ?? null,
    train_top1: train ? (train[epoch] ?? null) : null,
  }));
}

// A healthy reference: diversity wobbles by ~0.02 per epoch around 0.5, accuracy climbs.
const REF_DIV = [0.5, 0.52, 0.5, 0.53, 0.51, 0.52, 0.5, 0.52];
const REF_ACC = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7];
const reference = series(REF_DIV, REF_ACC);

describe("diversityThreshold", () => {
  it("is k × the reference's median epoch step when that dominates", () => {
    // steps 0.02, 0.02, 0.03, 0.02, 0.01, 0.02, 0.02 → median 0.02; range 0.03 → 0.25 × 0.03 < 3 × 0.02.
    expect(diversityThreshold(reference)).toBeCloseTo(0.06, 6);
  });

  it("uses the range term for a smoothly trending reference, and the floor for a flat one", () => {
    const trend = series([1, 0.9, 0.8, 0.7, 0.6, 0.5], []);
    // steps all 0.1 → 0.3; range 0.5 → 0.125: the step term wins.
    expect(diversityThreshold(trend)).toBeCloseTo(0.3, 6);
    const jumpy = series([0, 0.01, 0.02, 2, 2.01, 2.02], []);
    // median step 0.01 → 0.03; range 2.02 → 0.505.
    expect(diversityThreshold(jumpy)).toBeCloseTo(0.505, 6);
    expect(diversityThreshold(series([0.4, 0.4, 0.4], []))).toBe(0.05);
  });

  it("ignores collapsed and uncomputed epochs of the reference", () => {
    expect(diversityThreshold(series([0.5, null, undefined, 0.52, 0.5], []))).toBeCloseTo(0.06, 6);
  });
});

describe("assessRun", () => {
  it("warns when diversity drops clearly before accuracy falls behind, with the right epochs", () => {
    // Diversity clearly below (by 0.3 ≫ 0.06) from epoch 2; accuracy behind (by > 0.05) from epoch 5.
    const run = series([0.5, 0.51, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05], [0.1, 0.2, 0.3, 0.38, 0.47, 0.3, 0.2, 0.1]);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("early");
    expect(isEarlyWarning(a)).toBe(true);
    expect(a.diversityEpoch).toBe(2);
    expect(a.diversityFineUntil).toBe(1);
    expect(a.accuracyEpoch).toBe(5);
    expect(a.lead).toBe(3);
    expect(a.accuracy).toBe("val");
    expect(a.collapsed).toBe(false);
    expect(a.compared).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it("is not an early warning when both drop at the same epoch", () => {
    const run = series([0.5, 0.51, 0.5, 0.2, 0.1, 0.1], [0.1, 0.2, 0.3, 0.1, 0.1, 0.1]);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("same");
    expect(isEarlyWarning(a)).toBe(false);
    expect(a.diversityEpoch).toBe(3);
    expect(a.accuracyEpoch).toBe(3);
    expect(a.lead).toBe(0);
  });

  it("says so when accuracy falls behind first", () => {
    const run = series([0.5, 0.51, 0.5, 0.52, 0.2, 0.1], [0.1, 0.2, 0.1, 0.1, 0.1, 0.1]);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("late");
    expect(a.accuracyEpoch).toBe(2);
    expect(a.diversityEpoch).toBe(4);
    expect(a.lead).toBe(-2);
    expect(isEarlyWarning(a)).toBe(false);
  });

  it("no drop: a run that wobbles within the reference's spread and keeps up", () => {
    const run = series([0.49, 0.5, 0.47, 0.5, 0.48, 0.5, 0.47, 0.49], [0.1, 0.18, 0.28, 0.41, 0.47, 0.58, 0.66, 0.69]);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("none");
    expect(a.diversityEpoch).toBeNull();
    expect(a.accuracyEpoch).toBeNull();
    expect(a.lead).toBeNull();
  });

  it("a one-epoch dip that recovers is not an onset", () => {
    const run = series([0.5, 0.51, 0.1, 0.5, 0.52, 0.5], REF_ACC);
    expect(assessRun(run, reference).kind).toBe("none");
  });

  it("a drop at the last compared epoch counts (newest news), accuracy not behind: diversity-only", () => {
    const run = series([0.5, 0.51, 0.5, 0.52, 0.51, 0.1], REF_ACC);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("diversity-only");
    expect(isEarlyWarning(a)).toBe(true);
    expect(a.diversityEpoch).toBe(5);
    expect(a.accuracyEpoch).toBeNull();
  });

  it("reports accuracy falling behind without a diversity drop", () => {
    const run = series([0.5, 0.52, 0.5, 0.53, 0.51], [0.1, 0.2, 0.1, 0.1, 0.1]);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("accuracy-only");
    expect(a.accuracyEpoch).toBe(2);
  });

  it("treats a computed epoch with null diversity as collapsed (−∞), below the reference", () => {
    // Like the demo's high-lr run: collapsed from epoch 1 on, accuracy behind from epoch 3.
    const run = series([0.5, null, null, null, null], [0.1, 0.2, 0.3, 0.1, 0.1]);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("early");
    expect(a.diversityEpoch).toBe(1);
    expect(a.collapsed).toBe(true);
    expect(a.accuracyEpoch).toBe(3);
    expect(a.lead).toBe(2);
  });

  it("a collapsed reference epoch is not beaten by a collapsed run epoch", () => {
    const ref = series([0.5, 0.52, null, null, 0.5], REF_ACC);
    const run = series([0.5, 0.52, null, null, 0.5], REF_ACC);
    expect(assessRun(run, ref).kind).toBe("none");
  });

  it("compares only epochs computed in both runs (missing epochs are skipped, never guessed)", () => {
    // The run is computed at 0, 2, 4, 6; the reference misses epoch 4.
    const ref = series([0.5, 0.52, 0.5, 0.53, undefined, 0.52, 0.5], REF_ACC);
    const run = series([0.5, undefined, 0.5, undefined, 0.1, undefined, 0.1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.4]);
    const a = assessRun(run, ref);
    expect(a.compared).toEqual([0, 2, 6]);
    expect(a.diversityEpoch).toBe(6);
    expect(a.diversityFineUntil).toBe(2);
    expect(a.accuracyEpoch).toBe(6);
    expect(a.kind).toBe("same");
  });

  it("is unclear when accuracy fell behind at an epoch whose diversity was not computed", () => {
    // Diversity fine at 0, low from 4; epochs 1–3 not computed; accuracy behind from 2.
    const run = series([0.5, undefined, undefined, undefined, 0.1, 0.1], [0.1, 0.2, 0.1, 0.1, 0.1, 0.1]);
    const a = assessRun(run, reference);
    expect(a.kind).toBe("unclear");
    expect(a.diversityEpoch).toBe(4);
    expect(a.diversityFineUntil).toBe(0);
    expect(a.accuracyEpoch).toBe(2);
  });

  it("needs two compared epochs to say anything about diversity", () => {
    const run = series([0.5], [0.1, 0.1, 0.1, 0.1]);
    expect(assessRun(run, reference).kind).toBe("too-few");
    expect(assessRun(series([], []), reference).kind).toBe("too-few");
  });

  it("falls back to train top-1 when val top-1 is missing", () => {
    const ref = series(REF_DIV, [], REF_ACC);
    const run = series([0.5, 0.1, 0.1, 0.1, 0.1], [], [0.1, 0.2, 0.3, 0.1, 0.1]);
    const a = assessRun(run, ref);
    expect(a.accuracy).toBe("train");
    expect(a.kind).toBe("early");
    expect(a.diversityEpoch).toBe(1);
    expect(a.accuracyEpoch).toBe(3);
  });

  it("the margin and k are options", () => {
    const run = series([0.5, 0.51, 0.42, 0.41, 0.4, 0.4], [0.1, 0.2, 0.3, 0.38, 0.47, 0.55]);
    expect(assessRun(run, reference).kind).toBe("diversity-only");
    expect(assessRun(run, reference, { k: 10 }).kind).toBe("none");
    expect(assessRun(run, reference, { accuracyMargin: 0.01 }).kind).toBe("early");
  });
});

describe("the demo world's runs (metrics as stored by `make demo`)", () => {
  // Val top-1 and diversity of the demo's healthy and high-lr runs, epochs 0–6 (high-lr collapses at epoch 1).
  const healthy = series(
    [0.4876, 0.5543, 0.4954, 0.5504, 0.5756, 0.5042, 0.411, 0.3474, 0.3071, 0.2208, 0.1914],
    [0.0833, 0.0833, 0.0938, 0.3125, 0.3646, 0.4688, 0.5938, 0.5938, 0.6458, 0.6979, 0.7292],
  );
  const highLr = series([0.4876, null, null, null, null, null, null], [0.0833, 0.0833, 0.0938, 0.0938, 0.1771, 0.1667, 0.1563]);

  it("high-lr gets the early warning: diversity collapses at epoch 1, val accuracy falls behind at 3", () => {
    const a = assessRun(highLr, healthy);
    expect(a.kind).toBe("early");
    expect(a.diversityEpoch).toBe(1);
    expect(a.collapsed).toBe(true);
    expect(a.accuracyEpoch).toBe(3);
    expect(a.lead).toBe(2);
  });
});

describe("jobs view helpers", () => {
  it("sums a traceback up by its last line, other errors by their first", async () => {
    const { errorSummary } = await import("../src/views/jobs");
    expect(errorSummary("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n")).toBe("ValueError: bad");
    expect(errorSummary("snapshot 12 not found\nmore detail")).toBe("snapshot 12 not found");
    expect(errorSummary("")).toBe("");
  });

  it("formats durations", async () => {
    const { duration } = await import("../src/views/jobs");
    expect(duration(42_000)).toBe("42 s");
    expect(duration(185_000)).toBe("3 min 5 s");
    expect(duration(2 * 3600_000 + 14 * 60_000)).toBe("2 h 14 min");
    expect(duration(-5)).toBe("0 s");
  });
});
