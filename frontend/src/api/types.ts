/** Response shapes of the ConceptEvo HTTP API (mirrors backend/api/schemas.py; OpenAPI at /docs). */

export interface Dataset {
  id: number;
  name: string;
  n_images: number;
  class_names: string[];
  created_at: string;
}

export interface Snapshot {
  id: number;
  epoch: number;
  train_loss: number | null;
  train_top1: number | null;
  train_top5: number | null;
  val_loss: number | null;
  val_top1: number | null;
  val_top5: number | null;
  computed_in: number[];
}

export interface RunSummary {
  id: number;
  name: string;
  arch: string;
  dataset_id: number;
  num_classes: number;
  notes: string;
  created_at: string;
  n_snapshots: number;
}

export interface Run extends RunSummary {
  snapshots: Snapshot[];
}

export interface Layer {
  id: number;
  idx: number;
  name: string;
  channels: number;
}

export interface RunNeurons {
  run_id: number;
  neuron_id: number[];
  layer_idx: number[];
  channel: number[];
}

export interface SpaceSnapshot {
  snapshot_id: number;
  run_id: number;
  epoch: number;
  n_points: number;
  coverage: number | null;
  diversity: number | null;
  movement: number | null;
  computed_at: string;
  /** Split-half stability of the placement (issue 13); null where not measured. */
  stability_cosine?: number | null;
  stability_displacement?: number | null;
  /** True when the placement is unstable: positions of this epoch are unreliable. */
  unstable?: boolean;
  /** Neurons whose k stimulus maxima all tie (no concept), per layer. */
  tied_per_layer?: number[] | null;
}

export interface SpaceSummary {
  id: number;
  name: string;
  base_snapshot_id: number;
  base_run_id: number;
  base_epoch: number;
  dataset_id: number;
  params: Record<string, unknown>;
  created_at: string;
  n_snapshots: number;
}

export interface Space extends SpaceSummary {
  stats: Record<string, unknown>;
  snapshots: SpaceSnapshot[];
}

export interface PatchRef {
  snapshot_id: number;
  neuron_id: number;
  rank: number;
  image_idx: number;
  box: { y0: number; x0: number; y1: number; x1: number };
  url: string;
}

export interface NeuronInfo {
  id: number;
  run_id: number;
  layer: Layer;
  channel: number;
}

export interface Stimulus {
  rank: number;
  image_idx: number;
  maximum: number;
  label: number | null;
  patch: PatchRef | null;
}

export interface NeuronAtSnapshot {
  neuron: NeuronInfo;
  space_id: number;
  snapshot_id: number;
  epoch: number;
  x: number | null;
  y: number | null;
  stimuli: Stimulus[];
}

export interface Trajectory {
  neuron_id: number;
  space_id: number;
  points: { snapshot_id: number; epoch: number; x: number | null; y: number | null }[];
}

export interface Neighbour {
  neuron_id: number;
  run_id: number;
  snapshot_id: number;
  epoch: number;
  layer_idx: number;
  layer_name: string;
  channel: number;
  distance: number;
}

export interface Neighbours {
  neuron_id: number;
  space_id: number;
  snapshot_id: number;
  k: number;
  neighbours: Neighbour[];
}

export interface ImportanceInfo {
  id: number;
  run_id: number;
  epoch_from: number;
  epoch_to: number;
  class_idx: number;
  class_name: string | null;
  n_images: number;
  created_at: string;
}

export interface NeuronImportance {
  importance: ImportanceInfo;
  score: number;
  mean_s: number;
  rank: number;
  total?: number;
}

export interface RankedNeuron {
  rank: number;
  neuron_id: number;
  layer_idx: number;
  layer_name: string;
  channel: number;
  score: number;
  mean_s: number;
  before: PatchRef[];
  after: PatchRef[];
  /** Its k stimulus maxima all tie at epoch_from / epoch_to (no concept there); null where not recorded. */
  tied_before?: boolean | null;
  tied_after?: boolean | null;
}

export interface ImportanceRanking {
  importance: ImportanceInfo;
  total: number;
  offset: number;
  items: RankedNeuron[];
}

export interface ImportanceScores {
  importance: ImportanceInfo;
  neuron_id: number[];
  score: number[];
  mean_s: number[];
  rank: number[];
}

export interface EpochMetrics {
  epoch: number;
  snapshot_id: number;
  train_loss: number | null;
  train_top1: number | null;
  train_top5: number | null;
  val_loss: number | null;
  val_top1: number | null;
  val_top5: number | null;
  computed: boolean;
  coverage: number | null;
  diversity: number | null;
  movement: number | null;
}

export interface RunMetrics {
  run_id: number;
  space_id: number | null;
  epochs: EpochMetrics[];
}

export type JobStatus = "queued" | "running" | "done" | "failed" | "cancelled";

export interface Job {
  id: number;
  kind: string;
  params: Record<string, unknown>;
  status: JobStatus;
  priority: number;
  attempts: number;
  max_attempts: number;
  progress: number;
  message: string;
  worker_id: string | null;
  created_at: string;
  started_at: string | null;
  heartbeat_at: string | null;
  finished_at: string | null;
  error: string | null;
  result: Record<string, unknown> | null;
}

export interface Health {
  status: "ok";
  version: string;
  schema_version: number;
}
