"""Read helpers for the API and the worker. Each takes an open Session (``store.session(readonly=True)``).

Simple listings return ORM rows (usable after the session closes; large BLOB columns are deferred and not
loaded); composite answers are frozen dataclasses. Unknown ids raise :class:`NotFoundError`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from backend.store.blobs import unpack_boxes, unpack_f32, unpack_i32, unpack_points
from backend.store.errors import NotComputedError, NotFoundError, StoreError
from backend.store.models import (
    Dataset,
    Image,
    Importance,
    ImportanceScore,
    Layer,
    Neuron,
    NeuronState,
    PatchSet,
    Run,
    RunModelKwargs,
    SchemaInfo,
    Snapshot,
    Space,
    SpaceSnapshot,
)


# --------------------------------------------------------------------------------------------------
# result types
@dataclass(frozen=True)
class PatchRef:
    """One example patch: rank among the stimuli, source image, box ``[y0,y1)×[x0,x1)``, relative file, and the
    byte range of the neuron's sprite in that file when it is a pack (None: the whole file)."""

    rank: int
    image_idx: int
    y0: int
    x0: int
    y1: int
    x1: int
    file: str
    byte_offset: int | None = None
    byte_length: int | None = None


@dataclass(frozen=True)
class NeuronTable:
    """All neurons of a run in (layer idx, channel) order, as parallel arrays."""

    neuron_id: npt.NDArray[np.int64]
    layer_idx: npt.NDArray[np.int32]
    channel: npt.NDArray[np.int32]


@dataclass(frozen=True)
class NeuronDetail:
    """A neuron at one snapshot in one space: identity, stimuli (image index, activation maximum, the image's
    label — None for an image the dataset lacks), position (may be NaN: undefined) and patches by rank."""

    neuron_id: int
    run_id: int
    layer_id: int
    layer_idx: int
    layer_name: str
    layer_channels: int
    channel: int
    snapshot_id: int
    epoch: int
    space_id: int
    stimuli: list[int]
    maxima: list[float]
    labels: list[int | None]
    x: float
    y: float
    patches: list[PatchRef]
    tied: bool | None = None
    """Its k stimulus maxima all tie (no concept; ``worker/engine/ties.py``); None = not recorded."""


@dataclass(frozen=True)
class NeighbourDetail:
    """A neuron state near another one in a space, with its identity (run, layer, channel) and epoch."""

    neuron_id: int
    run_id: int
    snapshot_id: int
    epoch: int
    layer_idx: int
    layer_name: str
    channel: int
    distance: float


@dataclass(frozen=True)
class TrajectoryPoint:
    """Position of a neuron at one computed epoch of its run, in one space."""

    snapshot_id: int
    epoch: int
    x: float
    y: float


@dataclass(frozen=True)
class Neighbour:
    """A neuron state near a query vector (Euclidean distance in the embedding space)."""

    snapshot_id: int
    neuron_id: int
    distance: float


@dataclass(frozen=True)
class ImportanceRow:
    """One neuron's importance for an evolution, with its patches before (epoch t) and after (epoch t')."""

    neuron_id: int
    layer_idx: int
    layer_name: str
    channel: int
    score: float
    mean_s: float
    patches_before: list[PatchRef]
    patches_after: list[PatchRef]
    tied_before: bool | None = None
    tied_after: bool | None = None


@dataclass(frozen=True)
class ImportanceRanking:
    """Importance of every neuron's evolution ``epoch_from → epoch_to`` for ``class_idx``, best first."""

    importance_id: int
    run_id: int
    epoch_from: int
    epoch_to: int
    class_idx: int
    n_images: int
    rows: list[ImportanceRow]
    total: int = 0
    offset: int = 0
    snapshot_from: int | None = None
    snapshot_to: int | None = None


@dataclass(frozen=True)
class ImportanceScores:
    """Every scored neuron of one importance computation, best first (see :func:`ranking_of` for the order).

    ``rank`` is 1-based: ``rank[i] == i + 1``; spelled out so that a client can index by neuron.
    """

    importance_id: int
    neuron_id: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]
    mean_s: npt.NDArray[np.float64]
    rank: npt.NDArray[np.int64]


@dataclass(frozen=True)
class NeuronImportance:
    """A neuron's score in one importance computation, its 1-based rank there and the ranking's length."""

    importance: Importance
    score: float
    mean_s: float
    rank: int
    total: int


@dataclass(frozen=True)
class SnapshotConcepts:
    """The dominant stimulus class of every neuron of a snapshot in a space, in the points blob's order.

    ``class_idx[i]`` is the class most of neuron ``neuron_id[i]``'s stimuli belong to (ties → the lower class
    index; -1 when it has no stimuli with a known label), ``share[i]`` that class's count over the neuron's
    number of stimuli (0 for -1). ``k`` is the space's stimuli per neuron.
    """

    space_id: int
    snapshot_id: int
    epoch: int
    k: int
    class_names: list[str]
    neuron_id: npt.NDArray[np.int32]
    class_idx: npt.NDArray[np.int32]
    share: npt.NDArray[np.float32]


@dataclass(frozen=True)
class SnapshotMetrics:
    """Training-health metrics of one snapshot; space metrics are None where not computed in the space."""

    snapshot_id: int
    epoch: int
    train_loss: float | None
    train_top1: float | None
    train_top5: float | None
    val_loss: float | None
    val_top1: float | None
    val_top5: float | None
    computed: bool
    coverage: float | None
    diversity: float | None
    movement: float | None


# --------------------------------------------------------------------------------------------------
# listings
def schema_version(session: Session) -> int:
    """The open database's schema version (:class:`StoreError` if it has no ``schema_info`` row)."""
    version = session.scalar(select(SchemaInfo.schema_version).where(SchemaInfo.id == 1))
    if version is None:
        raise StoreError("the database has no schema_info row")
    return int(version)


