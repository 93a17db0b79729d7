import { describe, expect, it } from "vitest";

import { parseNeuronQuery } from "../src/app";
import { inTopTenth } from "../src/ui/panel";

const layers = [
  { idx: 0, name: "features.0" },
  { idx: 1, name: "features.3" },
  { idx: 2, name: "conv3" },
];

describe("neuron search", () => {
  it("finds a layer by name, last name part or index", () => {
    expect(parseNeuronQuery("conv3:17", layers)).toEqual({ layerIdx: 2, channel: 17 });
    expect(parseNeuronQuery("features.3:4", layers)).toEqual({ layerIdx: 1, channel: 4 });
    expect(parseNeuronQuery(" 3 : 4 ", layers)).toEqual({ layerIdx: 1, channel: 4 });
    expect(parseNeuronQuery("0:9", layers)).toEqual({ layerIdx: 0, channel: 9 });
  });

  it("explains what is wrong", () => {
    expect(parseNeuronQuery("conv9:1", layers)).toHaveProperty("error", expect.stringContaining("no layer"));
    expect(parseNeuronQuery("conv3", layers)).toHaveProperty("error", expect.stringContaining("e.g."));
  });
});

describe("top 10 %", () => {
  it("ranks within the first tenth count, at least the first", () => {
    expect(inTopTenth(44, 432)).toBe(true);
    expect(inTopTenth(45, 432)).toBe(false);
    expect(inTopTenth(1, 5)).toBe(true);
    expect(inTopTenth(2, 5)).toBe(false);
    expect(inTopTenth(1, undefined)).toBe(true);
  });
});
