"""The job queue (DESIGN.md §5): enqueue, claim, heartbeat, finish/fail, defer, cancel/retry/release.

Life of a job::

    enqueue → queued ──claim──▶ running ──finish/finishing──▶ done
                 ▲                 │ ├──fail(retry=False, or attempts used up)──▶ failed ──retry──▶ queued
                 │                 │ ├──cancel──▶ cancelled ──retry──▶ queued
                 │                 │ └──defer, too often──▶ failed
                 └──release / fail(retry=True) / defer / lease expired and claimed again──┘

Guarantees (on SQLite and PostgreSQL):

* **Dedupe** — ``Job.active_key`` (= ``dedupe_key`` while queued/running, NULL after) has a UNIQUE index,
  so two concurrent ``enqueue`` calls of the same kind + params create one row; the loser gets the
  existing job.
* **Atomic claim** — candidates by priority (higher first) then age; the chosen row is taken with a guarded
  ``UPDATE … WHERE id = :id AND <the state it was selected in>`` whose rowcount must be 1. On PostgreSQL the
  candidates are also selected ``FOR UPDATE SKIP LOCKED``; on SQLite the transaction holds the write lock.
* **Leases** — a running job belongs to ``worker_id`` until ``lease_expires_at``; :func:`heartbeat`
  extends it.
  A job whose lease expired (dead worker) is claimed again; every claim counts an attempt, and a job whose
  attempts are used up is marked failed instead of being claimed again.
* **Deferral** — a handler whose input is not ready yet (:func:`defer`) puts its job back with a not-before
  time that doubles with each deferral (:func:`defer_delay`, up to a cap); ``claim`` skips jobs not yet due, so
  a waiting job never stalls the others. Deferrals are counted (not as attempts); a job deferred more than
  ``max_deferrals`` times fails with the handler's reason.
* **One transaction for results** — :func:`finishing` marks the job done and commits the handler's rows
  together, only if the worker still owns the job; otherwise it raises :class:`LeaseLost` and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.store import dialects
from backend.store.config import Store
from backend.store.errors import ConflictError, LeaseLost, NotFoundError, StoreError
from backend.store.models import JOB_STATUSES, Job, utcnow

log = logging.getLogger(__name__)

ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")
FINAL_STATUSES: tuple[str, ...] = ("done", "failed", "cancelled")
_MAX_MESSAGE = 1000
_MAX_ERROR = 20000

DEFER_BASE_S = 2.0
"""The first deferral waits this long; each further one twice as long as the one before …"""
DEFER_CAP_S = 30.0
"""… but never longer than this."""
MAX_DEFERRALS = 20
"""A job deferred this many times fails at its next deferral (with the defaults: after about 8.5 minutes)."""


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of a job row (not a live ORM object). Timestamps are timezone-aware UTC."""

    id: int
    kind: str
    params: dict[str, Any]
    dedupe_key: str
    status: str
    priority: int
    attempts: int
    max_attempts: int
    progress: float
    message: str
    worker_id: str | None
    lease_expires_at: datetime | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None
    not_before: datetime | None = None
    deferrals: int = 0

    @property
    def active(self) -> bool:
        """True while the job is queued or running."""
        return self.status in ACTIVE_STATUSES


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def job_info(job: Job) -> JobInfo:
    """Snapshot an ORM ``Job`` as a :class:`JobInfo`."""
    return JobInfo(
        id=job.id,
        kind=job.kind,
        params=dict(job.params or {}),
        dedupe_key=job.dedupe_key,
        status=job.status,
        priority=job.priority,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        progress=float(job.progress or 0.0),
        message=job.message or "",
        worker_id=job.worker_id,
        lease_expires_at=_aware(job.lease_expires_at),
        heartbeat_at=_aware(job.heartbeat_at),
        created_at=_aware(job.created_at),  # type: ignore[arg-type]
        started_at=_aware(job.started_at),
        finished_at=_aware(job.finished_at),
        error=job.error,
        result=dict(job.result) if job.result is not None else None,
        not_before=_aware(job.not_before),
        deferrals=int(job.deferrals or 0),
    )


