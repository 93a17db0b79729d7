"""Pydantic response (and request) models of the HTTP API; every route declares one, so OpenAPI is complete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _as_utc(value: datetime) -> datetime:
    """Stored timestamps are naive UTC: make them aware so they serialise as RFC 3339 (``...Z``)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: A UTC timestamp, serialised like ``2024-01-01T00:00:00Z``.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class ErrorOut(BaseModel):
    """Every error answer: a human-readable message."""

    detail: str


class HealthOut(BaseModel):
    """Liveness and versions."""

    status: Literal["ok"]
    version: str = Field(description="ConceptEvo package version.")
    schema_version: int = Field(description="Schema version of the open database.")


# --- datasets -------------------------------------------------------------------------------------------------


class DatasetOut(BaseModel):
    """An image dataset."""

    id: int
    name: str
    n_images: int
    class_names: list[str]
    created_at: UtcDatetime


# --- runs, snapshots, layers ----------------------------------------------------------------------------------


class SnapshotOut(BaseModel):
    """One epoch of a run: training metrics and the spaces it has been computed in."""

    id: int
    epoch: int
    train_loss: float | None
    train_top1: float | None
    train_top5: float | None
    val_loss: float | None
    val_top1: float | None
    val_top5: float | None
    computed_in: list[int] = Field(description="Ids of the spaces in which this snapshot's points exist.")


class RunSummaryOut(BaseModel):
    """A training run without its snapshots."""

    id: int
    name: str
    arch: str
    dataset_id: int
    num_classes: int
    notes: str
    created_at: UtcDatetime
    n_snapshots: int


class RunOut(RunSummaryOut):
    """A training run with its snapshots, by epoch."""

    snapshots: list[SnapshotOut]


class LayerOut(BaseModel):
    """A chosen layer of a run's architecture."""

    id: int
    idx: int = Field(description="Order of the layer in the network (the `layer_idx` of the points).")
    name: str = Field(description="Dotted module name.")
    channels: int


class RunNeuronsOut(BaseModel):
    """Every neuron of a run as parallel columns, in (layer index, channel) order."""

    run_id: int
    neuron_id: list[int]
    layer_idx: list[int]
    channel: list[int]


# --- spaces and points ----------------------------------------------------------------------------------------


class SpaceSnapshotOut(BaseModel):
    """A snapshot computed in a space, with its training-health summary."""

    snapshot_id: int
    run_id: int
    epoch: int
    n_points: int
    coverage: float | None
    diversity: float | None
    movement: float | None
    computed_at: UtcDatetime
    stability_cosine: float | None = Field(
        None,
        description="Split-half stability: median cosine between the snapshot placed from two disjoint halves "
        "of the images (null: not measured).",
    )
    stability_displacement: float | None = Field(
        None,
        description="Median 2-D distance between the two half placements, as a share of the map's extent.",
    )
    unstable: bool = Field(
        False,
        description="True when the split-half stability crosses its threshold: positions are unreliable.",
    )
    tied_per_layer: list[int] | None = Field(
        None, description="Neurons whose k stimulus maxima all tie (no concept), counted per layer."
    )


class PlacementFitOut(BaseModel):
    """How well the space's image vectors place neurons (Eq 2), chosen by cross-validation over base neurons."""

    damping: float = Field(description="The ridge λ of the Eq 3 solve, chosen by held-out error.")
    heldout_r2: float = Field(description="R² of held-out base neurons placed by Eq 2 vs their Eq 1 vectors.")
    heldout_cosine: float = Field(
        description="Median cosine of those held-out placements to their Eq 1 vectors."
    )
    base_r2: float | None = Field(None, description="R² of all base neurons placed by Eq 2 (in-sample).")


class SpaceSummaryOut(BaseModel):
    """A unified semantic space without its snapshot list."""

    id: int
    name: str
    base_snapshot_id: int
    base_run_id: int
    base_epoch: int
    dataset_id: int
    params: dict[str, Any]
    created_at: UtcDatetime
    n_snapshots: int


