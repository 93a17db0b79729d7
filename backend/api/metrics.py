"""Training-health metrics per run: ``GET /api/runs/{run_id}/metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from backend.store import queries

from .convert import finite
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
        queries.get_run(session, run_id)
        sid = space_id
        if sid is None:
            sid = queries.default_space_of_run(session, run_id)
        else:
            queries.get_space(session, sid)
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
                coverage=finite(m.coverage),
                diversity=finite(m.diversity),
                movement=finite(m.movement),
            )
            for m in queries.run_metrics(session, run_id, sid)
        ]
        return RunMetricsOut(run_id=run_id, space_id=sid, epochs=epochs)

    return db.read(q)
