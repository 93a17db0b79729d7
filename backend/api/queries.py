"""Read queries the API makes, written on the store's models (SQLAlchemy ``select``).

Each function takes an open session and returns plain values or pydantic models; an unknown id raises
:class:`~backend.store.errors.NotFoundError` (→ 404) with a message naming it.
Candidates to move into ``backend/store`` as read helpers once the store grows them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.store import queries as store_queries
from backend.store.blobs import unpack_f32, unpack_i32
from backend.store.errors import NotFoundError
from backend.store.models import (
    Dataset,
    Image,
    Importance,
    Layer,
    Neuron,
    NeuronState,
    Patch,
    Run,
    Snapshot,
    Space,
    SpaceSnapshot,
)
from backend.store.queries import PatchRef

from . import schemas

M = TypeVar("M")


def get_or_404(session: Session, model: type[M], ident: int, what: str) -> M:
    """``session.get(model, ident)`` or :class:`NotFoundError` "``what`` ``ident`` not found"."""
    row = session.get(model, ident)
    if row is None:
        raise NotFoundError(f"{what} {ident} not found")
    return row


def finite(value: float | None) -> float | None:
    """``value`` unless it is NaN/inf (an undefined position), else ``None``."""
    return value if value is not None and math.isfinite(value) else None


def patch_url(snapshot_id: int, neuron_id: int, rank: int) -> str:
    """The URL of one patch image (ids only; the file path stays on the server)."""
    return f"/api/patches/{snapshot_id}/{neuron_id}/{rank}"


def patch_out(p: Patch) -> schemas.PatchOut:
    """The API form of a patch row."""
    return schemas.PatchOut(
        snapshot_id=p.snapshot_id,
        neuron_id=p.neuron_id,
        rank=p.rank,
        image_idx=p.image_idx,
        box=schemas.PatchBox(y0=p.y0, x0=p.x0, y1=p.y1, x1=p.x1),
        url=patch_url(p.snapshot_id, p.neuron_id, p.rank),
    )


def patch_ref_out(snapshot_id: int, neuron_id: int, ref: PatchRef) -> schemas.PatchOut:
    """The API form of a store patch reference of (snapshot, neuron)."""
    return schemas.PatchOut(
        snapshot_id=snapshot_id,
        neuron_id=neuron_id,
        rank=ref.rank,
        image_idx=ref.image_idx,
        box=schemas.PatchBox(y0=ref.y0, x0=ref.x0, y1=ref.y1, x1=ref.x1),
        url=patch_url(snapshot_id, neuron_id, ref.rank),
    )


def layer_out(layer: Layer) -> schemas.LayerOut:
    """The API form of a layer row."""
    return schemas.LayerOut(id=layer.id, idx=layer.idx, name=layer.name, channels=layer.channels)


def dataset_out(d: Dataset) -> schemas.DatasetOut:
    """The API form of a dataset row."""
    return schemas.DatasetOut(
        id=d.id,
        name=d.name,
        n_images=d.n_images,
        class_names=list(d.class_names or []),
        created_at=d.created_at,
    )


def neuron_with_layer(session: Session, neuron_id: int) -> tuple[Neuron, Layer]:
    """A neuron and its layer, or 404."""
    row = session.execute(
        select(Neuron, Layer).join(Layer, Neuron.layer_id == Layer.id).where(Neuron.id == neuron_id)
    ).first()
    if row is None:
        raise NotFoundError(f"neuron {neuron_id} not found")
    return row[0], row[1]


def neuron_out(neuron: Neuron, layer: Layer) -> schemas.NeuronOut:
    """The API form of a neuron with its layer."""
    return schemas.NeuronOut(
        id=neuron.id, run_id=layer.run_id, layer=layer_out(layer), channel=neuron.channel
    )


def snapshot_in_space(session: Session, space_id: int, snapshot_id: int) -> tuple[Space, Snapshot]:
    """The space and the snapshot, or 404 naming which one is unknown."""
    space = get_or_404(session, Space, space_id, "space")
    snapshot = get_or_404(session, Snapshot, snapshot_id, "snapshot")
    return space, snapshot


def not_computed(space_id: int, snapshot: Snapshot) -> NotFoundError:
    """The 404 for a snapshot that exists but is not computed in the space."""
    return NotFoundError(
        f"snapshot {snapshot.id} (run {snapshot.run_id}, epoch {snapshot.epoch}) is not computed in space "
        f"{space_id}; POST /api/jobs with kind 'add_snapshot' to compute it"
    )


def points_blob(session: Session, space_id: int, snapshot_id: int) -> tuple[bytes, int]:
    """The packed points blob of (space, snapshot) and the snapshot's epoch, or 404."""
    row = session.execute(
        select(SpaceSnapshot.points, Snapshot.epoch)
        .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
        .where(SpaceSnapshot.space_id == space_id, SpaceSnapshot.snapshot_id == snapshot_id)
    ).first()
    if row is None:
        _, snapshot = snapshot_in_space(session, space_id, snapshot_id)
        raise not_computed(space_id, snapshot)
    return bytes(row[0]), int(row[1])


def computed_in(session: Session, snapshot_ids: Iterable[int]) -> dict[int, list[int]]:
    """For each snapshot id, the sorted ids of the spaces it is computed in."""
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


def snapshot_counts(session: Session) -> dict[int, int]:
    """Number of snapshots per run id."""
    rows = session.execute(select(Snapshot.run_id, func.count()).group_by(Snapshot.run_id)).all()
    return {run_id: n for run_id, n in rows}


