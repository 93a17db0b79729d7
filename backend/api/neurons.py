"""One neuron: identity, state at a snapshot (stimuli, patches), trajectory, nearest neighbours, importance."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session

from backend.store import queries

from .convert import computed, finite, importance_out, neuron_at_snapshot_out, neuron_out, patch_out
from .deps import DbDep, NeuronId, SnapshotId, SpaceId
from .schemas import (
    ErrorOut,
    NeighbourOut,
    NeighboursOut,
    NeuronAtSnapshotOut,
    NeuronImportanceOut,
    NeuronOut,
    PatchOut,
    TrajectoryOut,
    TrajectoryPointOut,
)

router = APIRouter(tags=["neurons"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "Unknown id, or not computed."}}


@router.get("/neurons/{neuron_id}", response_model=NeuronOut, responses=NOT_FOUND, summary="One neuron")
def get_neuron(neuron_id: NeuronId, db: DbDep) -> NeuronOut:
    """The neuron's run, layer and channel."""
    return db.read(lambda s: neuron_out(*queries.get_neuron(s, neuron_id)))


@router.get(
    "/spaces/{space_id}/snapshots/{snapshot_id}/neurons/{neuron_id}",
    response_model=NeuronAtSnapshotOut,
    responses=NOT_FOUND,
    summary="A neuron at one snapshot in one space",
)
def get_neuron_at_snapshot(
    space_id: SpaceId, snapshot_id: SnapshotId, neuron_id: NeuronId, db: DbDep
) -> NeuronAtSnapshotOut:
    """Position, stimuli (image index, activation maximum, label) and example patches, by stimulus rank."""
    return db.read(
        computed(lambda s: neuron_at_snapshot_out(queries.neuron_detail(s, neuron_id, snapshot_id, space_id)))
    )


@router.get(
    "/neurons/{neuron_id}/snapshots/{snapshot_id}/patches",
    response_model=list[PatchOut],
    responses=NOT_FOUND,
    summary="A neuron's patches at one snapshot",
)
def get_neuron_patches(neuron_id: NeuronId, snapshot_id: SnapshotId, db: DbDep) -> list[PatchOut]:
    """The example patches of the neuron at the snapshot (they do not depend on a space), by rank."""

    return db.read(
        lambda s: [
            patch_out(snapshot_id, neuron_id, p) for p in queries.patches_of(s, snapshot_id, neuron_id)
        ]
    )


@router.get(
    "/spaces/{space_id}/neurons/{neuron_id}/trajectory",
    response_model=TrajectoryOut,
    responses=NOT_FOUND,
    summary="A neuron's position per computed epoch",
)
def get_trajectory(space_id: SpaceId, neuron_id: NeuronId, db: DbDep) -> TrajectoryOut:
    """The neuron's 2-D position at every snapshot computed in the space, by epoch."""

    def q(session: Session) -> TrajectoryOut:
        return TrajectoryOut(
            neuron_id=neuron_id,
            space_id=space_id,
            points=[
                TrajectoryPointOut(snapshot_id=p.snapshot_id, epoch=p.epoch, x=finite(p.x), y=finite(p.y))
                for p in queries.trajectory(session, space_id, neuron_id)
            ],
        )

    return db.read(q)


@router.get(
    "/spaces/{space_id}/snapshots/{snapshot_id}/neurons/{neuron_id}/neighbours",
    response_model=NeighboursOut,
    responses=NOT_FOUND,
    summary="Nearest neuron states in the space",
)
def get_neighbours(
    request: Request,
    space_id: SpaceId,
    snapshot_id: SnapshotId,
    neuron_id: NeuronId,
    db: DbDep,
    k: Annotated[int, Query(ge=1, le=100, description="How many neighbours (1–100).")] = 10,
) -> NeighboursOut:
    """The `k` neuron states (any run, any epoch of the space) whose embedding vectors are nearest to this
    neuron's at this snapshot, nearest first; the neuron itself at this snapshot is excluded."""
    k = min(k, request.app.state.settings.neighbours_max_k)

    def q(session: Session) -> NeighboursOut:
        found = queries.neighbours_of(session, space_id, snapshot_id, neuron_id, k)
        return NeighboursOut(
            neuron_id=neuron_id,
            space_id=space_id,
            snapshot_id=snapshot_id,
            k=k,
            neighbours=[NeighbourOut(**dataclasses.asdict(n)) for n in found],
        )

    return db.read(computed(q))


@router.get(
    "/neurons/{neuron_id}/importance",
    response_model=list[NeuronImportanceOut],
    responses=NOT_FOUND,
    summary="A neuron's importance for classes",
)
def get_neuron_importance(neuron_id: NeuronId, db: DbDep) -> list[NeuronImportanceOut]:
    """Every importance computation that scored this neuron (by epochs, then class), with its rank there and the
    number of neurons ranked (`total`)."""

    def q(session: Session) -> list[NeuronImportanceOut]:
        _, layer = queries.get_neuron(session, neuron_id)
        names = queries.class_names_of_runs(session, [layer.run_id])
        return [
            NeuronImportanceOut(
                importance=importance_out(found.importance, names.get(found.importance.run_id, [])),
                score=found.score,
                mean_s=found.mean_s,
                rank=found.rank,
                total=found.total,
            )
            for found in queries.neuron_importances(session, neuron_id)
        ]

    return db.read(q)
