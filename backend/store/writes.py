"""Write helpers. Each takes an open Session (from ``store.session()`` or ``finishing``)
and is idempotent: calling it again with the same arguments leaves the database as one call would.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Integer, delete, insert, literal, select
from sqlalchemy.orm import Session

from backend.store.blobs import pack_boxes, pack_f32, pack_i32, pack_points, pack_u8
from backend.store.config import Store
from backend.store.errors import ConflictError, NotFoundError, StoreError
from backend.store.models import (
    Dataset,
    Image,
    Importance,
    ImportanceScore,
    Job,
    Layer,
    Neuron,
    NeuronState,
    PatchSet,
    Run,
    RunModelKwargs,
    Snapshot,
    Space,
    SpaceSnapshot,
    StagedNeuronState,
    StagedPatchSet,
    utcnow,
)
from backend.store.queries import invalidate_space_cache

log = logging.getLogger(__name__)

_SNAPSHOT_METRICS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")
_PATCH_SET_FIELDS = ("neuron_id", "boxes", "file")
_PATCH_RANGE = ("byte_offset", "byte_length")
"""Optional patch set fields (since schema v5): the sprite is these bytes of ``file`` (a pack); both or neither."""
_CHUNK = 5000


def _bulk_insert(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    for i in range(0, len(rows), _CHUNK):
        session.execute(insert(model), rows[i : i + _CHUNK])


def register_dataset(
    session: Session,
    name: str,
    root: str,
    class_names: Sequence[str],
    images: Sequence[tuple[str, int]],
) -> Dataset:
    """Register a dataset and its images ``(rel_path, label)`` in index order; returns the ``Dataset``.

    Registering the same name again with the same images is a no-op (root and class names are updated);
    different images under an existing name raise :class:`ConflictError`.
    """
    if not name:
        raise ValueError("dataset name must not be empty")
    n_classes = len(class_names)
    for i, (_rel, label) in enumerate(images):
        if not 0 <= int(label) < n_classes:
            raise ValueError(f"dataset {name!r}: image {i} has label {label}, outside 0..{n_classes - 1}")
    ds = session.scalars(select(Dataset).where(Dataset.name == name)).first()
    if ds is not None:
        stored = session.execute(
            select(Image.rel_path, Image.label).where(Image.dataset_id == ds.id).order_by(Image.idx)
        ).all()
        if [(r, int(lab)) for r, lab in stored] != [(str(r), int(lab)) for r, lab in images]:
            raise ConflictError(
                f"dataset {name!r} is already registered with {len(stored)} different images; "
                "choose another name"
            )
        ds.root = str(root)
        ds.class_names = list(class_names)
        session.flush()
        return ds
    ds = Dataset(
        name=name, root=str(root), n_images=len(images), class_names=list(class_names), created_at=utcnow()
    )
    session.add(ds)
    session.flush()
    _bulk_insert(
        session,
        Image,
        [
            {"dataset_id": ds.id, "idx": i, "rel_path": str(r), "label": int(lab)}
            for i, (r, lab) in enumerate(images)
        ],
    )
    log.info("registered dataset %s (%d images)", name, len(images))
    return ds


def register_run(
    session: Session,
    name: str,
    arch: str,
    checkpoint_dir: str,
    dataset_id: int,
    num_classes: int,
    notes: str = "",
) -> Run:
    """Register a training run (idempotent by name).

    An existing run of that name with another ``arch``, dataset or class count raises :class:`ConflictError`;
    otherwise its checkpoint directory and notes are updated.
    """
    if session.get(Dataset, dataset_id) is None:
        raise NotFoundError(f"dataset {dataset_id} not found")
    run = session.scalars(select(Run).where(Run.name == name)).first()
    if run is not None:
        if (run.arch, run.dataset_id, run.num_classes) != (arch, dataset_id, num_classes):
            raise ConflictError(
                f"run {name!r} already exists with arch {run.arch!r}, dataset {run.dataset_id}, "
                f"{run.num_classes} classes; choose another name"
            )
        run.checkpoint_dir = str(checkpoint_dir)
        run.notes = notes or run.notes
        session.flush()
        return run
    run = Run(
        name=name,
        arch=arch,
        checkpoint_dir=str(checkpoint_dir),
        dataset_id=dataset_id,
        num_classes=int(num_classes),
        notes=notes,
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    log.info("registered run %s", name)
    return run


def set_run_model_kwargs(session: Session, run_id: int, kwargs: dict[str, Any]) -> None:
    """Record the keyword arguments run ``run_id``'s architecture is built with (see :class:`RunModelKwargs`).

    Registering a run again with other arguments raises :class:`ConflictError` (its results were computed with
    the first ones); the same arguments are a no-op.
    """
    row = session.get(RunModelKwargs, run_id)
    if row is None:
        session.add(RunModelKwargs(run_id=run_id, kwargs=dict(kwargs)))
    elif dict(row.kwargs) != dict(kwargs):
        raise ConflictError(
            f"run {run_id} is registered with model kwargs {row.kwargs}, not {kwargs}; choose another run name"
        )
    session.flush()


def upsert_snapshot(
    session: Session, run_id: int, epoch: int, checkpoint_path: str, **metrics: float | None
) -> Snapshot:
    """Create or update the snapshot (run, epoch). ``metrics``: any of train_/val_ loss, top1, top5.

    Metrics passed as None (or not passed) keep their stored value.
    """
    unknown = set(metrics) - set(_SNAPSHOT_METRICS)
    if unknown:
        raise ValueError(f"unknown snapshot metric(s) {sorted(unknown)}; expected {_SNAPSHOT_METRICS}")
    if session.get(Run, run_id) is None:
        raise NotFoundError(f"run {run_id} not found")
    snap = session.scalars(select(Snapshot).where(Snapshot.run_id == run_id, Snapshot.epoch == epoch)).first()
    if snap is None:
        snap = Snapshot(run_id=run_id, epoch=int(epoch), checkpoint_path=str(checkpoint_path))
        session.add(snap)
    else:
        snap.checkpoint_path = str(checkpoint_path)
    for key, value in metrics.items():
        if value is not None:
            setattr(snap, key, float(value))
    session.flush()
    return snap


def register_layers(session: Session, run_id: int, layers: Sequence[tuple[str, int]]) -> list[Layer]:
    """Create the run's layers ``(dotted name, channels)`` in order, with one ``Neuron`` per channel.

    Idempotent: the same layers again return the existing rows; different layers raise :class:`ConflictError`.
    """
    if session.get(Run, run_id) is None:
        raise NotFoundError(f"run {run_id} not found")
    existing = list(session.scalars(select(Layer).where(Layer.run_id == run_id).order_by(Layer.idx)).all())
    wanted = [(str(n), int(c)) for n, c in layers]
    if existing:
        if [(la.name, la.channels) for la in existing] != wanted:
            raise ConflictError(
                f"run {run_id} already has layers {[(la.name, la.channels) for la in existing][:3]}…, "
                f"not {wanted[:3]}…"
            )
        return existing
    if len({n for n, _ in wanted}) != len(wanted):
        raise ValueError(f"run {run_id}: duplicate layer names in {[n for n, _ in wanted]}")
    out: list[Layer] = []
    for idx, (lname, channels) in enumerate(wanted):
        if channels <= 0:
            raise ValueError(f"run {run_id}: layer {lname!r} has {channels} channels")
        layer = Layer(run_id=run_id, idx=idx, name=lname, channels=channels)
        session.add(layer)
        out.append(layer)
    session.flush()
    _bulk_insert(
        session,
        Neuron,
        [{"layer_id": la.id, "channel": c} for la in out for c in range(la.channels)],
    )
    log.info("registered %d layers (%d neurons) for run %d", len(out), sum(la.channels for la in out), run_id)
    return out


def write_space(
    session: Session,
    name: str,
    base_snapshot_id: int,
    dataset_id: int,
    params: Mapping[str, Any],
    reducer: bytes | None,
    image_vectors: npt.ArrayLike | None,
    covered: npt.ArrayLike | None,
    stats: Mapping[str, Any],
) -> Space:
    """Create a space, or rebuild an existing one of that name (its computed snapshots are then deleted,
    since their positions came from the old reducer). ``image_vectors`` float32 ``n_images × dim``;
    ``covered`` a boolean mask over images.
    """
    space = session.scalars(select(Space).where(Space.name == name)).first()
    if space is None:
        space = Space(name=name, created_at=utcnow())
        session.add(space)
    else:
        _delete_space_snapshots(session, space.id)
    space.base_snapshot_id = base_snapshot_id
    space.dataset_id = dataset_id
    space.params = dict(params)
    space.reducer = reducer
    space.image_vectors = pack_f32(image_vectors) if image_vectors is not None else None
    space.covered = pack_u8(covered) if covered is not None else None
    space.stats = dict(stats)
    session.flush()
    return space


def _delete_space_snapshots(session: Session, space_id: int, snapshot_id: int | None = None) -> None:
    ns = delete(NeuronState).where(NeuronState.space_id == space_id)
    ss = delete(SpaceSnapshot).where(SpaceSnapshot.space_id == space_id)
    if snapshot_id is not None:
        ns = ns.where(NeuronState.snapshot_id == snapshot_id)
        ss = ss.where(SpaceSnapshot.snapshot_id == snapshot_id)
    session.execute(ns)
    session.execute(ss)
    invalidate_space_cache(space_id)


def write_snapshot_in_space(
    session: Session,
    space_id: int,
    snapshot_id: int,
    neuron_ids: npt.ArrayLike,
    stimuli: npt.ArrayLike,
    maxima: npt.ArrayLike,
    vectors: npt.ArrayLike,
    xy: npt.ArrayLike,
    coverage: float | None,
    diversity: float | None,
    movement: float | None,
) -> SpaceSnapshot:
    """Store every neuron's state of one snapshot in one space, replacing what was there (idempotent).

    Shapes: ``neuron_ids`` (n,), ``stimuli`` (n, k) image indices, ``maxima`` (n, k), ``vectors`` (n, dim),
    ``xy`` (n, 2). Also packs the snapshot's ``points`` blob (neuron_id, layer_idx, x, y) in neuron order.
    Everything is written in ``session``'s transaction; a job writing thousands of neurons stages them
    first (:func:`stage_snapshot_in_space`) so that its final transaction stays short.
    """
    rows, points = _snapshot_rows(session, space_id, snapshot_id, neuron_ids, stimuli, maxima, vectors, xy)
    ss = _replace_space_snapshot(
        session, space_id, snapshot_id, points, len(rows), coverage, diversity, movement
    )
    _bulk_insert(session, NeuronState, rows)
    log.info("wrote %d neuron states of snapshot %d in space %d", len(rows), snapshot_id, space_id)
    return ss


def _snapshot_rows(
    session: Session,
    space_id: int | None,
    snapshot_id: int,
    neuron_ids: npt.ArrayLike,
    stimuli: npt.ArrayLike,
    maxima: npt.ArrayLike,
    vectors: npt.ArrayLike,
    xy: npt.ArrayLike,
) -> tuple[list[dict[str, Any]], bytes]:
    """Check one snapshot's arrays (see :func:`write_snapshot_in_space`) and pack its rows; reads only.

    ``space_id`` None: the space is not created yet (staged rows then carry no space id).

    Returns:
        ``(neuron_states rows, points blob)``.
    """
    ids = np.asarray(neuron_ids, dtype=np.int64).reshape(-1)
    n = len(ids)
    stim = np.asarray(stimuli)
    maxi = np.asarray(maxima, dtype=np.float32)
    vec = np.asarray(vectors, dtype=np.float32)
    pos = np.asarray(xy, dtype=np.float32)
    if stim.ndim != 2 or stim.shape[0] != n or maxi.shape != stim.shape:
        raise ValueError(
            f"space {space_id} snapshot {snapshot_id}: stimuli {stim.shape} / maxima {maxi.shape} "
            f"must both be (n={n}, k)"
        )
    if vec.ndim != 2 or vec.shape[0] != n:
        raise ValueError(f"space {space_id} snapshot {snapshot_id}: vectors {vec.shape} must be (n={n}, dim)")
    if pos.shape != (n, 2):
        raise ValueError(f"space {space_id} snapshot {snapshot_id}: xy {pos.shape} must be (n={n}, 2)")
    if len(np.unique(ids)) != n:
        raise ValueError(f"space {space_id} snapshot {snapshot_id}: duplicate neuron ids")
    if space_id is not None and session.get(Space, space_id) is None:
        raise NotFoundError(f"space {space_id} not found")
    snap = session.get(Snapshot, snapshot_id)
    if snap is None:
        raise NotFoundError(f"snapshot {snapshot_id} not found")
    layer_of = dict(
        session.execute(
            select(Neuron.id, Layer.idx)
            .join(Layer, Neuron.layer_id == Layer.id)
            .where(Layer.run_id == snap.run_id)
        ).all()
    )
    missing = [int(i) for i in ids if int(i) not in layer_of]
    if missing:
        raise ValueError(
            f"space {space_id} snapshot {snapshot_id}: neuron ids {missing[:5]} are not neurons of run "
            f"{snap.run_id}"
        )
    layer_idx = np.array([layer_of[int(i)] for i in ids], dtype=np.int32)
    rows = [
        {
            **({} if space_id is None else {"space_id": space_id}),
            "snapshot_id": snapshot_id,
            "neuron_id": int(ids[i]),
            "stimuli": pack_i32(stim[i]),
            "maxima": pack_f32(maxi[i]),
            "vector": pack_f32(vec[i]),
            "x": float(pos[i, 0]),
            "y": float(pos[i, 1]),
        }
        for i in range(n)
    ]
    return rows, pack_points(ids, layer_idx, pos[:, 0], pos[:, 1])


def _replace_space_snapshot(
    session: Session,
    space_id: int,
    snapshot_id: int,
    points: bytes,
    n_points: int,
    coverage: float | None,
    diversity: float | None,
    movement: float | None,
) -> SpaceSnapshot:
    """Delete the snapshot's old states in the space and add its new ``SpaceSnapshot`` row (flushed)."""
    _delete_space_snapshots(session, space_id, snapshot_id)
    row = SpaceSnapshot(
        space_id=space_id,
        snapshot_id=snapshot_id,
        computed_at=utcnow(),
        coverage=None if coverage is None else float(coverage),
        diversity=None if diversity is None else float(diversity),
        movement=None if movement is None else float(movement),
        n_points=n_points,
        points=points,
    )
    session.add(row)
    session.flush()
    return row


