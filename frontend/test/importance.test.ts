import { describe, expect, it } from "vitest";

import type { ImportanceInfo, Job } from "../src/api/types";
import { binIndex, layerHistograms, scoreBins } from "../src/charts/histogram";
import { binChanges, isReversionTable, ordering, reversionVerdict, signed, type ReversionTable } from "../src/charts/reversion";
import {
  computationIn,
  formatMeanS,
  groupStages,
  milestoneEpochs,
  milestoneStages,
  pageLabel,
  pickComputation,
  pickReversion,
  reversionChoices,
  scopeKey,
  stageLabel,
} from "../src/views/importance";

function info(id: number, from: number, to: number, cls: number, run = 1): ImportanceInfo {
  return { id, run_id: run, epoch_from: from, epoch_to: to, class_idx: cls, class_name: `c${cls}`, n_images: 24, created_at: "" };
}

const snapshots = [
  { epoch: 0, train_top1: 0.08 },
  { epoch: 1, train_top1: 0.1 },
  { epoch: 3, train_top1: 0.27 },
  { epoch: 4, train_top1: 0.52 },
  { epoch: 6, train_top1: 0.66 },
  { epoch: 9, train_top1: 0.771 },
];

function table(train: number[], val: number[] = train, std = 0.01): ReversionTable {
  return {
    label: "3 → 5",
    rows: ["0-25%", "25-50%", "50-75%", "75-100%", "random"],
    columns: ["train_top1", "train_top5", "val_top1", "val_top5"],
    mean: train.map((t, i) => [t, 0, val[i], 0]),
    std: train.map(() => [std, std, std, std]),
    base_accuracy: { train_top1: 0.8, train_top5: 1, val_top1: 0.7, val_top5: 1 },
    reps: 5,
  };
}

function job(id: number, params: Record<string, unknown>, result: unknown, status: Job["status"] = "done"): Job {
  return {
    id,
    kind: "revert_eval",
    params,
    status,
    priority: 0,
    attempts: 1,
    max_attempts: 3,
    progress: 1,
    message: "",
    worker_id: null,
    created_at: "",
    started_at: null,
    heartbeat_at: null,
    finished_at: null,
    error: null,
    result: result as Record<string, unknown>,
  };
}

describe("stages", () => {
  it("groups computations by (from, to) in epoch order, classes in index order, newest per class", () => {
    const stages = groupStages([info(5, 5, 9, 1), info(1, 3, 5, 2), info(2, 3, 5, 0), info(9, 3, 5, 2), info(3, 5, 9, 0)]);
    expect(stages.map((s) => [s.from, s.to])).toEqual([
      [3, 5],
      [5, 9],
    ]);
    expect(stages[0].items.map((i) => i.id)).toEqual([2, 9]);
    expect(stages[1].items.map((i) => i.class_idx)).toEqual([0, 1]);
  });

  it("labels a stage with train top-1 at both ends", () => {
    expect(stageLabel({ from: 3, to: 4 }, snapshots)).toBe("epoch 3 → 4 (top-1 0.27 → 0.52)");
    expect(stageLabel({ from: 3, to: 7 }, snapshots)).toBe("epoch 3 → 7 (top-1 0.27 → –)");
  });

  it("keeps the class when switching stage if it is computed there", () => {
    const [stage] = groupStages([info(1, 3, 5, 0), info(2, 3, 5, 4)]);
    expect(computationIn(stage, 4).id).toBe(2);
    expect(computationIn(stage, 7).id).toBe(1);
  });

  it("picks the wanted computation, else the first class of the earliest stage with the most classes", () => {
    const list = [info(7, 5, 9, 0), info(4, 3, 5, 1), info(3, 3, 5, 0), info(8, 2, 3, 0)];
    expect(pickComputation(list, 7)?.id).toBe(7);
    expect(pickComputation(list, 99)?.id).toBe(3);
    expect(pickComputation(list, null)?.id).toBe(3);
    expect(pickComputation([info(8, 2, 3, 0), info(7, 5, 9, 0)], null)?.id).toBe(8);
    expect(pickComputation([], 3)).toBeNull();
  });

  it("finds the epochs closest to the accuracy milestones", () => {
    expect(milestoneEpochs(snapshots)).toEqual([3, 4, 9]);
    expect(milestoneStages(snapshots)).toEqual([
      { from: 3, to: 4 },
      { from: 4, to: 9 },
    ]);
    // A run that never gets near 0.75 has no third milestone; unknown accuracies are ignored.
    expect(milestoneEpochs([{ epoch: 0, train_top1: 0.2 }, { epoch: 1, train_top1: 0.45 }, { epoch: 2, train_top1: null }])).toEqual([0, 1]);
    expect(milestoneStages([{ epoch: 0, train_top1: null }])).toEqual([]);
    // A noisy run: each milestone is looked for after the previous one, so stages go forward.
    const noisy = [0.08, 0.17, 0.45, 0.67, 0.66, 0.27, 0.67, 0.59, 0.567, 0.58, 0.73, 0.84].map((t, epoch) => ({ epoch, train_top1: t }));
    expect(milestoneEpochs(noisy)).toEqual([5, 8, 10]);
  });
});

