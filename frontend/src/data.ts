/**
 * What the page has loaded from the API, cached by id. Computed points never change, so they are kept
 * (a bounded number of snapshots); lists that grow as the worker computes (spaces, a run's snapshots) are
 * refreshed when a job finishes.
 */

import { api } from "./api/client";
import type { Concepts, Points } from "./api/columns";
import type { Dataset, Layer, Run, RunSummary, Space, SpaceSummary } from "./api/types";

/** A run's neurons: id → layer index and channel, and back. */
export interface NeuronIndex {
  layer: Map<number, number>;
  channel: Map<number, number>;
  byLayerChannel: Map<string, number>;
}

class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly capacity: number) {}
  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value as string);
  }
  delete(key: string): void {
    this.map.delete(key);
  }
}

/** The cached promise of `key`, fetching it on a miss; a failed fetch is forgotten so it can be retried. */
function memo<V>(cache: Lru<Promise<V>>, key: string, fetch: () => Promise<V>): Promise<V> {
  let p = cache.get(key);
  if (!p) {
    p = fetch();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}

export class DataCache {
  spaces: SpaceSummary[] = [];
  runs: RunSummary[] = [];
  datasets: Dataset[] = [];
  private readonly spaceDetail = new Map<number, Space>();
  private readonly runDetail = new Map<number, Run>();
  private readonly layersOf = new Map<number, Promise<Layer[]>>();
  private readonly neuronsOf = new Map<number, Promise<NeuronIndex>>();
  private readonly pointsCache = new Lru<Promise<Points>>(80);
  private readonly conceptsCache = new Lru<Promise<Concepts>>(80);

  /** Reload the lists (spaces, runs, datasets) and the details already loaded. */
  async refresh(): Promise<void> {
    const [spaces, runs, datasets] = await Promise.all([api.spaces(), api.runs(), api.datasets()]);
    this.spaces = spaces;
    this.runs = runs;
    this.datasets = datasets;
    await Promise.all([
      ...[...this.spaceDetail.keys()].map((id) => this.loadSpace(id)),
      ...[...this.runDetail.keys()].map((id) => this.loadRun(id)),
    ]);
  }

  space(id: number): Space | undefined {
    return this.spaceDetail.get(id);
  }

  run(id: number): Run | undefined {
    return this.runDetail.get(id);
  }

  async loadSpace(id: number): Promise<Space> {
    const space = await api.space(id);
    this.spaceDetail.set(id, space);
    return space;
  }

  async loadRun(id: number): Promise<Run> {
    const run = await api.run(id);
    this.runDetail.set(id, run);
    return run;
  }

  layers(runId: number): Promise<Layer[]> {
    let p = this.layersOf.get(runId);
    if (!p) {
      p = api.layers(runId);
      p.catch(() => this.layersOf.delete(runId));
      this.layersOf.set(runId, p);
    }
    return p;
  }

  neurons(runId: number): Promise<NeuronIndex> {
    let p = this.neuronsOf.get(runId);
    if (!p) {
      p = api.runNeurons(runId).then((t) => {
        const index: NeuronIndex = { layer: new Map(), channel: new Map(), byLayerChannel: new Map() };
        t.neuron_id.forEach((id, i) => {
          index.layer.set(id, t.layer_idx[i]);
          index.channel.set(id, t.channel[i]);
          index.byLayerChannel.set(`${t.layer_idx[i]}:${t.channel[i]}`, id);
        });
        return index;
      });
      p.catch(() => this.neuronsOf.delete(runId));
      this.neuronsOf.set(runId, p);
    }
    return p;
  }

  points(spaceId: number, snapshotId: number): Promise<Points> {
    return memo(this.pointsCache, `${spaceId}:${snapshotId}`, () => api.points(spaceId, snapshotId));
  }

  concepts(spaceId: number, snapshotId: number): Promise<Concepts> {
    return memo(this.conceptsCache, `${spaceId}:${snapshotId}`, () => api.concepts(spaceId, snapshotId));
  }

  /** "run epoch N" for a snapshot of a run whose details are loaded, else null. */
  snapshotLabel(snapshotId: number): string | null {
    for (const run of this.runDetail.values()) {
      const snap = run.snapshots.find((s) => s.id === snapshotId);
      if (snap) return `${run.name} epoch ${snap.epoch}`;
    }
    return null;
  }

  runName(id: number): string {
    return this.runs.find((r) => r.id === id)?.name ?? `run ${id}`;
  }

  classNames(datasetId: number): string[] {
    return this.datasets.find((d) => d.id === datasetId)?.class_names ?? [];
  }
}
