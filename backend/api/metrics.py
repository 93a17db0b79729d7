"""Training-health metrics per run: ``GET /api/runs/{run_id}/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.store.models import Run, Snapshot, Space, SpaceSnapshot

from . import queries
from .deps import MAX_ID, DbDep, RunId
from .schemas import EpochMetricsOut, ErrorOut, RunMetricsOut

router = APIRouter(tags=["metrics"])


@router.get(
    "/runs/{run_id}/metrics",
    response_model=RunMetricsOut,
    responses={404: {"model": ErrorOut, "description": "Unknown run or space."}},
    summary="Per-epoch metrics of a run",
)
def get_metrics(
    run_id: RunId,
    db: DbDep,
    space_id: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_ID,
            description="Space for coverage/diversity/movement; default: the lowest-id space where the run "
            "has a computed snapshot.",
        ),
    ] = None,
) -> RunMetricsOut:
    """Accuracies and losses per epoch, and — in the chosen space — coverage, diversity (mean differential
    entropy of the embeddings) and movement (mean distance moved since the previous computed epoch)."""

    def q(session: Session) -> RunMetricsOut:
        queries.get_or_404(session, Run, run_id, "run")
        sid = space_id
        if sid is None:
            sid = session.scalar(
                select(SpaceSnapshot.space_id)
                .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
                .where(Snapshot.run_id == run_id)
                .order_by(SpaceSnapshot.space_id)
                .limit(1)
            )
        else:
            queries.get_or_404(session, Space, sid, "space")
        per_space: dict[int, SpaceSnapshot] = {}
        if sid is not None:
            per_space = {
                ss.snapshot_id: ss
                for ss in session.scalars(
                    select(SpaceSnapshot)
                    .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
                    .where(SpaceSnapshot.space_id == sid, Snapshot.run_id == run_id)
                )
            }
        epochs = []
        for s in queries.run_snapshots(session, run_id):
            ss = per_space.get(s.id)
            epochs.append(
                EpochMetricsOut(
                    epoch=s.epoch,
                    snapshot_id=s.id,
                    train_loss=s.train_loss,
                    train_top1=s.train_top1,
                    train_top5=s.train_top5,
                    val_loss=s.val_loss,
                    val_top1=s.val_top1,
                    val_top5=s.val_top5,
                    computed=ss is not None,
                    coverage=queries.finite(ss.coverage) if ss else None,
                    diversity=queries.finite(ss.diversity) if ss else None,
                    movement=queries.finite(ss.movement) if ss else None,
                )
            )
        return RunMetricsOut(run_id=run_id, space_id=sid, epochs=epochs)

    return db.read(q)
