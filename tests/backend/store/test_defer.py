"""Deferral in the queue (issue 11.1): a not-before time with exponential backoff, skipped by ``claim`` on both
dialects, counted, and a job deferred too often fails with the handler's reason."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.store import Store, claim, enqueue, get_job, open_store, retry
from backend.store import queue as job_queue
from backend.store.schema import SCHEMA_VERSION


def _due_now(store: Store, job_id: int) -> None:
    """Move a deferred job's not-before time into the past (instead of sleeping)."""
    with store.session() as s:
        s.execute(
            text("UPDATE jobs SET not_before = :t WHERE id = :id"), {"t": "2000-01-01 00:00:00", "id": job_id}
        )


def test_deferral_sets_not_before_with_doubling_backoff_and_claim_skips_it(store: Store) -> None:
    high, _ = enqueue(store, "add_snapshot", {"space_id": 1}, priority=1000)
    low, _ = enqueue(store, "ok", {"i": 1}, priority=0)
    delays = []
    for n in range(1, 6):
        job = claim(store, "w")
        assert job is not None and job.id == high.id
        deferred = job_queue.defer(store, job.id, "w", "space 1 is not built yet", base_s=2.0, cap_s=10.0)
        assert deferred.status == "queued" and deferred.deferrals == n and deferred.attempts == 0
        assert deferred.worker_id is None and deferred.lease_expires_at is None
        assert "space 1 is not built yet" in deferred.message
        delays.append((deferred.not_before - datetime.now(UTC)).total_seconds())
        if n == 1:
            # not due yet: the claim skips it and takes the low-priority job
            other = claim(store, "w")
            assert other is not None and other.id == low.id
            assert claim(store, "w") is None
        _due_now(store, high.id)
    expected = [2, 4, 8, 10, 10]
    for got, want in zip(delays, expected, strict=True):
        assert want - 1.0 < got <= want + 0.01


def test_too_many_deferrals_fail_the_job_with_the_reason(store: Store) -> None:
    job, _ = enqueue(store, "add_snapshot", {"space_id": 3})
    for _ in range(3):
        claimed = claim(store, "w")
        assert claimed is not None
        job_queue.defer(
            store,
            claimed.id,
            "w",
            "space 3 is not built yet",
            gave_up="space 3 was never built: its build job failed or was cancelled",
            max_deferrals=2,
            base_s=0.01,
        )
        _due_now(store, job.id)
    final = get_job(store, job.id)
    assert final.status == "failed" and not final.active and final.deferrals == 2
    assert final.error.startswith("space 3 was never built: its build job failed or was cancelled")
    assert "deferred 2 times" in final.error
    # retry starts afresh
    again = retry(store, job.id)
    assert (again.status, again.deferrals, again.not_before) == ("queued", 0, None)


def test_defer_needs_ownership(store: Store) -> None:
    job, _ = enqueue(store, "a", {})
    claimed = claim(store, "w")
    assert claimed is not None
    assert job_queue.defer(store, job.id, "other-worker", "not mine") is None
    assert get_job(store, job.id).status == "running"


def test_claim_statement_has_the_same_not_before_filter_on_postgresql() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    now = datetime.now(UTC).replace(tzinfo=None)
    pg = str(job_queue.claim_candidates(now, ["a"], "postgresql").compile(dialect=postgresql.dialect()))
    lite = str(job_queue.claim_candidates(now, ["a"], "sqlite").compile(dialect=sqlite.dialect()))
    for sql in (pg, lite):
        assert "jobs.status = " in sql and "jobs.not_before IS NULL OR jobs.not_before <= " in sql
        assert "jobs.lease_expires_at < " in sql
    assert pg.endswith("FOR UPDATE SKIP LOCKED")
    assert "FOR UPDATE" not in lite


def test_v1_database_gains_the_deferral_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    st = open_store(str(path))
    job, _ = enqueue(st, "demo", {"n": 1})
    st.dispose()
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE jobs DROP COLUMN not_before")
    con.execute("ALTER TABLE jobs DROP COLUMN deferrals")
    con.execute("UPDATE schema_info SET schema_version = 1")
    con.commit()
    con.close()
    st = open_store(str(path))
    try:
        with st.session(readonly=True) as s:
            assert s.execute(text("SELECT schema_version FROM schema_info")).scalar() == SCHEMA_VERSION >= 2
        got = get_job(st, job.id)
        assert (got.status, got.deferrals, got.not_before) == ("queued", 0, None)
        claimed = claim(st, "w")
        assert claimed is not None and claimed.id == job.id
        assert job_queue.defer(st, job.id, "w", "later") is not None
    finally:
        st.dispose()


@pytest.mark.parametrize("n", [0, 1, 5, 30])
def test_backoff_delay(n: int) -> None:
    got = job_queue.defer_delay(n, base_s=2.0, cap_s=60.0)
    assert got == min(60.0, 2.0 * 2**n)
    assert timedelta(seconds=got) <= timedelta(seconds=60)
