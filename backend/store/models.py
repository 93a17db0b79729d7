"""SQLAlchemy 2 models of ConceptEvo's database (DESIGN.md §3). Schema version: ``schema.SCHEMA_VERSION``.

Conventions:
- timestamps are naive UTC ``datetime``s (``utcnow()``), portable across SQLite and PostgreSQL;
- arrays are little-endian float32/int32 BLOBs packed by :mod:`backend.store.blobs`, never JSON text;
- large BLOB columns are ``deferred``: loading a ``Space`` or ``SpaceSnapshot`` row does not read them
  until the attribute is touched;
- training-health metrics are columns: accuracies/losses on :class:`Snapshot`; coverage, diversity and
  movement on :class:`SpaceSnapshot` (they depend on the space's embedding). No separate metrics table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
"""All job states. ``queued``/``running`` are *active* (``Job.active_key`` set); the others are final."""


def utcnow() -> datetime:
    """The current time as a naive UTC datetime (the form stored in every timestamp column)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of all ConceptEvo tables."""


class SchemaInfo(Base):
    """Single row identifying the database: ``app == "conceptevo"`` and its ``schema_version``."""

    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[int] = mapped_column(Integer)


class Dataset(Base):
    """An image dataset: ``root`` directory (absolute, or relative to the data dir) and its class names."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    root: Mapped[str] = mapped_column(Text)
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    class_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Image(Base):
    """One image of a dataset; ``idx`` is its index in the dataset's fixed order (0..n_images-1)."""

    __tablename__ = "images"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    rel_path: Mapped[str] = mapped_column(Text)
    label: Mapped[int] = mapped_column(Integer)


class Run(Base):
    """A training run: architecture (torchvision name or ``module:factory``) and its checkpoint directory."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    arch: Mapped[str] = mapped_column(String(200))
    checkpoint_dir: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    num_classes: Mapped[int] = mapped_column(Integer)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RunModelKwargs(Base):
    """Keyword arguments a run's architecture is built with besides ``num_classes`` (``add-run --model-kwargs``,
    e.g. ``{"width": 32}`` for a ``module:factory``). A run without a row is built with its checkpoints' own
    ``model_kwargs`` entry, or with none. A table of its own, not a ``runs`` column: no schema migration."""

    __tablename__ = "run_model_kwargs"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Snapshot(Base):
    """One epoch of a run: its checkpoint file and training metrics (any may be unknown → NULL)."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("run_id", "epoch", name="uq_snapshots_run_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    checkpoint_path: Mapped[str] = mapped_column(Text)
    train_loss: Mapped[float | None] = mapped_column(Float)
    train_top1: Mapped[float | None] = mapped_column(Float)
    train_top5: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_top1: Mapped[float | None] = mapped_column(Float)
    val_top5: Mapped[float | None] = mapped_column(Float)


