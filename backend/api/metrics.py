"""Training-health metrics per run: ``GET /api/runs/{run_id}/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.store.models import Run, Snapshot, Space, SpaceSnapshot
from backend.store.queries import run_metrics

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
        epochs = [
            EpochMetricsOut(
                epoch=m.epoch,
                snapshot_id=m.snapshot_id,
                train_loss=m.train_loss,
                train_top1=m.train_top1,
                train_top5=m.train_top5,
                val_loss=m.val_loss,
                val_top1=m.val_top1,
                val_top5=m.val_top5,
                computed=m.computed,
                coverage=queries.finite(m.coverage),
                diversity=queries.finite(m.diversity),
                movement=queries.finite(m.movement),
            )
            for m in run_metrics(session, run_id, sid)
        ]
        return RunMetricsOut(run_id=run_id, space_id=sid, epochs=epochs)

    return db.read(q)