describe("paging and numbers", () => {
  it("names the rows shown", () => {
    expect(pageLabel(20, 20, 432)).toBe("rows 21–40 of 432");
    expect(pageLabel(420, 12, 432)).toBe("rows 421–432 of 432");
    expect(pageLabel(0, 0, 0)).toBe("no rows of 0");
  });

  it("formats mean S_n and signed changes", () => {
    expect(formatMeanS(0.06733)).toBe("0.067");
    expect(formatMeanS(-0.0000412)).toBe("−4.1e−5");
    expect(formatMeanS(0)).toBe("0.000");
    expect(signed(-0.2134)).toBe("−0.213");
    expect(signed(0.0042)).toBe("+0.004");
    expect(signed(-0.00001)).toBe("0.000");
  });
});

describe("score histogram", () => {
  it("centres one bin on each possible value k/N for few images", () => {
    const bins = scoreBins(4);
    expect(bins.edges).toHaveLength(5);
    expect(bins.domain[0]).toBeCloseTo(-0.125);
    expect(bins.domain[1]).toBeCloseTo(1.125);
    expect([0, 0.25, 0.5, 0.75, 1].map((v) => binIndex(bins, v))).toEqual([0, 1, 2, 3, 4]);
    // 24 images: 1/24 and 2/24 land in different bins (equal-width bins would merge some values).
    const b24 = scoreBins(24);
    expect(new Set(Array.from({ length: 25 }, (_, k) => binIndex(b24, k / 24))).size).toBe(25);
  });

  it("uses 20 equal bins over [0, 1] for many images", () => {
    const bins = scoreBins(128);
    expect(bins.edges).toHaveLength(20);
    expect(bins.domain).toEqual([0, 1]);
    expect(binIndex(bins, 0)).toBe(0);
    expect(binIndex(bins, 1)).toBe(19);
    expect(binIndex(bins, 0.5)).toBe(10);
    expect(binIndex(bins, Number.NaN)).toBe(-1);
  });

  it("counts scores per layer, every layer in order", () => {
    const bins = scoreBins(2);
    const layerOf = (id: number) => ({ 1: 0, 2: 0, 3: 1, 4: 7 })[id];
    const rows = layerHistograms([1, 2, 3, 4, 5], [0, 1, 0.5, 1, 1], layerOf, [
      { idx: 0, name: "conv1" },
      { idx: 1, name: "conv2" },
      { idx: 2, name: "conv3" },
    ], bins);
    expect(rows.map((r) => [r.name, r.n, r.counts])).toEqual([
      ["conv1", 2, [1, 0, 1]],
      ["conv2", 1, [0, 1, 0]],
      ["conv3", 0, [0, 0, 0]],
    ]);
  });
});