def canonical_params(params: dict[str, Any] | None) -> str:
    """The canonical JSON text of job params (sorted keys, compact); ValueError if not JSON."""
    try:
        return json.dumps(
            params or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"job params are not plain JSON: {exc}") from exc


def dedupe_key(kind: str, params: dict[str, Any] | None) -> str:
    """sha256 hex of ``kind`` and :func:`canonical_params` — equal for identical jobs."""
    return hashlib.sha256(f"{kind}\n{canonical_params(params)}".encode()).hexdigest()


def default_worker_id() -> str:
    """A worker id unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _lease_until(now: datetime, lease_s: float) -> datetime:
    if lease_s <= 0:
        raise ValueError(f"lease_s must be positive, got {lease_s}")
    return now + timedelta(seconds=lease_s)


def _get(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job


def _owned(job_id: int, worker_id: str) -> Any:
    return and_(Job.id == job_id, Job.status == "running", Job.worker_id == worker_id)


# --------------------------------------------------------------------------------------------------
def enqueue(
    store: Store,
    kind: str,
    params: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = 3,
) -> tuple[JobInfo, bool]:
    """Queue a job; returns ``(job, created)``.

    If an identical job (same ``kind`` and canonical ``params``) is already queued or running, nothing is
    added and ``(that job, False)`` is returned — its priority is raised to ``priority`` if that is higher.
    Race-safe: concurrent callers hit the UNIQUE index on ``active_key``; the losers return the winner's job.
    """
    for _ in range(5):
        with store.session() as s:
            found = enqueue_in(s, kind, params, priority, max_attempts)
        if found is not None:
            info, created = found
            if created:
                log.info("enqueued job %d (%s)", info.id, kind)
            return info, created
        log.debug("enqueue %s: lost a race to an identical job; reading it", kind)
    raise StoreError(f"could not enqueue {kind} job: an identical job kept appearing and disappearing")


def enqueue_in(
    session: Session,
    kind: str,
    params: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = 3,
) -> tuple[JobInfo, bool] | None:
    """:func:`enqueue` inside the caller's transaction — e.g. a handler queueing follow-up jobs in the same
    transaction as its results (:func:`finishing`), so that both commit or neither does.

    Returns ``(job, created)``, or None when a concurrent identical job won the race (a savepoint rolled
    back; the caller's transaction is intact — read again or give up).
    """
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
        raise ValueError(f"job kind must be a non-empty string of at most 64 characters, got {kind!r}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be ≥ 1, got {max_attempts}")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"job params must be a JSON object (dict), got {type(params).__name__}")
    key = dedupe_key(kind, params)
    existing = session.scalars(select(Job).where(Job.active_key == key)).first()
    if existing is not None:
        if existing.status == "queued" and priority > existing.priority:
            existing.priority = priority
            session.flush()
        return job_info(existing), False
    job = Job(
        kind=kind,
        params=json.loads(canonical_params(params)),
        dedupe_key=key,
        active_key=key,
        status="queued",
        priority=int(priority),
        attempts=0,
        max_attempts=int(max_attempts),
        progress=0.0,
        message="queued",
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:
        return None
    return job_info(job), True


def claim_candidates(now: datetime, kinds: Sequence[str] | None, dialect_name: str) -> Select[tuple[Job]]:
    """The claim's candidate query at ``now`` (naive UTC): queued jobs that are due (no ``not_before``, or one
    that has passed) and running jobs whose lease expired; highest priority, then oldest; 8 at most.

    The same statement on every dialect; on PostgreSQL :func:`dialects.lock_for_claim` adds
    ``FOR UPDATE SKIP LOCKED``.
    """
    stmt = select(Job).where(
        or_(
            and_(Job.status == "queued", or_(Job.not_before.is_(None), Job.not_before <= now)),
            and_(Job.status == "running", Job.lease_expires_at < now),
        )
    )
    if kinds is not None:
        stmt = stmt.where(Job.kind.in_(list(kinds)))
    stmt = stmt.order_by(Job.priority.desc(), Job.created_at, Job.id).limit(8)
    return dialects.lock_for_claim(stmt, dialect_name)


def claim(
    store: Store, worker_id: str, kinds: Sequence[str] | None = None, lease_s: float = 60.0
) -> JobInfo | None:
    """Atomically take the next job (highest priority, then oldest) for ``worker_id``; None if there is none.

    Skips queued jobs whose ``not_before`` has not come yet (deferred, see :func:`defer`).
    Also takes running jobs whose lease expired (their worker died). Each claim counts an attempt; a job whose
    ``attempts`` already reached ``max_attempts`` is marked failed ("worker lost …") instead and skipped.
    ``kinds`` restricts the job kinds this worker accepts.
    """
    if not worker_id:
        raise ValueError("worker_id must be a non-empty string")
    with store.session() as s:
        for _ in range(100):
            now = utcnow()
            until = _lease_until(now, lease_s)
            candidates = list(s.scalars(claim_candidates(now, kinds, store.dialect)).all())
            if not candidates:
                return None
            for job in candidates:
                guard = and_(
                    Job.id == job.id,
                    Job.status == job.status,
                    Job.attempts == job.attempts,
                    (Job.worker_id.is_(None) if job.worker_id is None else Job.worker_id == job.worker_id),
                )
                if job.attempts >= job.max_attempts:
                    error = (
                        f"worker lost {job.attempts} times (last: {job.worker_id}); gave up after "
                        f"{job.max_attempts} attempts"
                    )
                    res = s.execute(
                        update(Job)
                        .where(guard)
                        .values(
                            status="failed",
                            active_key=None,
                            finished_at=now,
                            lease_expires_at=None,
                            error=error,
                            message=error,
                        )
                        .execution_options(synchronize_session=False)
                    )
                    if res.rowcount == 1:
                        log.warning("job %d failed: %s", job.id, error)
                    continue
                reclaimed = job.status == "running"
                message = f"reclaimed from lost worker {job.worker_id}" if reclaimed else "started"
                res = s.execute(
                    update(Job)
                    .where(guard)
                    .values(
                        status="running",
                        worker_id=worker_id,
                        attempts=job.attempts + 1,
                        lease_expires_at=until,
                        heartbeat_at=now,
                        started_at=now,
                        progress=0.0,
                        message=message,
                    )
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:
                    s.flush()
                    info = job_info(_get(s, job.id))
                    log.info(
                        "%s claimed job %d (%s), attempt %d", worker_id, info.id, info.kind, info.attempts
                    )
                    return info
        return None


def heartbeat(
    store: Store,
    job_id: int,
    worker_id: str,
    progress: float | None = None,
    message: str | None = None,
    lease_s: float = 60.0,
) -> bool:
    """Extend the lease and record progress (0–1, clipped) and a message.

    Returns False when the worker no longer owns the job (cancelled, or taken by another worker after the
    lease expired): the worker must stop working on it and must not write its results.
    """
    now = utcnow()
    values: dict[str, Any] = {"lease_expires_at": _lease_until(now, lease_s), "heartbeat_at": now}
    if progress is not None:
        values["progress"] = min(1.0, max(0.0, float(progress)))
    if message is not None:
        values["message"] = message[:_MAX_MESSAGE]
    with store.session() as s:
        res = s.execute(
            update(Job)
            .where(_owned(job_id, worker_id))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return res.rowcount == 1


@contextmanager
def finishing(
    store: Store, job_id: int, worker_id: str, result: dict[str, Any] | None = None
) -> Iterator[Session]:
    """Write a job's results and mark it done in ONE transaction, only while ``worker_id`` owns the job.

    Usage (compute first, then write inside the block)::

        with finishing(store, job.id, worker_id, result={"neurons": n}) as session:
            session.add_all(rows)

    Raises :class:`LeaseLost` on entry (nothing written) if the job was cancelled or taken by another worker.
    If the block raises, everything is rolled back and the job stays running (the caller then ``fail``s it).
    The job row is locked from entry to commit, so no other worker can take it in between.
    """
    if result is not None:
        try:
            canonical_params(result)  # must be JSON-able
        except ValueError as exc:
            raise ValueError(f"job {job_id} result is not plain JSON: {exc}") from None
    with store.session() as s:
        now = utcnow()
        res = s.execute(
            update(Job)
            .where(_owned(job_id, worker_id))
            .values(
                status="done",
                active_key=None,
                progress=1.0,
                message="done",
                finished_at=now,
                heartbeat_at=now,
                lease_expires_at=None,
                error=None,
                result=result,
            )
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:
            job = s.get(Job, job_id)
            state = "missing" if job is None else f"{job.status}, owned by {job.worker_id}"
            raise LeaseLost(
                f"job {job_id} is no longer owned by worker {worker_id} ({state}); results discarded"
            )
        yield s
    log.info("job %d done", job_id)


def finish(store: Store, job_id: int, worker_id: str, result: dict[str, Any] | None = None) -> JobInfo:
    """Mark a job done with ``result`` (JSON). Raises :class:`LeaseLost` if the worker no longer owns it."""
    with finishing(store, job_id, worker_id, result=result):
        pass
    return get_job(store, job_id)


def fail(store: Store, job_id: int, worker_id: str, error: str, retry: bool = False) -> bool:
    """Record a failure of the running job with a readable ``error``.

    ``retry=True`` (transient trouble, e.g. out of memory) requeues the job while attempts remain;
    ``retry=False`` (deterministic user error, e.g. a corrupt checkpoint) marks it failed at once.
    Returns False (and changes nothing) if the worker no longer owns the job.
    """
    error = (error or "unknown error")[:_MAX_ERROR]
    first_line = error.strip().splitlines()[0][:_MAX_MESSAGE] if error.strip() else "error"
    now = utcnow()
    with store.session() as s:
        job = s.scalars(select(Job).where(_owned(job_id, worker_id))).first()
        if job is None:
            return False
        if retry and job.attempts < job.max_attempts:
            values: dict[str, Any] = {
                "status": "queued",
                "worker_id": None,
                "lease_expires_at": None,
                "error": error,
                "message": f"attempt {job.attempts} failed, will retry: {first_line}"[:_MAX_MESSAGE],
            }
        else:
            values = {
                "status": "failed",
                "active_key": None,
                "lease_expires_at": None,
                "finished_at": now,
                "error": error,
                "message": first_line,
            }
        res = s.execute(
            update(Job)
            .where(_owned(job_id, worker_id))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        ok = res.rowcount == 1
    if ok:
        log.warning("job %d %s: %s", job_id, values["status"], first_line)
    return ok


def release(store: Store, job_id: int, worker_id: str) -> bool:
    """Give a running job back to the queue without counting the attempt (the worker is shutting down).

    Returns False if the worker no longer owns the job.
    """
    with store.session() as s:
        job = s.scalars(select(Job).where(_owned(job_id, worker_id))).first()
        if job is None:
            return False
        res = s.execute(
            update(Job)
            .where(_owned(job_id, worker_id))
            .values(
                status="queued",
                worker_id=None,
                lease_expires_at=None,
                attempts=max(0, job.attempts - 1),
                progress=0.0,
                message=f"released by worker {worker_id}",
            )
            .execution_options(synchronize_session=False)
        )
        return res.rowcount == 1


def defer_delay(deferrals: int, base_s: float = DEFER_BASE_S, cap_s: float = DEFER_CAP_S) -> float:
    """Seconds a job waits after its ``deferrals + 1``-th deferral: ``base_s · 2^deferrals``, at most ``cap_s``."""
    if base_s <= 0 or cap_s <= 0:
        raise ValueError(f"deferral delays must be positive, got base {base_s} s and cap {cap_s} s")
    return min(cap_s, base_s * 2.0 ** min(deferrals, 64))


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def defer(
    store: Store,
    job_id: int,
    worker_id: str,
    reason: str,
    gave_up: str | None = None,
    base_s: float = DEFER_BASE_S,
    cap_s: float = DEFER_CAP_S,
    max_deferrals: int = MAX_DEFERRALS,
) -> JobInfo | None:
    """Put a running job back in the queue because its input is not ready yet (``reason``, e.g. "space 3 is not
    built yet"), not to be claimed before ``now + defer_delay(deferrals)``; the attempt is not counted.

    A job already deferred ``max_deferrals`` times fails instead, with ``gave_up`` (a reason that says why the
    input never came, default ``reason``) and how long it waited. Returns the job as it is now, or None if
    ``worker_id`` no longer owns it.
    """
    if max_deferrals < 0:
        raise ValueError(f"max_deferrals must be ≥ 0, got {max_deferrals}")
    reason = (reason or "input not ready").strip()
    now = utcnow()
    with store.session() as s:
        job = s.scalars(select(Job).where(_owned(job_id, worker_id))).first()
        if job is None:
            return None
        done = int(job.deferrals or 0)
        if done >= max_deferrals:
            waited = (now - (job.created_at or now)).total_seconds()
            error = f"{gave_up or reason} (deferred {done} times over {_duration(waited)}, gave up)"[
                :_MAX_ERROR
            ]
            values: dict[str, Any] = {
                "status": "failed",
                "active_key": None,
                "lease_expires_at": None,
                "finished_at": now,
                "error": error,
                "message": error[:_MAX_MESSAGE],
            }
        else:
            delay = defer_delay(done, base_s, cap_s)
            values = {
                "status": "queued",
                "worker_id": None,
                "lease_expires_at": None,
                "attempts": max(0, job.attempts - 1),
                "deferrals": done + 1,
                "not_before": now + timedelta(seconds=delay),
                "progress": 0.0,
                "message": f"waiting: {reason} (deferred {done + 1} times; next try in {_duration(delay)})"[
                    :_MAX_MESSAGE
                ],
            }
        res = s.execute(
            update(Job)
            .where(_owned(job_id, worker_id))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:
            return None
        info = job_info(_get(s, job_id))
    if info.status == "failed":
        log.warning("job %d failed: %s", job_id, info.error)
    else:
        log.info("job %d deferred (%d): %s", job_id, info.deferrals, reason)
    return info


def cancel(store: Store, job_id: int) -> JobInfo:
    """Cancel a queued or running job (a running job's worker sees ``heartbeat`` return False).

    Cancelling a cancelled job returns it unchanged; a done or failed job raises :class:`ConflictError`;
    an unknown id raises :class:`NotFoundError`.
    """
    with store.session() as s:
        job = _get(s, job_id)
        if job.status == "cancelled":
            return job_info(job)
        if job.status in ("done", "failed"):
            raise ConflictError(f"job {job_id} cannot be cancelled: it is already {job.status}")
        job.status = "cancelled"
        job.active_key = None
        job.finished_at = utcnow()
        job.lease_expires_at = None
        job.message = "cancelled"
        s.flush()
        info = job_info(job)
    log.info("job %d cancelled", job_id)
    return info


def retry(store: Store, job_id: int) -> JobInfo:
    """Put a failed or cancelled job back in the queue with its attempts reset.

    Raises :class:`ConflictError` if the job is queued, running or done, or if an identical job is active now;
    :class:`NotFoundError` for an unknown id.
    """
    with store.session() as s:
        job = _get(s, job_id)
        if job.status not in ("failed", "cancelled"):
            raise ConflictError(
                f"job {job_id} cannot be retried: it is {job.status}, not failed or cancelled"
            )
        twin = s.scalars(select(Job).where(Job.active_key == job.dedupe_key)).first()
        if twin is not None:
            raise ConflictError(
                f"job {job_id} cannot be retried: identical job {twin.id} is already {twin.status}"
            )
        job.status = "queued"
        job.active_key = job.dedupe_key
        job.attempts = 0
        job.worker_id = None
        job.lease_expires_at = None
        job.started_at = None
        job.finished_at = None
        job.progress = 0.0
        job.message = "queued again"
        job.error = None
        job.result = None
        job.not_before = None
        job.deferrals = 0
        try:
            s.flush()
        except IntegrityError as exc:
            raise ConflictError(
                f"job {job_id} cannot be retried: an identical job is already active"
            ) from exc
        info = job_info(job)
    log.info("job %d queued again", job_id)
    return info


def remove(store: Store, job_id: int) -> JobInfo:
    """Delete a job's row, whatever its state; returns the job as it was removed (a queued or running job is
    cancelled first: its worker's next heartbeat returns False and its results are never written). Raises
    :class:`NotFoundError` for an unknown id."""
    with store.session() as s:
        job = _get(s, job_id)
        if job.status in ACTIVE_STATUSES:
            job.status = "cancelled"
            job.active_key = None
            job.finished_at = utcnow()
            job.lease_expires_at = None
            job.message = "cancelled"
        info = job_info(job)
        s.delete(job)
    log.info("job %d removed", job_id)
    return info


def active_jobs_in(session: Session, kind: str | None = None) -> list[JobInfo]:
    """The queued and running jobs (of ``kind``, or all), oldest first, inside the caller's transaction — e.g. to
    find the job that will make an input another request needs."""
    stmt = select(Job).where(Job.status.in_(ACTIVE_STATUSES)).order_by(Job.id)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    return [job_info(job) for job in session.scalars(stmt).all()]


def latest_job_in(session: Session, kind: str, params: dict[str, Any] | None) -> JobInfo | None:
    """The newest job of ``kind`` with exactly these (canonical) params, whatever its status, inside the
    caller's transaction — e.g. to tell whether an input's job failed; None if there never was one."""
    job = session.scalars(
        select(Job).where(Job.dedupe_key == dedupe_key(kind, params)).order_by(Job.id.desc())
    ).first()
    return job_info(job) if job is not None else None


def wake_in(session: Session, kind: str, match: dict[str, Any]) -> list[int]:
    """Make the queued (deferred) jobs of ``kind`` whose params hold every item of ``match`` claimable now,
    inside the caller's transaction — called when the input they wait for has just been made, so they do not
    sit out the rest of their backoff. Returns their ids."""
    waiting = session.scalars(
        select(Job).where(Job.kind == kind, Job.status == "queued", Job.not_before.is_not(None))
    ).all()
    woken = [job.id for job in waiting if all((job.params or {}).get(k) == v for k, v in match.items())]
    if woken:
        session.execute(
            update(Job)
            .where(Job.id.in_(woken), Job.status == "queued")
            .values(not_before=None)
            .execution_options(synchronize_session=False)
        )
    return woken


def get_job(store: Store, job_id: int) -> JobInfo:
    """The job with this id; raises :class:`NotFoundError` if there is none."""
    with store.session(readonly=True) as s:
        return job_info(_get(s, job_id))


def list_jobs(
    store: Store, status: str | Sequence[str] | None = None, limit: int = 100, kind: str | None = None
) -> list[JobInfo]:
    """Jobs, newest first, optionally filtered by status (one or several) and kind; at most ``limit``."""
    statuses = [status] if isinstance(status, str) else list(status) if status is not None else None
    if statuses is not None:
        unknown = [x for x in statuses if x not in JOB_STATUSES]
        if unknown:
            raise ValueError(f"unknown job status {unknown[0]!r}; expected one of {', '.join(JOB_STATUSES)}")
    stmt = select(Job).order_by(Job.id.desc()).limit(max(0, int(limit)))
    if statuses is not None:
        stmt = stmt.where(Job.status.in_(statuses))
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    with store.session(readonly=True) as s:
        return [job_info(j) for j in s.scalars(stmt).all()]