class Layer(Base):
    """A chosen layer of a run's architecture: dotted module ``name``, order ``idx``, channel count."""

    __tablename__ = "layers"
    __table_args__ = (
        UniqueConstraint("run_id", "idx", name="uq_layers_run_idx"),
        UniqueConstraint("run_id", "name", name="uq_layers_run_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    channels: Mapped[int] = mapped_column(Integer)


class Neuron(Base):
    """One channel of one layer. Its id is stable across all snapshots and spaces of the run."""

    __tablename__ = "neurons"
    __table_args__ = (UniqueConstraint("layer_id", "channel", name="uq_neurons_layer_channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("layers.id", ondelete="CASCADE"))
    channel: Mapped[int] = mapped_column(Integer)


class Space(Base):
    """A unified semantic space: base snapshot + dataset + hyper-parameters + fitted 2-D reducer.

    ``params``: ``{"k", "dim", "negatives", "lr", "epochs", "seed", "layers"}``;
    ``reducer``: pickled fitted UMAP; ``image_vectors``: float32 ``n_images × dim``;
    ``covered``: uint8 mask over images used by a base neuron;
    ``stats``: ``{"objective": [per epoch], "rmse", "r2", "rule_error", ...}``.
    """

    __tablename__ = "spaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    base_snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reducer: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    image_vectors: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    covered: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SpaceSnapshot(Base):
    """A snapshot computed in a space, with its whole point cloud in one blob (see ``blobs.pack_points``).

    ``coverage``: fraction of neurons whose vector is defined; ``diversity``: mean differential entropy of the
    embedding dimensions; ``movement``: mean Euclidean distance each neuron moved since the previous computed
    epoch of the same run in this space (NULL for the first one).

    Schema v3 (issue 13): ``stability_cosine`` / ``stability_displacement`` the split-half stability of the
    snapshot's placement (median cosine of the two half placements; median 2-D displacement over the map's
    extent) and ``stable`` (False when either crosses its threshold; NULL = not measured);
    ``tied_neurons`` the ids of neurons whose k stimulus maxima all tie, ``tied_per_layer`` their count per
    layer (layer order). See ``worker/engine/stability.py`` and ``worker/engine/ties.py``.
    """

    __tablename__ = "space_snapshots"
    __table_args__ = (Index("ix_space_snapshots_snapshot", "snapshot_id"),)

    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    coverage: Mapped[float | None] = mapped_column(Float)
    diversity: Mapped[float | None] = mapped_column(Float)
    movement: Mapped[float | None] = mapped_column(Float)
    stability_cosine: Mapped[float | None] = mapped_column(Float)
    stability_displacement: Mapped[float | None] = mapped_column(Float)
    stable: Mapped[bool | None] = mapped_column(Boolean)
    tied_neurons: Mapped[list[int] | None] = mapped_column(JSON)
    tied_per_layer: Mapped[list[int] | None] = mapped_column(JSON)
    n_points: Mapped[int] = mapped_column(Integer, default=0)
    points: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class NeuronState(Base):
    """A neuron at a snapshot in a space: stimuli int32[k], maxima float32[k], vector, 2-D position."""

    __tablename__ = "neuron_states"
    __table_args__ = (
        ForeignKeyConstraint(
            ["space_id", "snapshot_id"],
            ["space_snapshots.space_id", "space_snapshots.snapshot_id"],
            ondelete="CASCADE",
        ),
        Index("ix_neuron_states_space_neuron", "space_id", "neuron_id"),
    )

    space_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    neuron_id: Mapped[int] = mapped_column(ForeignKey("neurons.id", ondelete="CASCADE"), primary_key=True)
    stimuli: Mapped[bytes] = mapped_column(LargeBinary)
    maxima: Mapped[bytes] = mapped_column(LargeBinary)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)


PATCH_PACK_SUFFIX = ".pack"
"""Suffix of a patch *pack* file: the JPEG sprites of many neurons one after another, each found by the byte range
its :class:`PatchSet` row names (since schema v5)."""


class PatchSet(Base):
    """A neuron's k example patches at a snapshot (depend on the stimuli only, not on a space): one row per
    (snapshot, neuron) since schema v6 (before, one row per patch — ten times the rows for the same facts).

    ``boxes`` is ``int32[k, 5]`` little-endian, one ``(image_idx, y0, x0, y1, x1)`` per stimulus rank (0 =
    strongest); a box ``[y0, y1) × [x0, x1)`` is in the image's pixel coordinates (see :func:`.blobs.pack_boxes`).
    ``file`` is the neuron's *sprite* — its k patches as square tiles side by side, tile ``rank`` = the stimulus
    of that rank — as a path relative to the data directory, always written by the worker, never
    client-supplied. With ``byte_offset`` and ``byte_length`` the sprite is those bytes of ``file``, a *pack*
    holding many neurons' sprites one after another; without them it is the whole file.
    """

    __tablename__ = "patch_sets"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True)
    neuron_id: Mapped[int] = mapped_column(ForeignKey("neurons.id", ondelete="CASCADE"), primary_key=True)
    boxes: Mapped[bytes] = mapped_column(LargeBinary)
    file: Mapped[str] = mapped_column(Text)
    byte_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    byte_length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class StagedNeuronState(Base):
    """A :class:`NeuronState` row a running job wrote ahead, in short chunks; invisible to every reader.

    The job's final transaction copies its ``stage`` into ``neuron_states`` in one ``INSERT … SELECT``
    (``writes.publish_staged_snapshot``), so no transaction holds the SQLite write lock for long.
    No foreign keys: a stage is scratch, removed by ``stage`` (or by ``job_id`` once that job stops). No
    space id either: a ``build_space`` job stages its base snapshot before its space row exists.
    """

    __tablename__ = "staged_neuron_states"

    stage: Mapped[str] = mapped_column(String(250), primary_key=True)
    neuron_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    snapshot_id: Mapped[int] = mapped_column(Integer)
    stimuli: Mapped[bytes] = mapped_column(LargeBinary)
    maxima: Mapped[bytes] = mapped_column(LargeBinary)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)


class StagedPatchSet(Base):
    """A :class:`PatchSet` row a running job wrote ahead (see :class:`StagedNeuronState`)."""

    __tablename__ = "staged_patch_sets"

    stage: Mapped[str] = mapped_column(String(250), primary_key=True)
    neuron_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    snapshot_id: Mapped[int] = mapped_column(Integer)
    boxes: Mapped[bytes] = mapped_column(LargeBinary)
    file: Mapped[str] = mapped_column(Text)
    byte_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    byte_length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Importance(Base):
    """An importance computation: run, epochs ``epoch_from → epoch_to``, class, class images used."""

    __tablename__ = "importances"
    __table_args__ = (
        UniqueConstraint("run_id", "epoch_from", "epoch_to", "class_idx", name="uq_importances_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    epoch_from: Mapped[int] = mapped_column(Integer)
    epoch_to: Mapped[int] = mapped_column(Integer)
    class_idx: Mapped[int] = mapped_column(Integer)
    n_images: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ImportanceScore(Base):
    """``score`` = I_n (fraction of class images with S_n(x) > 0); ``mean_s`` = mean of S_n(x) over them."""

    __tablename__ = "importance_scores"
    __table_args__ = (Index("ix_importance_scores_rank", "importance_id", "score"),)

    importance_id: Mapped[int] = mapped_column(
        ForeignKey("importances.id", ondelete="CASCADE"), primary_key=True
    )
    neuron_id: Mapped[int] = mapped_column(ForeignKey("neurons.id", ondelete="CASCADE"), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    mean_s: Mapped[float] = mapped_column(Float)


class Job(Base):
    """A unit of work for a worker (DESIGN.md §5).

    ``dedupe_key`` = sha256 of ``kind`` + canonical params JSON. ``active_key`` equals ``dedupe_key`` while
    the job is queued or running and is NULL once it ends; a UNIQUE index on it makes "an identical job is
    not queued twice" hold even under concurrent enqueuers (NULLs never collide, on SQLite and on PostgreSQL).
    A deferred job (its input not ready yet) waits in ``queued`` until ``not_before``.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claim", "status", "priority", "created_at"),
        Index("ux_jobs_active_key", "active_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str] = mapped_column(String(64), index=True)
    active_key: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    not_before: Mapped[datetime | None] = mapped_column(DateTime)
    """A deferred job is not claimed before this time (NULL: at once); see ``queue.defer``."""
    deferrals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How often the job was deferred (its input was not ready); not counted as attempts."""
