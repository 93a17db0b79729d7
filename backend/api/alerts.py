"""Runs watched while they train (issue 16): ``GET /api/alerts`` (the diversity alarm) and ``GET /api/live``
(which runs a tracker or watcher still feeds — the page's "live" badge)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from backend.store import alerts, queries

from .deps import MAX_ID, DbDep
from .schemas import ErrorOut

router = APIRouter(tags=["live"])


class AlertOut(BaseModel):
    """A training-health alarm raised on a run while it trained."""

    id: int
    run_id: int
    run: str = Field(description="The run's name.")
    space_id: int = Field(description="The space whose embedding the metric comes from.")
    reference_run_id: int | None = Field(description="The reference run of a `band` alert.")
    metric: str = Field(description="`diversity` or `movement`.")
    rule: str = Field(
        description="`band`: left the reference run's band; `drop`: fell faster than a threshold."
    )
    start_epoch: int = Field(description="The epoch the condition started.")
    accuracy_epoch: int | None = Field(description="First epoch the accuracy fell behind the reference's.")
    lead: int | None = Field(description="Epochs the alert came before the accuracy fell behind.")
    reason: str = Field(description="One sentence.")
    created_at: datetime
    updated_at: datetime


class LiveRunOut(BaseModel):
    """A run still being fed by a tracker or watcher."""

    run_id: int
    beat_at: datetime = Field(description="Its last heartbeat (UTC).")


class LiveOut(BaseModel):
    """The runs that are live: a heartbeat within `within_s` seconds and not ended."""

    within_s: float
    runs: list[LiveRunOut]


def alert_out(info: alerts.AlertInfo) -> AlertOut:
    """The API form of a stored alert."""
    return AlertOut(**vars(info))


@router.get(
    "/alerts",
    response_model=list[AlertOut],
    responses={404: {"model": ErrorOut, "description": "Unknown run."}},
    summary="Training-health alerts",
)
def list_alerts(
    db: DbDep,
    run_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only this run's alerts.")] = None,
) -> list[AlertOut]:
    """Alerts raised while runs trained (oldest first): diversity (or movement) out of a reference run's band,
    or diversity dropping faster than a threshold, with the epoch each started and a one-sentence reason."""

    def q(session: Session) -> list[AlertOut]:
        if run_id is not None:
            queries.get_run(session, run_id)
        return [alert_out(a) for a in alerts.list_alerts(session, run_id)]

    return db.read(q)


@router.get("/live", response_model=LiveOut, summary="Runs still training")
def live(db: DbDep) -> LiveOut:
    """Runs whose tracker or watcher beat within the last few seconds (the page's "live" badge)."""

    def q(session: Session) -> LiveOut:
        beats = alerts.live_runs(session)
        runs = [LiveRunOut(run_id=r, beat_at=at) for r, at in sorted(beats.items())]
        return LiveOut(within_s=alerts.LIVE_WITHIN_S, runs=runs)

    return db.read(q)