def list_datasets(session: Session) -> list[Dataset]:
    """All datasets by id."""
    return list(session.scalars(select(Dataset).order_by(Dataset.id)).all())


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    """The dataset with this id (NotFoundError otherwise)."""
    ds = session.get(Dataset, dataset_id)
    if ds is None:
        raise NotFoundError(f"dataset {dataset_id} not found")
    return ds


def list_images(session: Session, dataset_id: int, offset: int = 0, limit: int | None = None) -> list[Image]:
    """Images of a dataset in index order (a window of them with ``offset``/``limit``)."""
    get_dataset(session, dataset_id)
    stmt = select(Image).where(Image.dataset_id == dataset_id).order_by(Image.idx).offset(max(0, offset))
    if limit is not None:
        stmt = stmt.limit(max(0, limit))
    return list(session.scalars(stmt).all())


def get_image(session: Session, dataset_id: int, idx: int) -> Image:
    """One image by dataset and index (NotFoundError otherwise)."""
    img = session.get(Image, (dataset_id, idx))
    if img is None:
        raise NotFoundError(f"image {idx} of dataset {dataset_id} not found")
    return img


def list_runs(session: Session) -> list[Run]:
    """All runs by id."""
    return list(session.scalars(select(Run).order_by(Run.id)).all())