class SpaceOut(SpaceSummaryOut):
    """A unified semantic space, its fitting statistics and every snapshot computed in it."""

    stats: dict[str, Any]
    placement: PlacementFitOut | None = Field(
        None, description="Held-out fit of the placement (null for spaces built before it was measured)."
    )
    snapshots: list[SpaceSnapshotOut]


class PointsJsonOut(BaseModel):
    """The points of one snapshot in one space, column-wise (the JSON twin of the binary format)."""

    space_id: int
    snapshot_id: int
    epoch: int
    n: int
    neuron_id: list[int]
    layer_idx: list[int]
    x: list[float | None] = Field(
        description="null where the position is undefined (NaN in the binary form)."
    )
    y: list[float | None]


class ConceptsJsonOut(BaseModel):
    """Each neuron's dominant stimulus class at one snapshot in one space (the JSON twin of the binary format),
    in the same order as the snapshot's points."""

    space_id: int
    snapshot_id: int
    epoch: int
    n: int
    k: int = Field(description="Stimuli per neuron in the space.")
    class_names: list[str] = Field(description="The space's dataset's class names, indexed by `class_idx`.")
    neuron_id: list[int]
    class_idx: list[int] = Field(
        description="The class most of the neuron's stimuli belong to (ties: the lower index); -1 without stimuli."
    )
    share: list[float] = Field(
        description="That class's count over the neuron's number of stimuli (0 for -1)."
    )


# --- neurons and patches --------------------------------------------------------------------------------------


class NeuronOut(BaseModel):
    """A neuron: one channel of one layer of a run."""

    id: int
    run_id: int
    layer: LayerOut
    channel: int


class PatchBox(BaseModel):
    """A crop box in image pixels: rows ``[y0, y1)``, columns ``[x0, x1)``."""

    y0: int
    x0: int
    y1: int
    x1: int


class PatchOut(BaseModel):
    """A reference to one example patch image (fetch it from ``url``)."""

    snapshot_id: int
    neuron_id: int
    rank: int
    image_idx: int
    box: PatchBox
    url: str


class StimulusOut(BaseModel):
    """The ``rank``-th stimulus of a neuron: an image, its activation maximum, its label and its patch."""

    rank: int
    image_idx: int
    maximum: float
    label: int | None
    patch: PatchOut | None


class NeuronAtSnapshotOut(BaseModel):
    """A neuron at one snapshot in one space: position, stimuli, patches."""

    neuron: NeuronOut
    space_id: int
    snapshot_id: int
    epoch: int
    x: float | None = Field(description="null where the position is undefined.")
    y: float | None
    stimuli: list[StimulusOut]
    tied: bool | None = Field(
        None, description="Its k stimulus maxima all tie: no concept (null where not recorded)."
    )


class TrajectoryPointOut(BaseModel):
    """A neuron's position at one computed epoch (null where undefined)."""

    snapshot_id: int
    epoch: int
    x: float | None
    y: float | None


class TrajectoryOut(BaseModel):
    """A neuron's positions in a space, ordered by epoch."""

    neuron_id: int
    space_id: int
    points: list[TrajectoryPointOut]


class NeighbourOut(BaseModel):
    """A neuron state close to the query in embedding space (any run, any epoch)."""

    neuron_id: int
    run_id: int
    snapshot_id: int
    epoch: int
    layer_idx: int
    layer_name: str
    channel: int
    distance: float = Field(description="Euclidean distance between the embedding vectors.")


class NeighboursOut(BaseModel):
    """The ``k`` nearest neuron states of one neuron at one snapshot, nearest first (itself excluded)."""

    neuron_id: int
    space_id: int
    snapshot_id: int
    k: int
    neighbours: list[NeighbourOut]


# --- importance -----------------------------------------------------------------------------------------------