describe("reversion check", () => {
  it("recognises a table and reads the quarters and the random quarter", () => {
    const t = table([-0.2, -0.1, -0.05, -0.01, -0.08]);
    expect(isReversionTable(t)).toBe(true);
    expect(isReversionTable({ rows: [] })).toBe(false);
    expect(isReversionTable(null)).toBe(false);
    expect(binChanges(t, "train_top1")).toEqual({ bins: [-0.2, -0.1, -0.05, -0.01], random: -0.08 });
    expect(binChanges(t, "nope")).toBeNull();
  });

  it("says the run shows the paper's ordering when it does", () => {
    const t = table([-0.2, -0.1, -0.05, 0.01, -0.08]);
    const o = ordering(binChanges(t, "train_top1")!);
    expect(o).toEqual({ mostHurtsMost: true, leastHurtsLeast: true, randomBetween: true, monotone: true, holds: true });
    const v = reversionVerdict(t);
    expect(v.holds).toBe(true);
    expect(v.text).toContain("The paper found");
    expect(v.text).toContain("This run shows that ordering");
    expect(v.text).toContain("−0.200");
  });

  it("does not call a flat table an ordering", () => {
    const t = table([0, 0, 0, 0, 0]);
    expect(ordering(binChanges(t, "train_top1")!).holds).toBe(false);
    const v = reversionVerdict(t);
    expect(v.holds).toBeNull();
    expect(v.text).toContain("changed top-1 accuracy by less than");
    expect(v.text).not.toContain("shows that ordering");
  });

  it("says which part of the ordering fails", () => {
    // The least important quarter hurts most; random outside the range.
    const t = table([-0.05, -0.1, -0.02, -0.3, 0.02]);
    const o = ordering(binChanges(t, "train_top1")!);
    expect(o.holds).toBe(false);
    expect(o.mostHurtsMost).toBe(false);
    expect(o.leastHurtsLeast).toBe(false);
    const v = reversionVerdict(t);
    expect(v.holds).toBe(false);
    expect(v.text).toContain("does not show");
    expect(v.text).toContain("not the most harmful");
    // Train shows it, val does not: "only in part".
    const mixed = table([-0.2, -0.1, -0.05, -0.01, -0.08], [-0.01, -0.1, -0.05, -0.2, -0.08]);
    expect(reversionVerdict(mixed).text).toContain("only in part");
  });

  it("picks the stage's table: all classes, then this class, newest first", () => {
    const ok = { table: table([-0.2, -0.1, -0.05, -0.01, -0.08]) };
    const jobs = [
      job(1, { run_id: 1, epoch_from: 3, epoch_to: 5 }, ok),
      job(2, { run_id: 1, epoch_from: 3, epoch_to: 5 }, ok),
      job(3, { run_id: 1, epoch_from: 3, epoch_to: 5, classes: [4] }, ok),
      job(4, { run_id: 1, epoch_from: 5, epoch_to: 9 }, ok),
      job(5, { run_id: 2, epoch_from: 3, epoch_to: 5 }, ok),
      job(6, { run_id: 1, epoch_from: 3, epoch_to: 5 }, { table: { broken: true } }),
      job(7, { run_id: 1, epoch_from: 3, epoch_to: 5 }, ok, "failed"),
    ];
    expect(pickReversion(jobs, 1, 3, 5, 4)?.job.id).toBe(2);
    expect(pickReversion(jobs.filter((j) => j.id === 3 || j.id === 4), 1, 3, 5, 4)?.job.id).toBe(3);
    expect(pickReversion(jobs, 1, 3, 5, 0)?.job.id).toBe(2);
    expect(pickReversion(jobs, 1, 3, 5, 0)?.classes).toBeNull();
    expect(pickReversion(jobs, 1, 5, 9, 0)?.job.id).toBe(4);
    expect(pickReversion(jobs, 1, 9, 10, 0)).toBeNull();
    // One table per scope, the newest of each, best first.
    expect(reversionChoices(jobs, 1, 3, 5, 4).map((c) => [c.job.id, scopeKey(c.classes)])).toEqual([
      [2, "all"],
      [3, "4"],
    ]);
    expect(scopeKey([3, 1])).toBe("1,3");
  });
});