def get_run(session: Session, run_id: int) -> Run:
    """The run with this id (NotFoundError otherwise)."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id} not found")
    return run


def find_run(session: Session, name: str) -> Run:
    """The run with this name (NotFoundError otherwise)."""
    run = session.scalars(select(Run).where(Run.name == name)).first()
    if run is None:
        raise NotFoundError(f"run {name!r} not found")
    return run


def run_model_kwargs(session: Session, run_id: int) -> dict[str, Any] | None:
    """The keyword arguments run ``run_id`` was registered with (``add-run --model-kwargs``), or None (then its
    checkpoints' own ``model_kwargs`` entry applies)."""
    row = session.get(RunModelKwargs, run_id)
    return None if row is None else dict(row.kwargs)


def snapshot_counts(session: Session) -> dict[int, int]:
    """Number of snapshots of each run id (runs without snapshots are absent)."""
    rows = session.execute(select(Snapshot.run_id, func.count()).group_by(Snapshot.run_id)).all()
    return {int(run_id): int(n) for run_id, n in rows}


def class_count(session: Session, run: Run) -> int:
    """The run's number of classes: ``num_classes``, or its dataset's class names when that is unknown (≤ 0)."""
    if run.num_classes > 0:
        return run.num_classes
    names = session.scalar(select(Dataset.class_names).where(Dataset.id == run.dataset_id)) or []
    return len(names)


def class_names_of_runs(session: Session, run_ids: Iterable[int]) -> dict[int, list[str]]:
    """The class names of each run's dataset, by run id."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Run.id, Dataset.class_names).join(Dataset, Dataset.id == Run.dataset_id).where(Run.id.in_(ids))
    ).all()
    return {int(rid): list(names or []) for rid, names in rows}


def list_snapshots(session: Session, run_id: int) -> list[Snapshot]:
    """Snapshots of a run by epoch."""
    get_run(session, run_id)
    return list(session.scalars(select(Snapshot).where(Snapshot.run_id == run_id).order_by(Snapshot.epoch)))


def get_snapshot(session: Session, snapshot_id: int) -> Snapshot:
    """The snapshot with this id (NotFoundError otherwise)."""
    snap = session.get(Snapshot, snapshot_id)
    if snap is None:
        raise NotFoundError(f"snapshot {snapshot_id} not found")
    return snap


def snapshot_epochs(session: Session, run_id: int) -> set[int]:
    """The epochs of a run that have a snapshot (empty for an unknown run)."""
    return set(session.scalars(select(Snapshot.epoch).where(Snapshot.run_id == run_id)))


def spaces_of_snapshots(session: Session, snapshot_ids: Iterable[int]) -> dict[int, list[int]]:
    """For each snapshot id, the ascending ids of the spaces it is computed in (``[]`` for none)."""
    ids = list(snapshot_ids)
    out: dict[int, list[int]] = {sid: [] for sid in ids}
    if not ids:
        return out
    rows = session.execute(
        select(SpaceSnapshot.snapshot_id, SpaceSnapshot.space_id)
        .where(SpaceSnapshot.snapshot_id.in_(ids))
        .order_by(SpaceSnapshot.snapshot_id, SpaceSnapshot.space_id)
    ).all()
    for sid, space_id in rows:
        out[sid].append(space_id)
    return out


def find_snapshot(session: Session, run_id: int, epoch: int) -> Snapshot:
    """The snapshot of ``run_id`` at ``epoch`` (NotFoundError otherwise)."""
    snap = session.scalars(select(Snapshot).where(Snapshot.run_id == run_id, Snapshot.epoch == epoch)).first()
    if snap is None:
        raise NotFoundError(f"run {run_id} has no snapshot at epoch {epoch}")
    return snap


def list_spaces(session: Session) -> list[Space]:
    """All spaces by id (reducer / image vectors are not loaded)."""
    return list(session.scalars(select(Space).order_by(Space.id)).all())


def get_space(session: Session, space_id: int) -> Space:
    """The space with this id (NotFoundError otherwise). Its blobs load when touched in the session."""
    space = session.get(Space, space_id)
    if space is None:
        raise NotFoundError(f"space {space_id} not found")
    return space


def find_space(session: Session, name: str) -> Space | None:
    """The space with this name, or None."""
    return session.scalars(select(Space).where(Space.name == name)).first()


def space_summaries(session: Session) -> list[tuple[Space, Snapshot, int]]:
    """Every space by id with its base snapshot and its number of computed snapshots."""
    counts = dict(
        session.execute(select(SpaceSnapshot.space_id, func.count()).group_by(SpaceSnapshot.space_id)).all()
    )
    rows = session.execute(
        select(Space, Snapshot).join(Snapshot, Snapshot.id == Space.base_snapshot_id).order_by(Space.id)
    ).all()
    return [(space, base, int(counts.get(space.id, 0))) for space, base in rows]


def list_space_snapshots(session: Session, space_id: int) -> list[tuple[SpaceSnapshot, Snapshot]]:
    """Snapshots computed in a space, with their snapshot rows, by run then epoch (points not loaded)."""
    get_space(session, space_id)
    rows = session.execute(
        select(SpaceSnapshot, Snapshot)
        .join(Snapshot, SpaceSnapshot.snapshot_id == Snapshot.id)
        .where(SpaceSnapshot.space_id == space_id)
        .order_by(Snapshot.run_id, Snapshot.epoch)
    ).all()
    return [(ss, snap) for ss, snap in rows]


def list_layers(session: Session, run_id: int) -> list[Layer]:
    """Layers of a run in order (empty until the run's architecture was inspected)."""
    get_run(session, run_id)
    return list(session.scalars(select(Layer).where(Layer.run_id == run_id).order_by(Layer.idx)).all())


def run_neurons(session: Session, run_id: int) -> NeuronTable:
    """Every neuron of a run, ordered by layer index then channel (the engine's order)."""
    get_run(session, run_id)
    rows = session.execute(
        select(Neuron.id, Layer.idx, Neuron.channel)
        .join(Layer, Neuron.layer_id == Layer.id)
        .where(Layer.run_id == run_id)
        .order_by(Layer.idx, Neuron.channel)
    ).all()
    # np.fromiter over the flattened tuples: np.array over SQLAlchemy Row objects takes ~25x longer.
    arr = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=3 * len(rows)).reshape(-1, 3)
    return NeuronTable(arr[:, 0].copy(), arr[:, 1].astype(np.int32), arr[:, 2].astype(np.int32))


# --------------------------------------------------------------------------------------------------
# space contents
def snapshot_vectors(
    session: Session, space_id: int, snapshot_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
    """``(neuron_ids, vectors (n, dim), xy (n, 2))`` of a snapshot in a space, by neuron id, or None."""
    rows = session.execute(
        select(NeuronState.neuron_id, NeuronState.vector, NeuronState.x, NeuronState.y)
        .where(NeuronState.space_id == space_id, NeuronState.snapshot_id == snapshot_id)
        .order_by(NeuronState.neuron_id)
    ).all()
    if not rows:
        return None
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vec = unpack_f32(b"".join(r[1] for r in rows)).reshape(len(rows), -1)
    xy = np.array([(r[2], r[3]) for r in rows], dtype=np.float32)
    return ids, vec, xy


def previous_computed_snapshot(session: Session, space_id: int, snapshot_id: int) -> Snapshot | None:
    """The latest snapshot of the same run, at an earlier epoch, already computed in this space (or None).

    The worker uses it to compute ``movement``.
    """
    snap = get_snapshot(session, snapshot_id)
    return session.scalars(
        select(Snapshot)
        .join(SpaceSnapshot, SpaceSnapshot.snapshot_id == Snapshot.id)
        .where(
            SpaceSnapshot.space_id == space_id,
            Snapshot.run_id == snap.run_id,
            Snapshot.epoch < snap.epoch,
        )
        .order_by(Snapshot.epoch.desc())
        .limit(1)
    ).first()


def next_computed_snapshot(session: Session, space_id: int, snapshot_id: int) -> Snapshot | None:
    """The earliest snapshot of the same run, at a later epoch, already computed in this space (or None).

    Epochs may be computed in any order (several workers); the worker refreshes this one's ``movement``.
    """
    snap = get_snapshot(session, snapshot_id)
    return session.scalars(
        select(Snapshot)
        .join(SpaceSnapshot, SpaceSnapshot.snapshot_id == Snapshot.id)
        .where(
            SpaceSnapshot.space_id == space_id,
            Snapshot.run_id == snap.run_id,
            Snapshot.epoch > snap.epoch,
        )
        .order_by(Snapshot.epoch)
        .limit(1)
    ).first()


def _patch_refs(session: Session, snapshot_id: int, neuron_ids: list[int]) -> dict[int, list[PatchRef]]:
    out: dict[int, list[PatchRef]] = {n: [] for n in neuron_ids}
    for i in range(0, len(neuron_ids), 500):
        chunk = neuron_ids[i : i + 500]
        for row in session.scalars(
            select(PatchSet).where(PatchSet.snapshot_id == snapshot_id, PatchSet.neuron_id.in_(chunk))
        ):
            out[row.neuron_id] = _patch_set_refs(row)
    return out


def patches_of(session: Session, snapshot_id: int, neuron_id: int) -> list[PatchRef]:
    """A neuron's patches at a snapshot, by rank (empty if none were made); an unknown neuron or snapshot is a
    :class:`NotFoundError` (patches do not depend on a space)."""
    get_neuron(session, neuron_id)
    get_snapshot(session, snapshot_id)
    return _patch_refs(session, snapshot_id, [neuron_id])[neuron_id]


def get_patch(session: Session, snapshot_id: int, neuron_id: int, rank: int) -> PatchRef:
    """One patch by (snapshot, neuron, rank) (NotFoundError otherwise) — the API serves ``file`` from it."""
    row = session.get(PatchSet, (snapshot_id, neuron_id))
    refs = _patch_set_refs(row) if row is not None else []
    if not 0 <= rank < len(refs):
        raise NotFoundError(f"no patch {rank} for neuron {neuron_id} at snapshot {snapshot_id}")
    return refs[rank]


def _patch_set_refs(row: PatchSet) -> list[PatchRef]:
    """A patch set row as one :class:`PatchRef` per rank."""
    return [
        PatchRef(rank, image_idx, y0, x0, y1, x1, row.file, row.byte_offset, row.byte_length)
        for rank, (image_idx, y0, x0, y1, x1) in enumerate(unpack_boxes(row.boxes).tolist())
    ]


def get_neuron(session: Session, neuron_id: int) -> tuple[Neuron, Layer]:
    """A neuron and its layer (NotFoundError otherwise)."""
    row = session.execute(
        select(Neuron, Layer).join(Layer, Neuron.layer_id == Layer.id).where(Neuron.id == neuron_id)
    ).first()
    if row is None:
        raise NotFoundError(f"neuron {neuron_id} not found")
    return row[0], row[1]


def _neuron_identity(session: Session, neuron_id: int) -> tuple[int, int, str, int]:
    row = session.execute(
        select(Layer.run_id, Layer.idx, Layer.name, Neuron.channel)
        .join(Layer, Neuron.layer_id == Layer.id)
        .where(Neuron.id == neuron_id)
    ).first()
    if row is None:
        raise NotFoundError(f"neuron {neuron_id} not found")
    return int(row[0]), int(row[1]), str(row[2]), int(row[3])


def not_computed(session: Session, space_id: int, snapshot_id: int) -> NotComputedError | None:
    """The error for a snapshot not computed in a space — None when it is computed; an unknown space or
    snapshot raises :class:`NotFoundError` naming it (the space first)."""
    get_space(session, space_id)
    snapshot = get_snapshot(session, snapshot_id)
    if session.get(SpaceSnapshot, (space_id, snapshot_id)) is not None:
        return None
    return NotComputedError(
        f"snapshot {snapshot.id} (run {snapshot.run_id}, epoch {snapshot.epoch}) is not computed in space "
        f"{space_id}",
        space_id,
        snapshot_id,
    )


def _state(
    session: Session, space_id: int, snapshot_id: int, neuron_id: int, run_id: int | None
) -> NeuronState:
    """The state of (space, snapshot, neuron), or the NotFoundError that says why there is none: an unknown space
    or snapshot, a snapshot of another run than ``run_id`` (when given), a snapshot not computed in the space
    (:class:`NotComputedError`), or a neuron the computation left out."""
    state = session.get(NeuronState, (space_id, snapshot_id, neuron_id))
    if state is not None:
        return state
    get_space(session, space_id)
    snapshot = get_snapshot(session, snapshot_id)
    if run_id is not None and snapshot.run_id != run_id:
        raise NotFoundError(
            f"neuron {neuron_id} belongs to run {run_id}, not to run {snapshot.run_id} of snapshot {snapshot_id}"
        )
    missing = not_computed(session, space_id, snapshot_id)
    if missing is not None:
        raise missing
    raise NotFoundError(f"neuron {neuron_id} has no state in space {space_id} at snapshot {snapshot_id}")


def points_blob(session: Session, space_id: int, snapshot_id: int) -> tuple[bytes, int]:
    """The packed points (see ``blobs.pack_points``) of (space, snapshot) and the snapshot's epoch; NotFoundError (or
    :class:`NotComputedError`) when there are none."""
    row = session.execute(
        select(SpaceSnapshot.points, Snapshot.epoch)
        .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
        .where(SpaceSnapshot.space_id == space_id, SpaceSnapshot.snapshot_id == snapshot_id)
    ).first()
    if row is None:
        missing = not_computed(session, space_id, snapshot_id)
        raise missing or NotFoundError(f"snapshot {snapshot_id} has no points in space {space_id}")
    return bytes(row[0]), int(row[1])


def neuron_detail(session: Session, neuron_id: int, snapshot_id: int, space_id: int) -> NeuronDetail:
    """A neuron at a snapshot in a space: layer, channel, stimuli with maxima and labels, position, patches.

    NotFoundError for an unknown neuron, space or snapshot, a snapshot of another run, or one not computed in the
    space (:class:`NotComputedError`).
    """
    neuron, layer = get_neuron(session, neuron_id)
    state = _state(session, space_id, snapshot_id, neuron_id, layer.run_id)
    epoch = session.scalar(select(Snapshot.epoch).where(Snapshot.id == snapshot_id))
    dataset_id = session.scalar(select(Space.dataset_id).where(Space.id == space_id))
    stimuli = unpack_i32(state.stimuli).tolist()
    maxima = unpack_f32(state.maxima).tolist()
    labels: dict[int, int] = {}
    if stimuli:
        labels = dict(
            session.execute(
                select(Image.idx, Image.label).where(Image.dataset_id == dataset_id, Image.idx.in_(stimuli))
            ).all()
        )
    return NeuronDetail(
        neuron_id=neuron.id,
        run_id=layer.run_id,
        layer_id=layer.id,
        layer_idx=layer.idx,
        layer_name=layer.name,
        layer_channels=layer.channels,
        channel=neuron.channel,
        snapshot_id=snapshot_id,
        epoch=int(epoch or 0),
        space_id=space_id,
        stimuli=stimuli,
        maxima=maxima,
        labels=[labels.get(img) for img in stimuli],
        x=state.x,
        y=state.y,
        patches=_patch_refs(session, snapshot_id, [neuron_id])[neuron_id],
        tied=_is_tied(session, space_id, snapshot_id, neuron_id),
    )


def tied_neurons(session: Session, snapshot_ids: Iterable[int]) -> set[int]:
    """Neurons flagged tied (``worker/engine/ties.py``) at any of the snapshots, in any space that computed them.

    Ties depend on a snapshot's stimuli only, so every space computing it agrees; snapshots computed before
    schema v3 contribute nothing.
    """
    return {int(n) for ids in _tie_records(session, snapshot_ids) for n in ids}


def _tie_records(session: Session, snapshot_ids: Iterable[int]) -> list[list[int]]:
    """The recorded tied-neuron lists of the snapshots, one per space that computed one (none recorded before
    schema v3)."""
    rows = session.scalars(
        select(SpaceSnapshot.tied_neurons).where(SpaceSnapshot.snapshot_id.in_(list(snapshot_ids)))
    )
    return [ids for ids in rows if ids is not None]


def _recorded_ties(session: Session, snapshot_id: int | None) -> set[int] | None:
    """The neurons flagged tied at the snapshot by any space that computed it, or None where no computation
    recorded ties (not computed in a space, or before schema v3)."""
    recorded = _tie_records(session, [snapshot_id]) if snapshot_id is not None else []
    return {int(n) for ids in recorded for n in ids} if recorded else None


def _is_tied(session: Session, space_id: int, snapshot_id: int, neuron_id: int) -> bool | None:
    """Whether the snapshot's computation flagged the neuron's stimuli as tied (None: not recorded, schema < 3)."""
    tied = session.scalar(
        select(SpaceSnapshot.tied_neurons).where(
            SpaceSnapshot.space_id == space_id, SpaceSnapshot.snapshot_id == snapshot_id
        )
    )
    return None if tied is None else neuron_id in set(tied)


def trajectory(session: Session, space_id: int, neuron_id: int) -> list[TrajectoryPoint]:
    """The neuron's 2-D position at every epoch of its run computed in the space, by epoch (NaN: undefined)."""
    _neuron_identity(session, neuron_id)
    get_space(session, space_id)
    rows = session.execute(
        select(NeuronState.snapshot_id, Snapshot.epoch, NeuronState.x, NeuronState.y)
        .join(Snapshot, NeuronState.snapshot_id == Snapshot.id)
        .where(NeuronState.space_id == space_id, NeuronState.neuron_id == neuron_id)
        .order_by(Snapshot.epoch)
    ).all()
    return [TrajectoryPoint(int(s), int(e), float(x), float(y)) for s, e, x, y in rows]


def neighbours_of(
    session: Session, space_id: int, snapshot_id: int, neuron_id: int, k: int
) -> list[NeighbourDetail]:
    """The ``k`` neuron states of the space nearest to (snapshot, neuron) in embedding space, itself excluded,
    nearest first (ties by snapshot id, then neuron id; :func:`nearest_neighbours`); none when its vector is
    undefined. NotFoundError as :func:`neuron_detail` (any run's snapshot may be asked about)."""
    get_neuron(session, neuron_id)
    state = _state(session, space_id, snapshot_id, neuron_id, None)
    vector = unpack_f32(state.vector)
    found: list[Neighbour] = []
    if np.isfinite(vector).all():
        found = [
            n
            for n in nearest_neighbours(session, space_id, vector, k + 1)
            if (n.snapshot_id, n.neuron_id) != (snapshot_id, neuron_id)
        ][:k]
    info = {
        nid: (run_id, lidx, lname, ch)
        for nid, run_id, lidx, lname, ch in session.execute(
            select(Neuron.id, Layer.run_id, Layer.idx, Layer.name, Neuron.channel)
            .join(Layer, Layer.id == Neuron.layer_id)
            .where(Neuron.id.in_(sorted({n.neuron_id for n in found})))
        ).all()
    }
    epochs = dict(
        session.execute(
            select(Snapshot.id, Snapshot.epoch).where(Snapshot.id.in_(sorted({n.snapshot_id for n in found})))
        ).all()
    )
    return [
        NeighbourDetail(
            neuron_id=n.neuron_id,
            run_id=info[n.neuron_id][0],
            snapshot_id=n.snapshot_id,
            epoch=epochs[n.snapshot_id],
            layer_idx=info[n.neuron_id][1],
            layer_name=info[n.neuron_id][2],
            channel=info[n.neuron_id][3],
            distance=n.distance,
        )
        for n in found
        if n.neuron_id in info and n.snapshot_id in epochs
    ]


# --------------------------------------------------------------------------------------------------
# concept labels: the dominant class of each neuron's stimuli
_LABELS_CACHE: OrderedDict[tuple[str, int, int], npt.NDArray[np.int32]] = OrderedDict()
_LABELS_LOCK = threading.Lock()
_LABELS_MAX_DATASETS = 4

#: Upper bound of the (neurons × classes) count matrix built at once; larger snapshots are counted in chunks
#: so that 100k neurons × 1,000 classes never needs gigabytes.
_MAX_COUNT_CELLS = 1 << 22


def dataset_labels(session: Session, dataset_id: int, n_images: int) -> npt.NDArray[np.int32]:
    """The label of every image of a dataset as an array indexed by image idx (-1 where no image has the idx).

    Cached per (database, dataset, image count): a registered dataset's images never change (registering
    the same name with other images is refused), so the ``images`` table is read once per process.

    Args:
        session: an open session.
        dataset_id: the dataset.
        n_images: its ``Dataset.n_images`` (part of the cache key, and the array's length).

    Returns:
        int32 array of length ``n_images`` (or longer, if some idx is ≥ n_images).
    """
    key = (str(session.get_bind().engine.url), dataset_id, n_images)
    with _LABELS_LOCK:
        hit = _LABELS_CACHE.get(key)
        if hit is not None:
            _LABELS_CACHE.move_to_end(key)
            return hit
    rows = _driver_rows(session, select(Image.idx, Image.label).where(Image.dataset_id == dataset_id))
    pairs = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=2 * len(rows)).reshape(-1, 2)
    size = max(n_images, int(pairs[:, 0].max()) + 1 if len(pairs) else 0)
    labels = np.full(size, -1, dtype=np.int32)
    labels[pairs[:, 0]] = pairs[:, 1]
    labels.setflags(write=False)  # shared by every caller through the cache
    with _LABELS_LOCK:
        _LABELS_CACHE[key] = labels
        while len(_LABELS_CACHE) > _LABELS_MAX_DATASETS:
            _LABELS_CACHE.popitem(last=False)
    return labels


def dominant_labels(
    lengths: npt.NDArray[np.integer], stimulus_labels: npt.NDArray[np.integer], n_classes: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """For rows of variable length laid end to end, the most frequent label of each row and its share.

    Args:
        lengths: (n,) number of stimuli of each row; ``stimulus_labels`` holds ``lengths.sum()`` values.
        stimulus_labels: each stimulus's class, row after row; values outside ``0..n_classes-1`` (an unknown
            image) count in the row's length but for no class.
        n_classes: number of classes.

    Returns:
        ``(class_idx int32 (n,), share float32 (n,))``: ties go to the lower class index (``argmax`` takes the
        first maximum); a row with no counted stimulus gets class -1 and share 0.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    labels = np.asarray(stimulus_labels, dtype=np.int64)
    n = len(lengths)
    bins = n_classes + 1  # the last bin collects unknown labels, so they never win
    labels = np.where((labels >= 0) & (labels < n_classes), labels, n_classes)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    best = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    step = max(1, _MAX_COUNT_CELLS // bins)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        rows = np.repeat(np.arange(hi - lo, dtype=np.int64), lengths[lo:hi])
        counts = np.bincount(
            rows * bins + labels[offsets[lo] : offsets[hi]], minlength=(hi - lo) * bins
        ).reshape(hi - lo, bins)[:, :n_classes]
        best[lo:hi] = counts.argmax(axis=1) if n_classes else 0
        count[lo:hi] = counts.max(axis=1) if n_classes else 0
    empty = count == 0
    share = np.divide(count, lengths, out=np.zeros(n, dtype=np.float64), where=~empty)
    return np.where(empty, -1, best).astype(np.int32), share.astype(np.float32)


def snapshot_concepts(session: Session, space_id: int, snapshot_id: int) -> SnapshotConcepts | None:
    """Each neuron's dominant stimulus class (see :class:`SnapshotConcepts`), in the order of the packed
    ``points`` blob of (space, snapshot); None if the snapshot is not computed in the space.

    Vectorised: one read of the stimuli blobs, one label array per dataset (cached), one ``bincount``.
    """
    row = session.execute(
        select(
            SpaceSnapshot.points,
            Snapshot.epoch,
            Space.params,
            Dataset.id,
            Dataset.n_images,
            Dataset.class_names,
        )
        .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
        .join(Space, Space.id == SpaceSnapshot.space_id)
        .join(Dataset, Dataset.id == Space.dataset_id)
        .where(SpaceSnapshot.space_id == space_id, SpaceSnapshot.snapshot_id == snapshot_id)
    ).first()
    if row is None:
        return None
    points, epoch, params, dataset_id, n_images, class_names = row
    order = unpack_points(points).neuron_id
    labels = dataset_labels(session, dataset_id, n_images)
    state_ids, lengths, stimuli = _stimuli_by_neuron(session, space_id, snapshot_id)
    valid = (stimuli >= 0) & (stimuli < len(labels))
    stimulus_labels = np.where(valid, labels[np.where(valid, stimuli, 0)], -1)
    names = list(class_names or [])
    best, share = dominant_labels(lengths, stimulus_labels, len(names))
    # Neuron states come sorted by neuron id; the points blob has its own order: map one onto the other.
    class_idx = np.full(len(order), -1, dtype=np.int32)
    shares = np.zeros(len(order), dtype=np.float32)
    if len(state_ids):
        pos = np.searchsorted(state_ids, order).clip(max=len(state_ids) - 1)
        found = state_ids[pos] == order
        class_idx[found] = best[pos[found]]
        shares[found] = share[pos[found]]
    k = (params or {}).get("k")
    return SnapshotConcepts(
        space_id=space_id,
        snapshot_id=snapshot_id,
        epoch=int(epoch),
        k=int(k) if isinstance(k, int) else int(lengths.max(initial=0)),
        class_names=names,
        neuron_id=order,
        class_idx=class_idx,
        share=shares,
    )


def _stimuli_by_neuron(
    session: Session, space_id: int, snapshot_id: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``(neuron ids ascending, stimuli per neuron, all stimuli end to end)`` of (space, snapshot)."""
    rows = _driver_rows(
        session,
        select(NeuronState.neuron_id, NeuronState.stimuli)
        .where(NeuronState.space_id == space_id, NeuronState.snapshot_id == snapshot_id)
        .order_by(NeuronState.neuron_id),
    )
    ids = np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=len(rows))
    blobs = list(map(itemgetter(1), rows))
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs)) // 4
    return ids, lengths, unpack_i32(b"".join(blobs))