def set_movement(session: Session, space_id: int, snapshot_id: int, movement: float | None) -> None:
    """Replace a computed snapshot's ``movement`` (when an earlier epoch of its run is computed after it)."""
    row = session.get(SpaceSnapshot, (space_id, snapshot_id))
    if row is None:
        raise NotFoundError(f"snapshot {snapshot_id} is not computed in space {space_id}")
    row.movement = None if movement is None else float(movement)
    session.flush()


def set_snapshot_quality(
    session: Session,
    space_id: int,
    snapshot_id: int,
    stability: Mapping[str, Any] | None,
    tied_neurons: Sequence[int],
    tied_per_layer: Sequence[int],
) -> None:
    """Store how trustworthy a computed snapshot's placement is (schema v3, issue 13).

    Args:
        session: the writing transaction (the job's final one, with the snapshot's rows).
        space_id, snapshot_id: a snapshot already computed in the space.
        stability: ``{"cosine", "displacement", "stable"}`` of its split-half placement (values may be
            None = not measured), or None.
        tied_neurons: ids of its neurons whose k stimulus maxima all tie.
        tied_per_layer: their count per layer, in layer order.

    Raises:
        NotFoundError: the snapshot is not computed in the space.
    """
    row = session.get(SpaceSnapshot, (space_id, snapshot_id))
    if row is None:
        raise NotFoundError(f"snapshot {snapshot_id} is not computed in space {space_id}")
    given = stability or {}
    cosine, displacement, stable = given.get("cosine"), given.get("displacement"), given.get("stable")
    row.stability_cosine = None if cosine is None else float(cosine)
    row.stability_displacement = None if displacement is None else float(displacement)
    row.stable = None if stable is None else bool(stable)
    row.tied_neurons = sorted(int(n) for n in tied_neurons)
    row.tied_per_layer = [int(c) for c in tied_per_layer]
    session.flush()


