"""Many workers on one queue, on SQLite and on a real PostgreSQL server (``pg_server``, tests/pg.py).

Real processes throughout: worker processes run ``worker.runner.run_worker`` (tests/queue_worker.py, a ``unit``
job kind that costs no engine time), API processes are ``conceptevo serve`` (uvicorn). What DESIGN.md §3 promises
of the queue is checked where it matters most — across processes, on both databases:

* 4 workers, 40 jobs: each job run exactly once, one result set each;
* a worker SIGKILLed mid-job: another claims it when the lease expires and finishes it, one result set;
* a v0 database migrated to the current schema; a fresh database created once by concurrent openers;
* two API processes answering reads while workers write, and 20 concurrent identical ``POST /api/jobs`` → 1 row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from backend.store import Dataset, StoreError, enqueue, get_job, list_jobs, open_store
from backend.store.queue import dedupe_key
from backend.store.schema import SCHEMA_VERSION
from tests.datadir import REPO, free_port, stop, wait_for
from tests.queue_worker import all_done, job_starts, start_worker, worker_env


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: a SQLite file, or a database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conceptevo.db'}"
    return request.getfixturevalue("pg_url")


def result_rows(store) -> list[tuple[str, str]]:
    """(name, worker) of every result row the unit jobs wrote."""
    with store.session(readonly=True) as s:
        return [tuple(r) for r in s.execute(select(Dataset.name, Dataset.root)).all()]


def test_four_workers_on_a_fresh_database_run_forty_jobs_once_and_finish_a_killed_workers_job(
    db_url: str, tmp_path: Path
) -> None:
    """Four workers open a database that does not exist yet (the schema is created once, by whichever comes
    first) and share 40 jobs; one of them is SIGKILLed mid-job, and its job is claimed again when its lease
    expires and finished by another worker, with one result set."""
    # --max-jobs instead of --once: the workers wait (polling) for the jobs and for the killed worker's lease.
    workers = [start_worker(db_url, tmp_path, f"w{i}", "--max-jobs", "40") for i in range(4)]
    store = open_store(db_url)
    try:
        # The first job claimed (highest priority) is a long one: its worker is the one killed mid-job.
        long_job = enqueue(store, "unit", {"steps": 10, "step_s": 0.3, "rows": 3}, priority=9)[0]
        ids = [long_job.id] + [
            enqueue(store, "unit", {"i": i, "steps": 2, "step_s": 0.05, "rows": 3}, priority=i % 3)[0].id
            for i in range(39)
        ]
        victim_job = wait_for(
            lambda: (j := get_job(store, long_job.id)).progress > 0 and j, 90, "the long job in progress"
        )
        victim_pid = int(victim_job.worker_id.split(":")[1])
        victim = next(p for p in workers if p.pid == victim_pid)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        wait_for(lambda: all_done(store, ids), 120, "40 jobs done")
        for proc in workers:
            stop(proc)
        starts = job_starts(tmp_path)
        assert sorted(starts) == sorted(ids)
        assert starts[victim_job.id] == 2 and {n for i, n in starts.items() if i != victim_job.id} == {1}
        jobs = {j.id: j for j in list_jobs(store, limit=100)}
        assert {j.status for j in jobs.values()} == {"done"}
        rescued = jobs[victim_job.id]
        assert rescued.attempts == 2 and rescued.worker_id != victim_job.worker_id
        assert {j.attempts for i, j in jobs.items() if i != victim_job.id} == {1}
        rows = result_rows(store)
        assert sorted(name for name, _ in rows) == sorted(
            f"result-of-job-{i}-{r}" for i in ids for r in range(3)
        )
        assert all(worker == jobs[int(name.split("-")[3])].result["by"] for name, worker in rows), "one set"
        busy = {j.worker_id for j in jobs.values()}
        assert len(busy) >= 2 and victim_job.worker_id not in busy
    finally:
        for proc in workers:
            stop(proc)
        store.dispose()


# --------------------------------------------------------------------------------------------------
# Schema migration from v0 on PostgreSQL (SQLite: tests/backend/store/test_schema.py)
# --------------------------------------------------------------------------------------------------
def test_postgresql_v0_database_is_migrated(pg_url: str) -> None:
    """A v0 database (no active_key, not_before, deferrals) holding two identical active jobs and a done one."""
    open_store(pg_url).dispose()
    key = dedupe_key("demo", {"n": 1})
    store = open_store(pg_url)
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ux_jobs_active_key"))
        for column in ("active_key", "not_before", "deferrals"):
            conn.execute(text(f"ALTER TABLE jobs DROP COLUMN {column}"))
        for job_id, status, created in [(1, "queued", 0), (2, "queued", 1), (3, "done", 2)]:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, kind, params, dedupe_key, status, priority, attempts, max_attempts,"
                    " progress, message, created_at) VALUES (:id, 'demo', '{\"n\": 1}', :k, :s, 0, 0, 3, 0.0,"
                    " '', TIMESTAMP '2024-01-01 00:00:00' + make_interval(secs => :c))"
                ),
                {"id": job_id, "k": key, "s": status, "c": created},
            )
        conn.execute(text("SELECT setval(pg_get_serial_sequence('jobs', 'id'), 3)"))
        conn.execute(text("UPDATE schema_info SET schema_version = 0"))
    store.dispose()
    store = open_store(pg_url)
    try:
        with store.session(readonly=True) as s:
            assert s.execute(text("SELECT schema_version FROM schema_info")).scalar() == SCHEMA_VERSION
            got = s.execute(text("SELECT id, status, active_key, deferrals FROM jobs ORDER BY id")).all()
        assert [tuple(r) for r in got] == [
            (1, "queued", key, 0),
            (2, "cancelled", None, 0),
            (3, "done", None, 0),
        ]
        assert enqueue(store, "demo", {"n": 1})[0].id == 1  # the unique index is back
        assert enqueue(store, "demo", {"n": 2})[1] is True
    finally:
        store.dispose()


# --------------------------------------------------------------------------------------------------
# Two API processes on PostgreSQL while workers write
# --------------------------------------------------------------------------------------------------
def _serve(url: str, tmp_path: Path, name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (tmp_path / f"{name}.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            url,
        ],
        cwd=REPO,
        env=worker_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def test_two_api_processes_read_while_workers_write_and_concurrent_posts_make_one_row(
    pg_url: str, tmp_path: Path
) -> None:
    from tests.fixtures.synthetic import build_synthetic_store

    (tmp_path / "data").mkdir()
    store = open_store(pg_url)
    procs: list[subprocess.Popen] = []
    try:
        world = build_synthetic_store(store, n_neurons=24, n_epochs=3, n_runs=2, data_dir=tmp_path / "data")
        ids = [
            enqueue(store, "unit", {"i": i, "steps": 2, "step_s": 0.05, "rows": 2})[0].id for i in range(20)
        ]
        servers = [_serve(pg_url, tmp_path, f"api{i}") for i in range(2)]
        procs += [p for p, _ in servers]
        bases = [b for _, b in servers]
        for base in bases:
            wait_for(lambda b=base: _healthy(b), 60, f"{base}/api/health")
        procs += [start_worker(pg_url, tmp_path, f"w{i}", "--max-jobs", "20", lease_s=60) for i in range(2)]

        space, run, snap = world.space_id, world.run_ids[0], world.snapshot_ids[0][1]
        paths = [
            "/api/jobs?limit=50",
            f"/api/spaces/{space}",
            f"/api/spaces/{space}/snapshots/{snap}/points",
            f"/api/runs/{run}/neurons",
            f"/api/neurons/{world.neuron_ids[0][3]}",
        ]
        statuses: Counter = Counter()
        writing = threading.Event()

        def read(base: str) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while not writing.is_set():
                    for path in paths:
                        statuses[client.get(path).status_code] += 1
                    writing.wait(0.05)  # leave the 2 cores some room for the workers

        readers = [threading.Thread(target=read, args=(b,)) for b in bases]
        for t in readers:
            t.start()
        try:
            wait_for(lambda: all_done(store, ids), 120, "20 jobs done")
        finally:
            writing.set()
            for t in readers:
                t.join(timeout=60)
        assert set(statuses) == {200} and statuses[200] >= 20, statuses
        assert len(result_rows(store)) == 2 * 20 + 1  # + the synthetic world's own dataset

        body = {
            "kind": "importance",
            "params": {"run_id": run, "epoch_from": 0, "epoch_to": 2, "classes": [1], "force": True},
        }
        barrier = threading.Barrier(20)

        def post(i: int) -> tuple[int, int]:
            with httpx.Client(base_url=bases[i % 2], timeout=30) as client:
                barrier.wait()
                r = client.post("/api/jobs", json=body)
                assert r.status_code in (200, 201), r.text
                return r.status_code, r.json()["id"]

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(post, range(20)))
        rows = list_jobs(store, kind="importance")
        assert len(rows) == 1, json.dumps([j.id for j in rows])
        assert {job_id for _, job_id in answers} == {rows[0].id}
        assert sorted(code for code, _ in answers) == [200] * 19 + [201]
    finally:
        for proc in procs:
            stop(proc)
        store.dispose()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------------------------------
# The shared data folder (backend/store/datafolder.py)
# --------------------------------------------------------------------------------------------------
def test_a_worker_refuses_a_data_folder_the_others_do_not_share(pg_url: str, tmp_path: Path) -> None:
    from backend.store.datafolder import MARKER, check_data_folder

    shared, elsewhere, foreign = tmp_path / "shared", tmp_path / "elsewhere", tmp_path / "foreign"
    store = open_store(pg_url)
    try:
        token = check_data_folder(store, shared)  # the first user marks the folder
        assert token and (shared / MARKER).read_text().strip() == token
        assert check_data_folder(store, shared) == token
        with pytest.raises(
            StoreError, match=rf"data folder {elsewhere} is not the one shared .* has no {MARKER}"
        ):
            check_data_folder(store, elsewhere)
        foreign.mkdir()
        (foreign / MARKER).write_text("0123456789abcdef\n")
        with pytest.raises(StoreError, match=r"belongs to another database \(.* holds 01234567…"):
            check_data_folder(store, foreign)
        assert not elsewhere.exists(), "a refused folder is left alone"
    finally:
        store.dispose()
    assert check_data_folder(open_store(f"sqlite:///{tmp_path / 'x.db'}"), elsewhere) is None  # one machine
    env = {**worker_env(tmp_path), "CONCEPTEVO_DATA": str(elsewhere), "CONCEPTEVO_DB": pg_url}
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker", "--device", "cpu", "--once"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and MARKER in lines[0] and "Traceback" not in proc.stderr, proc.stderr
