/**
 * The neuron panel (click a point): its k example patches at this epoch, its evolution strip (its patches
 * at every computed epoch, the paper's Fig 1 B/C), its nearest neighbours in the unified space (any run,
 * any epoch) and the classes for which its evolution ranks in the top 10 % by importance.
 */

import { ApiError, api, patchUrl, spriteUrl } from "../api/client";
import type { Neighbour, NeuronImportance } from "../api/types";
import type { DataCache } from "../data";
import { fmt, h, setChildren } from "./dom";
import { thumbnail } from "./tooltip";

export interface PanelTarget {
  spaceId: number;
  runId: number;
  epoch: number;
  snapshotId: number;
  neuronId: number;
  /** The run's computed epochs in this space, in order. */
  evolution: { epoch: number; snapshotId: number }[];
  classNames: string[];
}

export interface PanelActions {
  selectEpoch: (epoch: number) => void;
  selectNeighbour: (n: Neighbour) => void;
  colourByImportance: (importanceId: number) => void;
  close: () => void;
}

/** Whether `rank` of `total` is in the top 10 % (at least the first one always is). */
export function inTopTenth(rank: number, total: number | undefined): boolean {
  if (!total || total <= 0) return rank <= 1;
  return rank <= Math.max(1, Math.ceil(total * 0.1));
}

export class NeuronPanel {
  readonly element = h("aside", { class: "panel", "data-testid": "neuron-panel", "aria-label": "Neuron" });
  private token = 0;

  constructor(
    private readonly data: DataCache,
    private readonly actions: PanelActions,
  ) {
    this.element.hidden = true;
  }

  hide(): void {
    this.token++;
    this.element.hidden = true;
    this.element.replaceChildren();
  }

  get open(): boolean {
    return !this.element.hidden;
  }

  async show(t: PanelTarget): Promise<void> {
    const token = ++this.token;
    this.element.hidden = false;
    this.element.classList.add("loading");
    const [detail, neighbours, importance] = await Promise.allSettled([
      api.neuronAt(t.spaceId, t.snapshotId, t.neuronId),
      api.neighbours(t.spaceId, t.snapshotId, t.neuronId, 8),
      api.neuronImportance(t.neuronId),
    ]);
    if (token !== this.token) return;
    this.element.classList.remove("loading");
    if (detail.status === "rejected") {
      const reason = detail.reason instanceof ApiError ? detail.reason.detail : String(detail.reason);
      setChildren(this.element, this.header(`neuron ${t.neuronId}`, ""), h("p", { class: "error" }, reason));
      return;
    }
    const d = detail.value;
    const title = `${d.neuron.layer.name}:${d.neuron.channel}`;
    const sub = `${this.data.runName(t.runId)} · epoch ${t.epoch} · neuron #${t.neuronId}`;
    const k = d.stimuli.length;
    const patches = h(
      "div",
      { class: "patch-grid", "data-testid": "patches" },
      ...d.stimuli.map((s) => {
        const label = s.label === null ? "" : (t.classNames[s.label] ?? `class ${s.label}`);
        return h(
          "figure",
          { class: "patch", title: `${label} · image ${s.image_idx} · activation ${s.maximum.toFixed(3)}` },
          s.patch ? thumbnail(patchUrl(t.snapshotId, t.neuronId, s.rank), `${label} patch`, "patch-img") : h("div", { class: "patch-missing" }, "no patch"),
          h("figcaption", {}, h("span", { class: "patch-class" }, label), h("span", { class: "patch-act" }, fmt(s.maximum, 2))),
        );
      }),
    );
    const evolution = h(
      "div",
      { class: "evolution", "data-testid": "evolution" },
      ...t.evolution.map((e) =>
        h(
          "button",
          {
            type: "button",
            class: e.epoch === t.epoch ? "evo-row current" : "evo-row",
            "data-epoch": e.epoch,
            title: `show epoch ${e.epoch}`,
            onclick: () => this.actions.selectEpoch(e.epoch),
          },
          h("span", { class: "evo-epoch" }, `e${e.epoch}`),
          h("img", { class: "evo-sprite", src: spriteUrl(e.snapshotId, t.neuronId), alt: `patches at epoch ${e.epoch}`, loading: "lazy" }),
        ),
      ),
    );
    setChildren(
      this.element,
      this.header(title, sub),
      h("h3", {}, `Top ${k} stimuli at epoch ${t.epoch}`),
      patches,
      h("h3", {}, "Evolution ", h("small", {}, "top patches at every computed epoch")),
      evolution,
      h("h3", {}, "Nearest neighbours ", h("small", {}, "any run, any epoch")),
      this.neighbourList(neighbours.status === "fulfilled" ? neighbours.value.neighbours : null),
      h("h3", {}, "Importance ", h("small", {}, "classes where its evolution ranks in the top 10 %")),
      this.importanceList(importance.status === "fulfilled" ? importance.value : null),
    );
    evolution.querySelector(".current")?.scrollIntoView({ block: "nearest" });
  }

  private header(title: string, sub: string): HTMLElement {
    return h(
      "header",
      { class: "panel-head" },
      h("div", {}, h("h2", { "data-testid": "neuron-title" }, title), h("div", { class: "sub" }, sub)),
      h("button", { type: "button", class: "close", title: "Close (Esc)", "aria-label": "Close", onclick: () => this.actions.close() }, "×"),
    );
  }

  private neighbourList(list: Neighbour[] | null): HTMLElement {
    if (list === null) return h("p", { class: "muted" }, "Neighbours could not be loaded.");
    if (!list.length) return h("p", { class: "muted" }, "No other neuron state in this space yet.");
    return h(
      "ul",
      { class: "neighbours", "data-testid": "neighbours" },
      ...list.map((n) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", onclick: () => this.actions.selectNeighbour(n), title: "select this neuron" },
            thumbnail(patchUrl(n.snapshot_id, n.neuron_id, 0), "top patch", "nb-thumb"),
            h(
              "span",
              { class: "nb-text" },
              h("b", {}, `${n.layer_name}:${n.channel}`),
              h("span", {}, `${this.data.runName(n.run_id)} · e${n.epoch}`),
            ),
            h("span", { class: "nb-dist" }, fmt(n.distance, 2)),
          ),
        ),
      ),
    );
  }

  private importanceList(list: NeuronImportance[] | null): HTMLElement {
    if (list === null) return h("p", { class: "muted" }, "Importance could not be loaded.");
    const top = list.filter((i) => inTopTenth(i.rank, i.total));
    if (!list.length) return h("p", { class: "muted" }, "No importance computed for this run yet.");
    if (!top.length) return h("p", { class: "muted" }, `Not in the top 10 % for any of ${list.length} computed class stages.`);
    return h(
      "ul",
      { class: "importance-list", "data-testid": "neuron-importance" },
      ...top.map((i) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", title: "colour the map by this ranking", onclick: () => this.actions.colourByImportance(i.importance.id) },
            h("b", {}, i.importance.class_name ?? `class ${i.importance.class_idx}`),
            h("span", {}, ` e${i.importance.epoch_from} → e${i.importance.epoch_to}`),
            h("span", { class: "imp-rank" }, `#${i.rank}${i.total ? ` of ${i.total}` : ""} · I = ${fmt(i.score, 2)}`),
          ),
        ),
      ),
    );
  }
}