def _check_patch_file(snapshot_id: int, file: str) -> str:
    f = str(file)
    if (
        not f
        or PurePosixPath(f).is_absolute()
        or PureWindowsPath(f).is_absolute()
        or ".." in PurePosixPath(f.replace("\\", "/")).parts
    ):
        raise ValueError(
            f"snapshot {snapshot_id}: patch file {f!r} must be a relative path inside the data dir"
        )
    return f


def write_patches(session: Session, snapshot_id: int, patch_sets: Sequence[Mapping[str, Any]]) -> int:
    """Store the example patches of some of a snapshot's neurons, one item per neuron: ``neuron_id``,
    ``boxes`` (``(k, 5)`` integers, one ``(image_idx, y0, x0, y1, x1)`` per stimulus rank), ``file`` (the
    neuron's sprite, relative to the data directory) and, where the sprite is a byte range of a pack file,
    ``byte_offset, byte_length``. The sets already stored for those neurons are replaced.

    Returns:
        The number of neurons written.
    """
    if session.get(Snapshot, snapshot_id) is None:
        raise NotFoundError(f"snapshot {snapshot_id} not found")
    rows = _patch_set_rows(snapshot_id, patch_sets)
    neurons = sorted(r["neuron_id"] for r in rows)
    for i in range(0, len(neurons), 500):
        session.execute(
            delete(PatchSet).where(
                PatchSet.snapshot_id == snapshot_id, PatchSet.neuron_id.in_(neurons[i : i + 500])
            )
        )
    _bulk_insert(session, PatchSet, rows)
    return len(rows)


