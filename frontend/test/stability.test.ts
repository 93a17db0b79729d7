import { describe, expect, it } from "vitest";

import type { SpaceSnapshot } from "../src/api/types";
import { unstableReason } from "../src/ui/stability";

const snap = (patch: Partial<SpaceSnapshot> = {}): SpaceSnapshot => ({
  snapshot_id: 3,
  run_id: 1,
  epoch: 2,
  n_points: 10,
  coverage: 1,
  diversity: 0.2,
  movement: null,
  computed_at: "2026-01-01T00:00:00",
  ...patch,
});

describe("unstableReason", () => {
  it("is null for a stable, unmeasured or missing snapshot", () => {
    expect(unstableReason(undefined)).toBeNull();
    expect(unstableReason(snap())).toBeNull();
    expect(unstableReason(snap({ unstable: false, stability_cosine: 0.95 }))).toBeNull();
  });

  it("names both measures of an unstable snapshot", () => {
    const why = unstableReason(snap({ unstable: true, stability_cosine: 0.312, stability_displacement: 0.084 }));
    expect(why).toContain("median cosine 0.31");
    expect(why).toContain("8 % of the map");
  });

  it("leaves out a measure that was not taken", () => {
    const why = unstableReason(snap({ unstable: true, stability_cosine: 0.4, stability_displacement: null }));
    expect(why).toContain("0.40");
    expect(why).not.toContain("of the map");
  });
});
