/**
 * The one view-state object of the page, mirrored in the URL. Data flows one way: URL → state → fetch →
 * render; user actions call {@link StateStore.update}, which rewrites the URL (a history entry for
 * navigations such as selecting a neuron, a silent replace for continuous changes such as zoom) and tells
 * every subscriber what changed.
 */

import { formatState, isNavigation, parseState, type ViewState } from "./url";

export type Listener = (next: ViewState, prev: ViewState) => void;

export class StateStore {
  private state: ViewState;
  private readonly listeners = new Set<Listener>();

  constructor() {
    this.state = parseState(location.pathname, location.search);
    window.addEventListener("popstate", () => this.replaceAll(parseState(location.pathname, location.search)));
  }

  get(): ViewState {
    return this.state;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Change part of the state; `history: "push"` forces a new history entry, `"replace"` forbids one. */
  update(patch: Partial<ViewState>, history: "auto" | "push" | "replace" = "auto"): void {
    const next = { ...this.state, ...patch };
    const url = formatState(next);
    const current = location.pathname + location.search;
    if (url !== current) {
      const push = history === "push" || (history === "auto" && isNavigation(this.state, next));
      if (push) window.history.pushState(null, "", url);
      else window.history.replaceState(null, "", url);
    }
    this.replaceAll(next);
  }

  private replaceAll(next: ViewState): void {
    const prev = this.state;
    this.state = next;
    for (const listener of this.listeners) listener(next, prev);
  }
}