def _patch_set_rows(snapshot_id: int, patch_sets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check patch set items (see :func:`write_patches`) and turn them into ``patch_sets`` rows."""
    rows: list[dict[str, Any]] = []
    checked: dict[str, str] = {}  # a pack holds many neurons' sprites: check each path once
    seen: set[int] = set()
    for item in patch_sets:
        missing = [k for k in _PATCH_SET_FIELDS if k not in item]
        if missing:
            raise ValueError(f"snapshot {snapshot_id}: patch set {dict(item)!r} lacks {missing}")
        neuron = int(item["neuron_id"])
        if neuron in seen:
            raise ValueError(f"snapshot {snapshot_id}: neuron {neuron} has two patch sets")
        seen.add(neuron)
        try:
            boxes = pack_boxes(item["boxes"])
        except ValueError as exc:
            raise ValueError(f"snapshot {snapshot_id}: patch set of neuron {neuron}: {exc}") from None
        file = str(item["file"])
        if file not in checked:
            checked[file] = _check_patch_file(snapshot_id, file)
        offset, length = _byte_range(snapshot_id, item)
        rows.append(
            {
                "snapshot_id": snapshot_id,
                "neuron_id": neuron,
                "boxes": boxes,
                "file": checked[file],
                "byte_offset": offset,
                "byte_length": length,
            }
        )
    return rows


def _byte_range(snapshot_id: int, patch: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """A patch set item's ``(byte_offset, byte_length)`` in its pack file, or ``(None, None)`` for a whole
    file."""
    offset, length = (patch.get(k) for k in _PATCH_RANGE)
    if offset is None and length is None:
        return None, None
    if offset is None or length is None or int(offset) < 0 or int(length) < 1:
        raise ValueError(
            f"snapshot {snapshot_id}: patch set of neuron {patch.get('neuron_id')} needs both byte_offset ≥ 0 and "
            f"byte_length ≥ 1, got {offset!r} and {length!r}"
        )
    return int(offset), int(length)


# --------------------------------------------------------------------------------------------------
# Staged writes: a job's large results go in ahead of time, in short transactions, invisible to readers;
# its final transaction (``queue.finishing``) only copies them into place. On SQLite every write
# transaction holds the one database write lock, so one big insert would block every other writer
# (``add-run``, heartbeats, other workers) for as long as it runs (issue 12: 90 s on ResNet18).
# --------------------------------------------------------------------------------------------------
STAGE_CHUNK_ROWS = 2000
"""Rows per staging transaction: a few tens of milliseconds of write lock each."""
DISCARD_NEURONS = 2000
"""Neurons whose staged rows are removed per transaction (one row each per staging table: milliseconds)."""


def stage_key(job_id: int, worker_id: str) -> str:
    """The stage of one attempt of a job (a job taken over by another worker gets a fresh stage)."""
    return f"job{int(job_id)}:{worker_id}"


@dataclass(frozen=True)
class StagedSnapshot:
    """A snapshot's neuron states written ahead into ``stage``; :func:`publish_staged_snapshot` makes it
    visible. ``points`` is the snapshot's packed points blob, ``n_points`` its neuron count."""

    stage: str
    snapshot_id: int
    points: bytes
    n_points: int


def stage_snapshot_in_space(
    store: Store,
    stage: str,
    job_id: int,
    space_id: int | None,
    snapshot_id: int,
    neuron_ids: npt.ArrayLike,
    stimuli: npt.ArrayLike,
    maxima: npt.ArrayLike,
    vectors: npt.ArrayLike,
    xy: npt.ArrayLike,
) -> StagedSnapshot:
    """Check one snapshot's neuron states (as :func:`write_snapshot_in_space`) and write them into ``stage``.

    Args:
        store: the store (this opens its own short transactions, one per :data:`STAGE_CHUNK_ROWS` rows).
        stage: the stage (see :func:`stage_key`); rows already staged under it are replaced.
        job_id: the job writing (lets a worker remove the stages of jobs no longer running).
        space_id: the space, checked to exist; None for a space its job creates in its final transaction.
        snapshot_id, neuron_ids, stimuli, maxima, vectors, xy: as :func:`write_snapshot_in_space`.

    Returns:
        The :class:`StagedSnapshot` to publish in the job's final transaction.
    """
    with store.session(readonly=True) as session:
        rows, points = _snapshot_rows(session, None, snapshot_id, neuron_ids, stimuli, maxima, vectors, xy)
        if space_id is not None and session.get(Space, space_id) is None:
            raise NotFoundError(f"space {space_id} not found")
    _discard(store, StagedNeuronState, StagedNeuronState.stage == stage)
    _stage_rows(store, StagedNeuronState, rows, stage, job_id)
    return StagedSnapshot(stage, snapshot_id, points, len(rows))


def stage_patches(
    store: Store, stage: str, job_id: int, snapshot_id: int, patch_sets: Sequence[Mapping[str, Any]]
) -> int:
    """Check patch set items (as :func:`write_patches`) and write them into ``stage``; returns how many.

    Rows already staged under ``stage`` are replaced; :func:`publish_staged_patches` makes them visible.
    """
    rows = _patch_set_rows(snapshot_id, patch_sets)
    _discard(store, StagedPatchSet, StagedPatchSet.stage == stage)
    _stage_rows(store, StagedPatchSet, rows, stage, job_id)
    return len(rows)


def publish_staged_snapshot(
    session: Session,
    space_id: int,
    staged: StagedSnapshot,
    coverage: float | None,
    diversity: float | None,
    movement: float | None,
) -> SpaceSnapshot:
    """In the job's final transaction: replace the snapshot's states in the space by the staged ones.

    One ``INSERT … SELECT`` inside the database (no row passes through Python), so it takes milliseconds
    per thousand neurons.

    Raises:
        StoreError: the stage holds fewer rows than were staged (it was discarded meanwhile).
    """
    ss = _replace_space_snapshot(
        session,
        space_id,
        staged.snapshot_id,
        staged.points,
        staged.n_points,
        coverage,
        diversity,
        movement,
    )
    columns = ("snapshot_id", "neuron_id", "stimuli", "maxima", "vector", "x", "y")
    space = literal(int(space_id), Integer)
    copied = _copy_stage(session, NeuronState, StagedNeuronState, columns, staged.stage, {"space_id": space})
    if copied != staged.n_points:
        raise StoreError(
            f"stage {staged.stage!r} holds {copied} of {staged.n_points} neuron states of snapshot "
            f"{staged.snapshot_id}; it was removed meanwhile — run the job again"
        )
    return ss


def publish_staged_patches(session: Session, stage: str, snapshot_id: int) -> int:
    """In the job's final transaction: replace the patch sets of the staged neurons by the staged ones.

    Returns:
        The number of neurons whose patch sets were published.
    """
    if session.get(Snapshot, snapshot_id) is None:
        raise NotFoundError(f"snapshot {snapshot_id} not found")
    staged_neurons = select(StagedPatchSet.neuron_id).where(StagedPatchSet.stage == stage)
    session.execute(
        delete(PatchSet).where(PatchSet.snapshot_id == snapshot_id, PatchSet.neuron_id.in_(staged_neurons))
    )
    columns = ("snapshot_id", "neuron_id", "boxes", "file", *_PATCH_RANGE)
    return _copy_stage(session, PatchSet, StagedPatchSet, columns, stage)


def superseded_patch_files(session: Session, stage: str, snapshot_id: int) -> list[str]:
    """The files of a snapshot's patch sets that :func:`publish_staged_patches` is about to replace and that no
    row names afterwards (neither a staged one nor one of a neuron the stage leaves alone): call it just before
    publishing, then unlink them once the transaction commits (a pack file is named per job attempt, so a
    recomputed snapshot's new sprites never overwrite the old ones that readers may still be served until the
    commit).

    Returns:
        Relative paths, sorted.
    """
    staged = select(StagedPatchSet.neuron_id).where(StagedPatchSet.stage == stage)
    staged_files = select(StagedPatchSet.file).where(StagedPatchSet.stage == stage)
    kept_files = select(PatchSet.file).where(
        PatchSet.snapshot_id == snapshot_id, PatchSet.neuron_id.not_in(staged)
    )
    query = (
        select(PatchSet.file)
        .where(
            PatchSet.snapshot_id == snapshot_id,
            PatchSet.neuron_id.in_(staged),
            PatchSet.file.not_in(staged_files),
            PatchSet.file.not_in(kept_files),
        )
        .distinct()
    )
    return sorted(session.scalars(query))


def discard_stage(store: Store, stage: str) -> None:
    """Remove everything staged under ``stage`` (after publishing, or when the job failed), in short chunks."""
    for model in (StagedNeuronState, StagedPatchSet):
        _discard(store, model, model.stage == stage)


def discard_stale_stages(store: Store) -> None:
    """Remove the stages of jobs that are not running (left by a killed worker), in short chunks."""
    running = select(Job.id).where(Job.status == "running")
    for model in (StagedNeuronState, StagedPatchSet):
        _discard(store, model, model.job_id.not_in(running))


def _stage_rows(store: Store, model: type[Any], rows: list[dict[str, Any]], stage: str, job_id: int) -> None:
    """Insert ``rows`` (plus stage and job id) into a staging table, one short transaction per chunk."""
    for i in range(0, len(rows), STAGE_CHUNK_ROWS):
        chunk = [{**row, "stage": stage, "job_id": int(job_id)} for row in rows[i : i + STAGE_CHUNK_ROWS]]
        with store.session() as session:
            session.execute(insert(model.__table__), chunk)  # Core executemany: no ORM bookkeeping per row


def _discard(store: Store, model: type[Any], condition: Any) -> None:
    """Delete a staging table's rows matching ``condition``, the rows of at most :data:`DISCARD_NEURONS`
    neurons per transaction (one range of the primary key's neuron ids each: a ``(stage, neuron, rank) IN
    (subquery)`` delete took ~5× longer)."""
    with store.session(readonly=True) as session:
        neurons = list(
            session.scalars(select(model.neuron_id).where(condition).distinct().order_by(model.neuron_id))
        )
    for i in range(0, len(neurons), DISCARD_NEURONS):
        low, high = neurons[i], neurons[min(i + DISCARD_NEURONS, len(neurons)) - 1]
        with store.session() as session:
            session.execute(delete(model).where(condition, model.neuron_id.between(low, high)))


def _copy_stage(
    session: Session,
    target: type[Any],
    staged: type[Any],
    columns: Sequence[str],
    stage: str,
    constants: Mapping[str, Any] | None = None,
) -> int:
    """``INSERT INTO target (columns, constants) SELECT columns, constants FROM staged WHERE stage = :stage``.

    Returns:
        The number of rows copied.
    """
    extra = dict(constants or {})
    chosen = select(*(getattr(staged, c) for c in columns), *extra.values()).where(staged.stage == stage)
    # preserve_rowcount: SQLAlchemy reads an INSERT's rowcount only when asked; without it psycopg's result says -1,
    # and every publish on PostgreSQL looked like a stage removed meanwhile (SQLite's driver happened to say).
    statement = (
        insert(target).from_select([*columns, *extra], chosen).execution_options(preserve_rowcount=True)
    )
    return int(session.execute(statement).rowcount)


def write_importance(
    session: Session,
    run_id: int,
    epoch_from: int,
    epoch_to: int,
    class_idx: int,
    n_images: int,
    neuron_ids: npt.ArrayLike,
    scores: npt.ArrayLike,
    mean_s: npt.ArrayLike,
) -> Importance:
    """Store the importance of every neuron's evolution ``epoch_from → epoch_to`` for one class (replaces)."""
    ids = np.asarray(neuron_ids, dtype=np.int64).reshape(-1)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    ms = np.asarray(mean_s, dtype=np.float64).reshape(-1)
    if not len(ids) == len(sc) == len(ms):
        raise ValueError(
            f"run {run_id} importance: {len(ids)} ids, {len(sc)} scores, {len(ms)} mean_s differ"
        )
    if session.get(Run, run_id) is None:
        raise NotFoundError(f"run {run_id} not found")
    old = session.scalars(
        select(Importance).where(
            Importance.run_id == run_id,
            Importance.epoch_from == epoch_from,
            Importance.epoch_to == epoch_to,
            Importance.class_idx == class_idx,
        )
    ).first()
    if old is not None:
        session.execute(delete(ImportanceScore).where(ImportanceScore.importance_id == old.id))
        session.delete(old)
        session.flush()
    imp = Importance(
        run_id=run_id,
        epoch_from=int(epoch_from),
        epoch_to=int(epoch_to),
        class_idx=int(class_idx),
        n_images=int(n_images),
        created_at=utcnow(),
    )
    session.add(imp)
    session.flush()
    _bulk_insert(
        session,
        ImportanceScore,
        [
            {"importance_id": imp.id, "neuron_id": int(ids[i]), "score": float(sc[i]), "mean_s": float(ms[i])}
            for i in range(len(ids))
        ],
    )
    return imp
