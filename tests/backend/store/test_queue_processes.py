"""The queue under real concurrency: several worker PROCESSES (spawn) on one SQLite file.

A module-wide pool of 4 spawned processes is started once (process start-up dominates on 2 busy cores); each
test hands one task per simulated worker to it, the tasks start together at a common instant, and every
task records its process id so that the test checks the workers really were distinct processes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from multiprocessing.pool import Pool
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.store import Dataset, Store, claim, enqueue, finishing, list_jobs, open_store

N_JOBS = 16
POOL_SIZE = 4


def _ready(delay: float) -> int:
    """Pool warm-up: import this module in a worker process, hold it briefly, return its pid."""
    time.sleep(delay)
    return os.getpid()


def _wait_until(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def _worker(db: str, worker_id: str, start_at: float) -> tuple[int, list[dict[str, int | str]]]:
    """Claim jobs until none is left, writing one result row per job with ``finishing``.

    Returns (pid, claims)."""
    store = open_store(db)
    claims: list[dict[str, int | str]] = []
    _wait_until(start_at)
    while (job := claim(store, worker_id, lease_s=60)) is not None:
        claims.append({"job": job.id, "worker": worker_id, "attempt": job.attempts})
        with finishing(store, job.id, worker_id, result={"by": worker_id}) as s:
            s.add(Dataset(name=f"result-of-job-{job.id}", root=worker_id, n_images=0, class_names=[]))
    store.dispose()
    return os.getpid(), claims


def _enqueuer(db: str, start_at: float) -> tuple[int, list[tuple[int, bool]]]:
    """Open (create) the store and enqueue the same job several times, all from the common start instant."""
    _wait_until(start_at)
    store = open_store(db)
    answers = [enqueue(store, "build_space", {"base": "healthy@9", "k": 10}) for _ in range(5)]
    store.dispose()
    return os.getpid(), [(j.id, created) for j, created in answers]


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    """Four spawned worker processes with this module imported."""
    with mp.get_context("spawn").Pool(POOL_SIZE) as p:
        pids = p.map(_ready, [0.3] * POOL_SIZE, chunksize=1)
        assert len(set(pids)) == POOL_SIZE
        yield p


@pytest.mark.parametrize("n_workers", [2, 4])
def test_concurrent_workers_never_run_a_job_twice(
    pool: Pool, store: Store, db_path: Path, n_workers: int
) -> None:
    ids = [enqueue(store, "add_snapshot", {"epoch": i}, priority=i % 3)[0].id for i in range(N_JOBS)]
    store.dispose()
    start_at = time.time() + 0.5
    results = pool.starmap(
        _worker, [(str(db_path), f"w{i}", start_at) for i in range(n_workers)], chunksize=1
    )
    pids = {pid for pid, _ in results}
    assert len(pids) == n_workers and os.getpid() not in pids, "one separate process per worker"
    claims = [c for _, r in results for c in r]
    assert sorted(int(c["job"]) for c in claims) == sorted(ids), "every job claimed exactly once"
    assert {c["attempt"] for c in claims} == {1}
    jobs = list_jobs(store, limit=1000)
    assert {j.status for j in jobs} == {"done"}
    by_job = {c["job"]: c["worker"] for c in claims}
    assert all(j.result == {"by": by_job[j.id]} for j in jobs)
    with store.session(readonly=True) as s:
        names = sorted(s.scalars(select(Dataset.name)).all())
    assert names == sorted(f"result-of-job-{i}" for i in ids), "exactly one result set per job"


def test_concurrent_enqueuers_create_one_row(pool: Pool, tmp_path: Path) -> None:
    """Three processes open a database that does not exist yet (schema created once) and enqueue one job."""
    db_path = tmp_path / "fresh.db"
    start_at = time.time() + 0.5
    results = pool.starmap(_enqueuer, [(str(db_path), start_at)] * 3, chunksize=1)
    assert len({pid for pid, _ in results}) == 3
    answers = [a for _, r in results for a in r]
    store = open_store(str(db_path))
    jobs = list_jobs(store)
    store.dispose()
    assert len(jobs) == 1
    assert {a[0] for a in answers} == {jobs[0].id}
    assert sum(1 for a in answers if a[1]) == 1, "exactly one caller created the job"
