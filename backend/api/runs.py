"""Runs, their snapshots and layers: ``/api/runs``, ``/api/runs/{run_id}``, ``/api/runs/{run_id}/layers``."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from backend.store import queries

from .convert import layer_out, run_summary
from .deps import DataDirDep, DbDep, RunId
from .removal import REMOVE_RESPONSES, remove_object
from .schemas import ErrorOut, LayerOut, RemovedOut, RunNeuronsOut, RunOut, RunSummaryOut, SnapshotOut

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=list[RunSummaryOut], summary="All training runs")
def list_runs(db: DbDep) -> list[RunSummaryOut]:
    """Every registered run, by id, with its number of snapshots."""

    def q(session: Session) -> list[RunSummaryOut]:
        counts = queries.snapshot_counts(session)
        return [run_summary(r, counts.get(r.id, 0)) for r in queries.list_runs(session)]

    return db.read(q)


@router.get(
    "/runs/{run_id}",
    response_model=RunOut,
    responses={404: {"model": ErrorOut}},
    summary="One run and its snapshots",
)
def get_run(run_id: RunId, db: DbDep) -> RunOut:
    """A run with its snapshots by epoch: accuracies, losses, and the spaces each is computed in."""

    def q(session: Session) -> RunOut:
        run = queries.get_run(session, run_id)
        snaps = queries.list_snapshots(session, run_id)
        spaces = queries.spaces_of_snapshots(session, (s.id for s in snaps))
        summary = run_summary(run, len(snaps))
        return RunOut(
            **summary.model_dump(),
            snapshots=[
                SnapshotOut(
                    id=s.id,
                    epoch=s.epoch,
                    train_loss=s.train_loss,
                    train_top1=s.train_top1,
                    train_top5=s.train_top5,
                    val_loss=s.val_loss,
                    val_top1=s.val_top1,
                    val_top5=s.val_top5,
                    computed_in=spaces[s.id],
                )
                for s in snaps
            ],
        )

    return db.read(q)


@router.get(
    "/runs/{run_id}/layers",
    response_model=list[LayerOut],
    responses={404: {"model": ErrorOut}},
    summary="The chosen layers of a run",
)
def list_layers(run_id: RunId, db: DbDep) -> list[LayerOut]:
    """The layers whose channels are the run's neurons, in network order (`idx`)."""

    return db.read(lambda s: [layer_out(layer) for layer in queries.list_layers(s, run_id)])


@router.get(
    "/runs/{run_id}/neurons",
    response_model=RunNeuronsOut,
    responses={404: {"model": ErrorOut}},
    summary="Every neuron of a run: id, layer index, channel",
)
def list_neurons(run_id: RunId, db: DbDep) -> RunNeuronsOut:
    """The run's neurons as parallel columns in (layer index, channel) order, so that a client can name the
    points of any snapshot (`neuron_id` → layer and channel) and find a neuron by layer and channel."""

    def q(session: Session) -> RunNeuronsOut:
        table = queries.run_neurons(session, run_id)
        return RunNeuronsOut(
            run_id=run_id,
            neuron_id=table.neuron_id.tolist(),
            layer_idx=table.layer_idx.tolist(),
            channel=table.channel.tolist(),
        )

    return db.read(q)


@router.delete(
    "/runs/{run_id}",
    response_model=RemovedOut,
    responses=REMOVE_RESPONSES,
    summary="Remove a run and its results",
)
def delete_run(run_id: RunId, db: DbDep, data_dir: DataDirDep) -> RemovedOut:
    """Remove the run with its snapshots, layers, neurons, their states in every space, patches (rows and files)
    and importance scores, in one transaction. Refused (409) while a queued or running job uses the run or a
    space is built on one of its snapshots. The run's checkpoint files are never touched."""
    return remove_object(db, data_dir, "run", run_id)
