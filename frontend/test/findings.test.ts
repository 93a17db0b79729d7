import { describe, expect, it } from "vitest";

import type { Job } from "../src/api/types";
import { parseState } from "../src/state/url";
import { change, evalJobOf, seedMean, seedsLine, seedValue, signed, type SeedFinding } from "../src/views/findings";

const job = (id: number, kind: string, space: number) => ({ id, kind, params: { space_id: space } }) as unknown as Job;

describe("findings view helpers", () => {
  it("routes /findings to the findings view", () => {
    expect(parseState("/findings", "?space=2").view).toBe("findings");
  });
  it("writes signed changes with their spread", () => {
    expect(change(-0.0213, 0.0031)).toBe("−0.021 ± 0.003");
    expect(change(0.084, 0)).toBe("+0.084 ± 0.000");
  });
  it("finds the eval job of a space among the active jobs", () => {
    const active = [job(1, "add_snapshot", 1), job(2, "eval", 2), job(3, "eval", 1)];
    expect(evalJobOf(active, 1)?.id).toBe(3);
    expect(evalJobOf(active, 5)).toBeUndefined();
  });
  it("writes signed values with a true minus sign", () => {
    expect(signed(-0.06)).toBe("−0.060");
    expect(signed(0.1)).toBe("+0.100");
    expect(signed(0)).toBe("+0.000");
    expect(signed(null)).toBe("–");
    expect(signed(Number.NaN)).toBe("–");
  });
  it("says per finding its mean ± std over the seeds and whether it holds for every seed", () => {
    const finding: SeedFinding = {
      key: "reversion_order",
      title: "Reversion",
      paper: "…",
      measure: "…",
      values: [-0.1, -0.05, -0.03],
      mean: -0.06,
      std: 0.036,
      holds: [true, false, true],
      holds_for_every_seed: false,
    };
    expect(seedsLine(finding)).toBe("over 3 seeds: −0.060 ± 0.036; holds for every seed: no (2 of 3)");
    const every = { ...finding, values: [1, null], mean: 1, std: null, holds: [true, true], holds_for_every_seed: true };
    expect(seedsLine(every)).toBe("over 2 seeds: +1.000; holds for every seed: yes");
  });
  it("reads each finding's values in its unit: an AUC plain, a change signed, epochs whole", () => {
    expect(seedValue(0.8924, "auc")).toBe("0.892");
    expect(seedValue(-0.0751, "change")).toBe("−0.075");
    expect(seedValue(1, "epochs")).toBe("+1");
    expect(seedValue(0, "epochs")).toBe("+0");
    expect(seedValue(null, "auc")).toBe("–");
    const lead: SeedFinding = {
      key: "high_lr_warning_early",
      title: "Diversity",
      paper: "…",
      measure: "…",
      short: "warning lead (epochs)",
      unit: "epochs",
      values: [1, 0, 1],
      mean: 0.667,
      std: 0.577,
      holds: [true, false, true],
      holds_for_every_seed: false,
    };
    expect(seedMean(lead)).toBe("+0.667 ± 0.577");
    expect(seedsLine(lead)).toBe("over 3 seeds: warning lead (epochs) +0.667 ± 0.577; holds for every seed: no (2 of 3)");
    const auc = { ...lead, short: "intruder AUC across models", unit: "auc" as const, mean: 0.892, std: 0.008 };
    expect(seedsLine(auc)).toBe("over 3 seeds: intruder AUC across models 0.892 ± 0.008; holds for every seed: no (2 of 3)");
  });
});
