import { describe, expect, it } from "vitest";

import { DEFAULT_STATE, formatState, isNavigation, parseState, type ViewState } from "../src/state/url";

function roundTrip(state: ViewState): ViewState {
  const url = new URL(formatState(state), "http://x");
  return parseState(url.pathname, url.search);
}

describe("URL state", () => {
  it("the default state is the bare root", () => {
    expect(formatState(DEFAULT_STATE)).toBe("/");
    expect(parseState("/", "")).toEqual(DEFAULT_STATE);
  });

  it("round-trips every field", () => {
    const state: ViewState = {
      view: "compare",
      space: 3,
      run: 2,
      epoch: 7,
      neuron: 123,
      zoom: [-1.25, 0.5, 3.75, 4],
      color: "movement",
      hidden: [0, 4],
      cls: 5,
      imp: 9,
      runB: 4,
      epochB: 6,
      neuronB: 77,
      sync: "milestone",
      contours: false,
      follow: true,
    };
    expect(roundTrip(state)).toEqual(state);
  });

  it("keeps URLs short and readable", () => {
    const url = formatState({ ...DEFAULT_STATE, space: 1, run: 2, epoch: 3, hidden: [4, 1], zoom: [0.123456789, 1, 2, 3] });
    expect(url).toBe("/?space=1&run=2&epoch=3&hide=1,4&zoom=0.12346,1,2,3");
  });

  it("ignores garbage instead of failing", () => {
    const s = parseState("/nowhere", "?space=abc&run=-1&epoch=1.5&neuron=9999999999&color=rainbow&hide=1,x,1&zoom=1,2,0,0&sync=?");
    expect(s).toEqual({ ...DEFAULT_STATE, hidden: [1] });
  });

  it("maps paths to views", () => {
    expect(parseState("/jobs", "").view).toBe("jobs");
    expect(parseState("/importance/", "").view).toBe("importance");
    expect(parseState("/map", "").view).toBe("map");
  });

  it("selections are navigations, epochs and zoom are not", () => {
    const a = { ...DEFAULT_STATE, space: 1, run: 1, epoch: 1 };
    expect(isNavigation(a, { ...a, neuron: 5 })).toBe(true);
    expect(isNavigation(a, { ...a, run: 2 })).toBe(true);
    expect(isNavigation(a, { ...a, epoch: 2 })).toBe(false);
    expect(isNavigation(a, { ...a, zoom: [0, 0, 1, 1] })).toBe(false);
  });
});