def _driver_rows(session: Session, stmt: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of a plain select (no expanding ``IN``) as the DB-API driver returns them, in the session's
    transaction. For 100k small rows SQLAlchemy's per-row objects cost as much again as the read itself;
    blobs come back as bytes-like objects (``bytes``, or ``memoryview`` on psycopg2)."""
    conn = session.connection()
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.params
    args = [params[key] for key in compiled.positiontup or ()] if compiled.positional else params
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


# --------------------------------------------------------------------------------------------------
# nearest neighbours, cached per (database, space) and validated by the space's computed-snapshot token
_NN_CACHE: OrderedDict[tuple[str, int], tuple[Any, npt.NDArray[np.int64], npt.NDArray[np.float32]]] = (
    OrderedDict()
)
_NN_LOCK = threading.Lock()
_NN_MAX_SPACES = 4


def invalidate_space_cache(space_id: int | None = None) -> None:
    """Drop cached neighbour matrices (of one space, or all). Writers call this; other processes notice a
    changed space through the validation token instead."""
    with _NN_LOCK:
        for key in [k for k in _NN_CACHE if space_id is None or k[1] == space_id]:
            del _NN_CACHE[key]


def _space_matrix(session: Session, space_id: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    token = tuple(
        session.execute(
            select(func.count(), func.max(SpaceSnapshot.computed_at), func.sum(SpaceSnapshot.n_points)).where(
                SpaceSnapshot.space_id == space_id
            )
        ).one()
    )
    key = (str(session.get_bind().engine.url), space_id)
    with _NN_LOCK:
        hit = _NN_CACHE.get(key)
        if hit is not None and hit[0] == token:
            _NN_CACHE.move_to_end(key)
            return hit[1], hit[2]
    rows = session.execute(
        select(NeuronState.snapshot_id, NeuronState.neuron_id, NeuronState.vector)
        .where(NeuronState.space_id == space_id)
        .order_by(NeuronState.snapshot_id, NeuronState.neuron_id)
    ).all()
    ids = np.array([(r[0], r[1]) for r in rows], dtype=np.int64).reshape(-1, 2)
    mat = (
        unpack_f32(b"".join(r[2] for r in rows)).reshape(len(rows), -1)
        if rows
        else np.zeros((0, 0), np.float32)
    )
    with _NN_LOCK:
        _NN_CACHE[key] = (token, ids, mat)
        _NN_CACHE.move_to_end(key)
        while len(_NN_CACHE) > _NN_MAX_SPACES:
            _NN_CACHE.popitem(last=False)
    return ids, mat


def nearest_neighbours(
    session: Session, space_id: int, vector: npt.ArrayLike, k: int = 10
) -> list[Neighbour]:
    """The ``k`` neuron states (any snapshot) of the space closest to ``vector``, nearest first.

    Ties break by (snapshot id, neuron id). States with non-finite vectors are ignored.
    """
    get_space(session, space_id)
    ids, mat = _space_matrix(session, space_id)
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if len(ids) == 0 or k <= 0:
        return []
    if mat.shape[1] != q.shape[0]:
        raise ValueError(
            f"space {space_id}: query vector has {q.shape[0]} dims, the space has {mat.shape[1]}"
        )
    d = np.sqrt(((mat - q[None, :]) ** 2).sum(axis=1, dtype=np.float64))
    d[~np.isfinite(d)] = np.inf
    order = np.lexsort((ids[:, 1], ids[:, 0], d))[: min(k, len(d))]
    return [Neighbour(int(ids[i, 0]), int(ids[i, 1]), float(d[i])) for i in order if np.isfinite(d[i])]


# --------------------------------------------------------------------------------------------------
# importance and metrics
def find_importance(
    session: Session, run_id: int, epoch_from: int, epoch_to: int, class_idx: int
) -> Importance | None:
    """The importance computation (run, t, t', class), or None if it has not been computed."""
    get_run(session, run_id)
    return session.scalars(
        select(Importance).where(
            Importance.run_id == run_id,
            Importance.epoch_from == epoch_from,
            Importance.epoch_to == epoch_to,
            Importance.class_idx == class_idx,
        )
    ).first()


def importance_ranking(
    session: Session,
    run_id: int,
    epoch_from: int,
    epoch_to: int,
    class_idx: int,
    limit: int = 50,
    offset: int = 0,
    layer_idx: int | None = None,
) -> ImportanceRanking | None:
    """:func:`ranking_of` the computation (run, t, t', class); None if it has not been computed."""
    imp = find_importance(session, run_id, epoch_from, epoch_to, class_idx)
    return None if imp is None else ranking_of(session, imp, limit, offset, layer_idx)


#: The ranking order of an importance computation — the ONE place it is spelled: I_n desc, then mean S desc,
#: then neuron id asc. :func:`_ranked_ahead` is the same rule as a predicate.
RANKING_ORDER = (ImportanceScore.score.desc(), ImportanceScore.mean_s.desc(), ImportanceScore.neuron_id)


def _ranked_ahead(score: float, mean_s: float, neuron_id: int) -> ColumnElement[bool]:
    """Score rows that :data:`RANKING_ORDER` puts before the row ``(score, mean_s, neuron_id)``."""
    return (
        (ImportanceScore.score > score)
        | ((ImportanceScore.score == score) & (ImportanceScore.mean_s > mean_s))
        | (
            (ImportanceScore.score == score)
            & (ImportanceScore.mean_s == mean_s)
            & (ImportanceScore.neuron_id < neuron_id)
        )
    )


def importance_scores(session: Session, imp: Importance) -> ImportanceScores:
    """Every scored neuron of an importance computation at once, best first, with its 1-based rank
    (the whole ranking of :func:`ranking_of`, without patches: for colouring a map)."""
    rows = session.execute(
        select(ImportanceScore.neuron_id, ImportanceScore.score, ImportanceScore.mean_s)
        .where(ImportanceScore.importance_id == imp.id)
        .order_by(*RANKING_ORDER)
    ).all()
    n = len(rows)
    return ImportanceScores(
        importance_id=imp.id,
        neuron_id=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        score=np.fromiter((r[1] for r in rows), dtype=np.float64, count=n),
        mean_s=np.fromiter((r[2] for r in rows), dtype=np.float64, count=n),
        rank=np.arange(1, n + 1, dtype=np.int64),
    )


def neuron_importances(session: Session, neuron_id: int) -> list[NeuronImportance]:
    """Every importance computation that scored a neuron (by epochs, then class), with the neuron's 1-based
    rank there and the number of neurons ranked (so a client can tell the top 10 %)."""
    _neuron_identity(session, neuron_id)
    rows = session.execute(
        select(Importance, ImportanceScore.score, ImportanceScore.mean_s)
        .join(ImportanceScore, ImportanceScore.importance_id == Importance.id)
        .where(ImportanceScore.neuron_id == neuron_id)
        .order_by(Importance.epoch_from, Importance.epoch_to, Importance.class_idx, Importance.id)
    ).all()
    totals = _ranking_totals(session, [imp.id for imp, _, _ in rows])
    out: list[NeuronImportance] = []
    for imp, score, mean_s in rows:
        ahead = session.scalar(
            select(func.count())
            .select_from(ImportanceScore)
            .where(ImportanceScore.importance_id == imp.id, _ranked_ahead(score, mean_s, neuron_id))
        )
        out.append(
            NeuronImportance(imp, float(score), float(mean_s), int(ahead or 0) + 1, totals.get(imp.id, 0))
        )
    return out


def _ranking_totals(session: Session, importance_ids: list[int]) -> dict[int, int]:
    """Number of scored neurons of each importance computation."""
    if not importance_ids:
        return {}
    rows = session.execute(
        select(ImportanceScore.importance_id, func.count())
        .where(ImportanceScore.importance_id.in_(sorted(set(importance_ids))))
        .group_by(ImportanceScore.importance_id)
    ).all()
    return {int(i): int(n) for i, n in rows}


def ranking_of(
    session: Session, imp: Importance, limit: int = 50, offset: int = 0, layer_idx: int | None = None
) -> ImportanceRanking:
    """One page of an importance computation's neurons, best first (I_n desc, then mean S desc, then neuron
    id), with their patch refs before (epoch t) and after (epoch t'). ``layer_idx`` restricts to one layer;
    ``total`` counts the rows of the whole ranking (of that layer)."""
    where = [ImportanceScore.importance_id == imp.id]
    if layer_idx is not None:
        where.append(Layer.idx == layer_idx)
    joined = (
        select(ImportanceScore.neuron_id)
        .join(Neuron, ImportanceScore.neuron_id == Neuron.id)
        .join(Layer, Neuron.layer_id == Layer.id)
        .where(*where)
    )
    total = session.scalar(select(func.count()).select_from(joined.subquery())) or 0
    rows = session.execute(
        joined.add_columns(
            ImportanceScore.score, ImportanceScore.mean_s, Layer.idx, Layer.name, Neuron.channel
        )
        .order_by(*RANKING_ORDER)
        .limit(max(0, limit))
        .offset(max(0, offset))
    ).all()
    nids = [int(r[0]) for r in rows]
    snaps = {
        s.epoch: s.id
        for s in session.scalars(
            select(Snapshot).where(
                Snapshot.run_id == imp.run_id, Snapshot.epoch.in_([imp.epoch_from, imp.epoch_to])
            )
        )
    }
    before_sid, after_sid = snaps.get(imp.epoch_from), snaps.get(imp.epoch_to)
    before = _patch_refs(session, before_sid, nids) if before_sid is not None else {}
    after = _patch_refs(session, after_sid, nids) if after_sid is not None else {}
    tied_before, tied_after = _recorded_ties(session, before_sid), _recorded_ties(session, after_sid)
    return ImportanceRanking(
        importance_id=imp.id,
        run_id=imp.run_id,
        epoch_from=imp.epoch_from,
        epoch_to=imp.epoch_to,
        class_idx=imp.class_idx,
        n_images=imp.n_images,
        rows=[
            ImportanceRow(
                neuron_id=int(r[0]),
                layer_idx=int(r[3]),
                layer_name=str(r[4]),
                channel=int(r[5]),
                score=float(r[1]),
                mean_s=float(r[2]),
                patches_before=before.get(int(r[0]), []),
                patches_after=after.get(int(r[0]), []),
                tied_before=None if tied_before is None else int(r[0]) in tied_before,
                tied_after=None if tied_after is None else int(r[0]) in tied_after,
            )
            for r in rows
        ],
        total=int(total),
        offset=max(0, offset),
        snapshot_from=before_sid,
        snapshot_to=after_sid,
    )


def get_importance(session: Session, importance_id: int) -> Importance:
    """The importance computation with this id (NotFoundError otherwise)."""
    imp = session.get(Importance, importance_id)
    if imp is None:
        raise NotFoundError(f"importance computation {importance_id} not found")
    return imp


def list_importances(
    session: Session,
    run_id: int | None = None,
    epoch_from: int | None = None,
    epoch_to: int | None = None,
    class_idx: int | None = None,
) -> list[Importance]:
    """Importance computations, optionally only those of a run, epochs and class (an unknown run has none),
    by (run, epoch_from, epoch_to, class_idx, id)."""
    stmt = select(Importance).order_by(
        Importance.run_id, Importance.epoch_from, Importance.epoch_to, Importance.class_idx, Importance.id
    )
    if run_id is not None:
        stmt = stmt.where(Importance.run_id == run_id)
    if epoch_from is not None:
        stmt = stmt.where(Importance.epoch_from == epoch_from)
    if epoch_to is not None:
        stmt = stmt.where(Importance.epoch_to == epoch_to)
    if class_idx is not None:
        stmt = stmt.where(Importance.class_idx == class_idx)
    return list(session.scalars(stmt))


def default_space_of_run(session: Session, run_id: int) -> int | None:
    """The lowest id of a space where the run has a computed snapshot, or None."""
    return session.scalar(
        select(SpaceSnapshot.space_id)
        .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
        .where(Snapshot.run_id == run_id)
        .order_by(SpaceSnapshot.space_id)
        .limit(1)
    )


def run_metrics(session: Session, run_id: int, space_id: int | None = None) -> list[SnapshotMetrics]:
    """Per snapshot of a run (by epoch): accuracy/loss; coverage/diversity/movement in ``space_id``."""
    get_run(session, run_id)
    spaced: dict[int, SpaceSnapshot] = {}
    if space_id is not None:
        get_space(session, space_id)
        spaced = {
            ss.snapshot_id: ss
            for ss in session.scalars(
                select(SpaceSnapshot)
                .join(Snapshot, SpaceSnapshot.snapshot_id == Snapshot.id)
                .where(SpaceSnapshot.space_id == space_id, Snapshot.run_id == run_id)
            )
        }
    out: list[SnapshotMetrics] = []
    for s in list_snapshots(session, run_id):
        ss = spaced.get(s.id)
        out.append(
            SnapshotMetrics(
                snapshot_id=s.id,
                epoch=s.epoch,
                train_loss=s.train_loss,
                train_top1=s.train_top1,
                train_top5=s.train_top5,
                val_loss=s.val_loss,
                val_top1=s.val_top1,
                val_top5=s.val_top5,
                computed=ss is not None,
                coverage=ss.coverage if ss is not None else None,
                diversity=ss.diversity if ss is not None else None,
                movement=ss.movement if ss is not None else None,
            )
        )
    return out
