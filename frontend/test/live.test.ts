import { describe, expect, it } from "vitest";

import { type Alert, describeAlert, followTarget, mergeAlert } from "../src/live";

const alert = (id: number, patch: Partial<Alert> = {}): Alert => ({
  id,
  run_id: 2,
  run: "high-lr",
  space_id: 1,
  reference_run_id: 1,
  metric: "diversity",
  rule: "band",
  start_epoch: 2,
  accuracy_epoch: 4,
  lead: 2,
  reason: "Concept diversity fell.",
  created_at: "2026-01-01T00:00:00",
  updated_at: "2026-01-01T00:00:00",
  ...patch,
});

describe("live runs", () => {
  it("follows only a newer epoch", () => {
    expect(followTarget([0, 1, 3, 2], 1)).toBe(3);
    expect(followTarget([0, 1, 3], 3)).toBeNull();
    expect(followTarget([0, 5], null)).toBe(5);
    expect(followTarget([], 2)).toBeNull();
  });

  it("merges alerts by id, oldest first", () => {
    const merged = mergeAlert([alert(3), alert(1)], alert(3, { start_epoch: 1 }));
    expect(merged.map((a) => [a.id, a.start_epoch])).toEqual([
      [1, 2],
      [3, 1],
    ]);
  });

  it("says an alert's lead over the accuracy", () => {
    expect(describeAlert(alert(1))).toBe("high-lr, from epoch 2 — 2 epochs before accuracy fell behind: Concept diversity fell.");
    expect(describeAlert(alert(1, { lead: null }))).toBe("high-lr, from epoch 2: Concept diversity fell.");
  });
});
