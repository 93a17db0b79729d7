"""Watching runs while they train (issue 16): alerts, live heartbeats and the change feed behind ``/api/events``.

Three small things the tracker / watcher (``worker/tracker.py``, ``worker/watch.py``) write and the API reads:

* ``alerts`` — a run's concept diversity (or movement) left the band of a reference run, or dropped faster than
  a threshold: one row per (run, space, metric, rule), with the epoch it started and a one-sentence reason.
* ``run_heartbeats`` — a tracker or watcher feeding a run beats every few seconds; a run whose last beat is
  recent (and not ended) is *live* (the page's "live" badge).
* the change feed: what was placed, which jobs moved and which alerts appeared since a cursor, read cheaply by
  the server's event stream.

Both tables are new in schema v2 databases too: ``ensure_schema`` creates missing tables, no migration needed.
Imports neither torch nor FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.store.models import Base, Job, Run, Snapshot, SpaceSnapshot, utcnow

#: A run is live while its last heartbeat is younger than this (trackers beat every ``HEARTBEAT_S``).
LIVE_WITHIN_S = 30.0
#: How often trackers and watchers beat.
HEARTBEAT_S = 5.0
METRICS = ("diversity", "movement")
RULES = ("band", "drop")


class Alert(Base):
    """A training-health alarm on a run in a space (see the module docstring)."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("run_id", "space_id", "metric", "rule", name="uq_alerts_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    reference_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    metric: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(32))
    start_epoch: Mapped[int] = mapped_column(Integer)
    accuracy_epoch: Mapped[int | None] = mapped_column(Integer)
    """First epoch the run's accuracy fell behind the reference's (None: not yet / no reference)."""
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RunHeartbeat(Base):
    """The last sign of life of whatever feeds a run while it trains (``tracker`` or ``watch``)."""

    __tablename__ = "run_heartbeats"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    beat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)


@dataclass(frozen=True)
class AlertInfo:
    """An alert as the API and the tracker show it."""

    id: int
    run_id: int
    run: str
    space_id: int
    reference_run_id: int | None
    metric: str
    rule: str
    start_epoch: int
    accuracy_epoch: int | None
    lead: int | None
    reason: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Placed:
    """A snapshot newly placed in a space (one ``snapshot`` event)."""

    space_id: int
    snapshot_id: int
    run_id: int
    epoch: int
    computed_at: datetime


@dataclass(frozen=True)
class JobState:
    """What the event stream reports of a job."""

    id: int
    kind: str
    status: str
    progress: float
    message: str


def record_alert(
    session: Session,
    run_id: int,
    space_id: int,
    metric: str,
    rule: str,
    start_epoch: int,
    reason: str,
    reference_run_id: int | None = None,
    accuracy_epoch: int | None = None,
) -> tuple[Alert, bool]:
    """Insert or refresh the alert of (run, space, metric, rule).

    Args:
        session: the caller's transaction.
        run_id: the watched run.
        space_id: the space whose embedding the metric comes from.
        metric: ``diversity`` or ``movement``.
        rule: ``band`` (left the reference's band) or ``drop`` (fell faster than a threshold).
        start_epoch: the epoch the condition started.
        reason: one sentence for people.
        reference_run_id: the reference run of a ``band`` alert.
        accuracy_epoch: first epoch the accuracy fell behind the reference's, when known.

    Returns:
        ``(row, created)``: created is True for a new alert (the tracker prints only those).
    """
    if metric not in METRICS or rule not in RULES:
        raise ValueError(f"alert metric must be one of {METRICS} and rule one of {RULES}")
    row = session.scalars(
        select(Alert).where(
            Alert.run_id == run_id, Alert.space_id == space_id, Alert.metric == metric, Alert.rule == rule
        )
    ).first()
    created = row is None
    if row is None:
        row = Alert(run_id=run_id, space_id=space_id, metric=metric, rule=rule)
        session.add(row)
    row.start_epoch, row.reason = int(start_epoch), reason
    row.reference_run_id, row.accuracy_epoch = reference_run_id, accuracy_epoch
    row.updated_at = utcnow()
    session.flush()
    return row, created


