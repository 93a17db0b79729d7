import { describe, expect, it } from "vitest";

import type { Job } from "../src/api/types";
import { parseState } from "../src/state/url";
import { change, evalJobOf } from "../src/views/findings";

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
});