class ImportanceOut(BaseModel):
    """One importance computation: run, epochs ``epoch_from → epoch_to``, class."""

    id: int
    run_id: int
    epoch_from: int
    epoch_to: int
    class_idx: int
    class_name: str | None
    n_images: int
    created_at: UtcDatetime


class NeuronImportanceOut(BaseModel):
    """A neuron's importance in one computation, and its rank there (1 = most important)."""

    importance: ImportanceOut
    score: float
    mean_s: float
    rank: int
    total: int = Field(description="Neurons in that computation's ranking (`rank / total` ≤ 0.1: top 10 %).")


class ImportanceScoresOut(BaseModel):
    """Every scored neuron of one importance computation, column-wise, best first (for colouring a map)."""

    importance: ImportanceOut
    neuron_id: list[int]
    score: list[float] = Field(description="I_n: fraction of the class's images with S_n(x) > 0.")
    mean_s: list[float] = Field(description="Mean of S_n(x) over the class's images.")
    rank: list[int] = Field(
        description="1 = most important (score, then mean_s, descending; ties by neuron id ascending)."
    )


class RankedNeuronOut(BaseModel):
    """One row of an importance ranking, with the neuron's patches before and after the evolution."""

    rank: int
    neuron_id: int
    layer_idx: int
    layer_name: str
    channel: int
    score: float = Field(description="I_n: fraction of the class's images with S_n(x) > 0.")
    mean_s: float = Field(description="Mean of S_n(x) over the class's images.")
    before: list[PatchOut]
    after: list[PatchOut]
    tied_before: bool | None = Field(
        None,
        description="Its k stimulus maxima all tie at epoch t (no concept there); null where not recorded.",
    )
    tied_after: bool | None = Field(
        None, description="The same at epoch t′: its evolution ends in no concept; null where not recorded."
    )


class ImportanceRankingOut(BaseModel):
    """Neurons sorted by importance (score, then mean_s, descending; ties by neuron id)."""

    importance: ImportanceOut
    total: int
    offset: int
    items: list[RankedNeuronOut]


# --- metrics --------------------------------------------------------------------------------------------------


class EpochMetricsOut(BaseModel):
    """Training-health signals of one epoch."""

    epoch: int
    snapshot_id: int
    train_loss: float | None
    train_top1: float | None
    train_top5: float | None
    val_loss: float | None
    val_top1: float | None
    val_top5: float | None
    computed: bool = Field(description="Whether the snapshot is computed in the space.")
    coverage: float | None
    diversity: float | None
    movement: float | None


class RunMetricsOut(BaseModel):
    """Per-epoch metrics of a run; the space-dependent ones come from ``space_id`` (null when none)."""

    run_id: int
    space_id: int | None
    epochs: list[EpochMetricsOut]


# --- removal --------------------------------------------------------------------------------------------------


class RemovedOut(BaseModel):
    """What ``DELETE`` of a run, dataset or space removed: rows per table and patch files."""

    kind: Literal["run", "dataset", "space"]
    id: int
    name: str
    rows: dict[str, int] = Field(description="Rows deleted per table (tables with none left out).")
    files: int = Field(description="Patch image files removed from the data directory.")


# --- jobs -----------------------------------------------------------------------------------------------------


class JobOut(BaseModel):
    """A job and its progress."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    params: dict[str, Any]
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    priority: int
    attempts: int
    max_attempts: int
    progress: float = Field(description="Fraction done, 0 to 1.")
    message: str = Field(description="What the worker is doing now.")
    worker_id: str | None = Field(
        description="The worker running (or that last ran) the job, by an opaque name that is the same for the "
        "same worker everywhere (`worker-` + 8 hex digits); its host and process stay on the server."
    )
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    heartbeat_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    error: str | None = Field(
        description="Why the job failed. Paths are relative to the server's data folder (others shortened to "
        "`…/name`); the whole text is in the worker's log and `conceptevo jobs list`."
    )
    result: dict[str, Any] | None