def list_alerts(session: Session, run_id: int | None = None, after_id: int = 0) -> list[AlertInfo]:
    """Alerts (of one run, or all), oldest first; ``after_id`` skips those already seen."""
    stmt = (
        select(Alert, Run.name)
        .join(Run, Run.id == Alert.run_id)
        .where(Alert.id > after_id)
        .order_by(Alert.id)
    )
    if run_id is not None:
        stmt = stmt.where(Alert.run_id == run_id)
    return [_alert_info(row, name) for row, name in session.execute(stmt).all()]


def alerts_changed_since(session: Session, since: datetime) -> list[AlertInfo]:
    """Alerts created or refreshed after ``since`` (the event stream's feed)."""
    stmt = (
        select(Alert, Run.name)
        .join(Run, Run.id == Alert.run_id)
        .where(Alert.updated_at > since)
        .order_by(Alert.id)
    )
    return [_alert_info(row, name) for row, name in session.execute(stmt).all()]


def _alert_info(row: Alert, run_name: str) -> AlertInfo:
    lead = row.accuracy_epoch - row.start_epoch if row.accuracy_epoch is not None else None
    return AlertInfo(
        id=row.id,
        run_id=row.run_id,
        run=run_name,
        space_id=row.space_id,
        reference_run_id=row.reference_run_id,
        metric=row.metric,
        rule=row.rule,
        start_epoch=row.start_epoch,
        accuracy_epoch=row.accuracy_epoch,
        lead=lead,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def beat(session: Session, run_id: int, source: str, ended: bool = False) -> None:
    """Record that ``source`` (``tracker`` / ``watch``) still feeds ``run_id``, or that it stopped (``ended``)."""
    row = session.get(RunHeartbeat, run_id)
    if row is None:
        row = RunHeartbeat(run_id=run_id, source=source)
        session.add(row)
    now = utcnow()
    row.source, row.beat_at, row.ended_at = source, now, (now if ended else None)


def live_runs(session: Session, within_s: float = LIVE_WITHIN_S) -> dict[int, datetime]:
    """Runs whose feeder beat within ``within_s`` seconds and has not ended: run id → last beat."""
    cutoff = utcnow() - timedelta(seconds=within_s)
    rows = session.execute(
        select(RunHeartbeat.run_id, RunHeartbeat.beat_at).where(
            RunHeartbeat.beat_at >= cutoff, RunHeartbeat.ended_at.is_(None)
        )
    ).all()
    return {int(run_id): at for run_id, at in rows}


def placed_since(session: Session, since: datetime) -> list[Placed]:
    """Snapshots placed in any space after ``since`` (by ``computed_at``), oldest first."""
    rows = session.execute(
        select(
            SpaceSnapshot.space_id,
            SpaceSnapshot.snapshot_id,
            Snapshot.run_id,
            Snapshot.epoch,
            SpaceSnapshot.computed_at,
        )
        .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
        .where(SpaceSnapshot.computed_at > since)
        .order_by(SpaceSnapshot.computed_at)
    ).all()
    return [Placed(int(a), int(b), int(c), int(d), e) for a, b, c, d, e in rows]


def jobs_touched_since(session: Session, since: datetime) -> list[JobState]:
    """Jobs that are active, or were created, beat or ended after ``since``."""
    rows = session.execute(
        select(Job.id, Job.kind, Job.status, Job.progress, Job.message).where(
            or_(
                Job.status.in_(("queued", "running")),
                Job.created_at > since,
                Job.heartbeat_at > since,
                Job.finished_at > since,
            )
        )
    ).all()
    return [JobState(int(i), k, s, float(p or 0.0), m or "") for i, k, s, p, m in rows]
