/**
 * The view state and its URL form. Every view state lives in the URL, so a reload or a pasted link restores
 * exactly the same view. Pure functions: parse is total (garbage in → defaults out), serialise writes only
 * what differs from the defaults, in a fixed order.
 */

export const VIEWS = ["map", "compare", "importance", "health", "jobs", "findings"] as const;
export type View = (typeof VIEWS)[number];

export const COLOURINGS = ["layer", "class", "movement", "importance"] as const;
export type Colouring = (typeof COLOURINGS)[number];

export const SYNC_MODES = ["epoch", "milestone", "free"] as const;
export type SyncMode = (typeof SYNC_MODES)[number];

/** A zoom box in data (unified-space) coordinates: [x0, y0, x1, y1]. */
export type ZoomBox = [number, number, number, number];

export interface ViewState {
  view: View;
  space: number | null;
  run: number | null;
  epoch: number | null;
  neuron: number | null;
  zoom: ZoomBox | null;
  color: Colouring;
  /** Layer indices switched off in the legend. */
  hidden: number[];
  /** Highlighted dominant stimulus class. */
  cls: number | null;
  /** Importance computation used by the "importance" colouring and view. */
  imp: number | null;
  /** Second run (and epoch) of the comparison view, and how its epoch follows the first. */
  runB: number | null;
  epochB: number | null;
  /** The neuron pinned on the comparison's second map. */
  neuronB: number | null;
  sync: SyncMode;
  /** Density contours of both runs over the comparison maps. */
  contours: boolean;
  /** The map follows the newest computed epoch of a run that is still training (issue 16). */
  follow: boolean;
}

export const DEFAULT_STATE: ViewState = {
  view: "map",
  space: null,
  run: null,
  epoch: null,
  neuron: null,
  zoom: null,
  color: "layer",
  hidden: [],
  cls: null,
  imp: null,
  runB: null,
  epochB: null,
  neuronB: null,
  sync: "epoch",
  contours: true,
  follow: false,
};

function id(value: string | null): number | null {
  if (value === null || !/^\d{1,9}$/.test(value)) return null;
  return Number(value);
}

function oneOf<T extends string>(value: string | null, options: readonly T[], fallback: T): T {
  return value !== null && (options as readonly string[]).includes(value) ? (value as T) : fallback;
}

function zoomBox(value: string | null): ZoomBox | null {
  if (!value) return null;
  const parts = value.split(",").map(Number);
  if (parts.length !== 4 || !parts.every(Number.isFinite)) return null;
  const [x0, y0, x1, y1] = parts;
  if (!(x1 > x0 && y1 > y0)) return null;
  return [x0, y0, x1, y1];
}

function idList(value: string | null): number[] {
  if (!value) return [];
  const ids = value
    .split(",")
    .map((v) => id(v))
    .filter((v): v is number => v !== null);
  return [...new Set(ids)].sort((a, b) => a - b);
}

/** The view named by a path (`/`, `/map`, `/compare`, …); unknown paths show the map. */
export function viewOfPath(pathname: string): View {
  const first = pathname.replace(/^\/+/, "").split("/")[0];
  return oneOf(first || "map", VIEWS, "map");
}

/** The state a URL (path + query) describes. */
export function parseState(pathname: string, search: string): ViewState {
  const q = new URLSearchParams(search);
  return {
    view: viewOfPath(pathname),
    space: id(q.get("space")),
    run: id(q.get("run")),
    epoch: id(q.get("epoch")),
    neuron: id(q.get("neuron")),
    zoom: zoomBox(q.get("zoom")),
    color: oneOf(q.get("color"), COLOURINGS, "layer"),
    hidden: idList(q.get("hide")),
    cls: id(q.get("class")),
    imp: id(q.get("imp")),
    runB: id(q.get("runB")),
    epochB: id(q.get("epochB")),
    neuronB: id(q.get("neuronB")),
    sync: oneOf(q.get("sync"), SYNC_MODES, "epoch"),
    contours: q.get("contours") !== "0",
    follow: q.get("follow") === "1",
  };
}

/** Round a coordinate to 4 significant digits: short URLs, and a round trip lands on the same box. */
export function roundCoord(v: number): number {
  if (v === 0) return 0;
  return Number(v.toPrecision(5));
}

/** The URL (path + query) of a state; the inverse of {@link parseState} for every state it produces. */
export function formatState(state: ViewState): string {
  const q = new URLSearchParams();
  const put = (key: string, value: string | number | null | undefined) => {
    if (value !== null && value !== undefined && value !== "") q.set(key, String(value));
  };
  put("space", state.space);
  put("run", state.run);
  put("epoch", state.epoch);
  put("neuron", state.neuron);
  if (state.color !== DEFAULT_STATE.color) put("color", state.color);
  if (state.hidden.length) put("hide", [...state.hidden].sort((a, b) => a - b).join(","));
  put("class", state.cls);
  put("imp", state.imp);
  put("runB", state.runB);
  put("epochB", state.epochB);
  put("neuronB", state.neuronB);
  if (state.sync !== DEFAULT_STATE.sync) put("sync", state.sync);
  if (!state.contours) put("contours", 0);
  if (state.follow) put("follow", 1);
  if (state.zoom) put("zoom", state.zoom.map(roundCoord).join(","));
  const query = q.toString().replace(/%2C/g, ",");
  const path = state.view === "map" ? "/" : `/${state.view}`;
  return query ? `${path}?${query}` : path;
}

/** Whether two states differ in what the browser history should step through (view and selections). */
export function isNavigation(a: ViewState, b: ViewState): boolean {
  return (
    a.view !== b.view ||
    a.neuron !== b.neuron ||
    a.run !== b.run ||
    a.space !== b.space ||
    a.runB !== b.runB ||
    a.neuronB !== b.neuronB ||
    a.imp !== b.imp
  );
}