def run_summary(run: Run, n_snapshots: int) -> schemas.RunSummaryOut:
    """The API form of a run without its snapshots."""
    return schemas.RunSummaryOut(
        id=run.id,
        name=run.name,
        arch=run.arch,
        dataset_id=run.dataset_id,
        num_classes=run.num_classes,
        notes=run.notes or "",
        created_at=run.created_at,
        n_snapshots=n_snapshots,
    )


def run_snapshots(session: Session, run_id: int) -> list[Snapshot]:
    """A run's snapshots ordered by epoch."""
    return list(session.scalars(select(Snapshot).where(Snapshot.run_id == run_id).order_by(Snapshot.epoch)))


def patches_of(
    session: Session, pairs: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], list[schemas.PatchOut]]:
    """Patches (by rank) of each (snapshot_id, neuron_id) pair; pairs without patches map to ``[]``."""
    keys = list(dict.fromkeys(pairs))
    out: dict[tuple[int, int], list[schemas.PatchOut]] = {k: [] for k in keys}
    if not keys:
        return out
    snapshot_ids = sorted({s for s, _ in keys})
    neuron_ids = sorted({n for _, n in keys})
    rows = session.scalars(
        select(Patch)
        .where(Patch.snapshot_id.in_(snapshot_ids), Patch.neuron_id.in_(neuron_ids))
        .order_by(Patch.snapshot_id, Patch.neuron_id, Patch.rank)
    )
    for p in rows:
        key = (p.snapshot_id, p.neuron_id)
        if key in out:
            out[key].append(patch_out(p))
    return out


def neuron_at_snapshot(
    session: Session, space_id: int, snapshot_id: int, neuron_id: int
) -> schemas.NeuronAtSnapshotOut:
    """One neuron at one snapshot in one space: position, stimuli with maxima and labels, patches."""
    neuron, layer = neuron_with_layer(session, neuron_id)
    state = session.get(NeuronState, (space_id, snapshot_id, neuron_id))
    if state is None:
        space, snapshot = snapshot_in_space(session, space_id, snapshot_id)
        if snapshot.run_id != layer.run_id:
            raise NotFoundError(
                f"neuron {neuron_id} belongs to run {layer.run_id}, not to run {snapshot.run_id} of snapshot "
                f"{snapshot_id}"
            )
        if session.get(SpaceSnapshot, (space_id, snapshot_id)) is None:
            raise not_computed(space_id, snapshot)
        raise NotFoundError(f"neuron {neuron_id} has no state in space {space_id} at snapshot {snapshot_id}")
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
    patches = {p.rank: p for p in patches_of(session, [(snapshot_id, neuron_id)])[(snapshot_id, neuron_id)]}
    return schemas.NeuronAtSnapshotOut(
        neuron=neuron_out(neuron, layer),
        space_id=space_id,
        snapshot_id=snapshot_id,
        epoch=int(epoch or 0),
        x=finite(state.x),
        y=finite(state.y),
        stimuli=[
            schemas.StimulusOut(
                rank=rank,
                image_idx=img,
                maximum=mx,
                label=labels.get(img),
                patch=patches.get(rank),
            )
            for rank, (img, mx) in enumerate(zip(stimuli, maxima, strict=False))
        ],
    )


def importance_out(imp: Importance, class_names: list[str]) -> schemas.ImportanceOut:
    """The API form of an importance row (``class_names`` from the run's dataset)."""
    name = class_names[imp.class_idx] if 0 <= imp.class_idx < len(class_names) else None
    return schemas.ImportanceOut(
        id=imp.id,
        run_id=imp.run_id,
        epoch_from=imp.epoch_from,
        epoch_to=imp.epoch_to,
        class_idx=imp.class_idx,
        class_name=name,
        n_images=imp.n_images,
        created_at=imp.created_at,
    )


def class_names_of_runs(session: Session, run_ids: Iterable[int]) -> dict[int, list[str]]:
    """The class names of each run's dataset."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Run.id, Dataset.class_names).join(Dataset, Dataset.id == Run.dataset_id).where(Run.id.in_(ids))
    ).all()
    return {rid: list(names or []) for rid, names in rows}


def neighbours(
    session: Session, space_id: int, snapshot_id: int, neuron_id: int, k: int
) -> schemas.NeighboursOut:
    """The ``k`` neuron states of the space nearest to (snapshot, neuron) in embedding space, itself excluded
    (ties by snapshot id, then neuron id); uses the store's cached :func:`nearest_neighbours`."""
    neuron_with_layer(session, neuron_id)
    state = session.get(NeuronState, (space_id, snapshot_id, neuron_id))
    if state is None:
        _, snapshot = snapshot_in_space(session, space_id, snapshot_id)
        if session.get(SpaceSnapshot, (space_id, snapshot_id)) is None:
            raise not_computed(space_id, snapshot)
        raise NotFoundError(f"neuron {neuron_id} has no state in space {space_id} at snapshot {snapshot_id}")
    vector = unpack_f32(state.vector)
    found: list[store_queries.Neighbour] = []
    if np.isfinite(vector).all():
        found = [
            n
            for n in store_queries.nearest_neighbours(session, space_id, vector, k + 1)
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
    out = [
        schemas.NeighbourOut(
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
    return schemas.NeighboursOut(
        neuron_id=neuron_id, space_id=space_id, snapshot_id=snapshot_id, k=k, neighbours=out
    )
