"""A real worker process (``worker.runner.run_worker``: claim, heartbeat thread, lease, finish) whose only job
kind, ``unit``, costs no engine time — for the queue concurrency tests on SQLite and PostgreSQL.

Run: ``python -m tests.queue_worker DB_URL RUNS_FILE [--once] [--max-jobs N] [--real] [--pause S]``. A ``unit`` job with params
``{"steps": S, "step_s": T, "rows": R}`` reports progress S times, T seconds apart, then writes R result rows
(``datasets`` named ``result-of-job-<id>-<r>``) and marks itself done in one transaction. Every start of a
job is appended to RUNS_FILE as ``<job id> <worker id>`` before any work, so a test can count executions.
``--real`` adds the real handlers (``worker.jobs.handlers``, their starts logged the same way); ``--pause S``
makes each of those report some progress and wait S seconds before it runs — a worker to SIGKILL mid-job.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from backend.store import Dataset, finishing, list_jobs, open_store
from tests.datadir import REPO
from worker.runner import Handler, JobContext, run_worker

LEASE_S = 3.0
"""The lease of test workers: a SIGKILLed worker's job is claimed again this soon."""


def unit_handler(runs_file: Path):
    """The ``unit`` handler, logging each start to ``runs_file``."""

    def handle(ctx: JobContext) -> None:
        params: dict[str, Any] = ctx.params
        with runs_file.open("a") as out:
            out.write(f"{ctx.job.id} {ctx.worker_id}\n")
        steps = int(params.get("steps", 1))
        for step in range(steps):
            time.sleep(float(params.get("step_s", 0.0)))
            ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
        rows = [
            Dataset(name=f"result-of-job-{ctx.job.id}-{r}", root=ctx.worker_id, n_images=0, class_names=[])
            for r in range(int(params.get("rows", 1)))
        ]
        with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"by": ctx.worker_id}) as session:
            session.add_all(rows)

    return handle


def logged(handler: Handler, runs_file: Path, pause_s: float) -> Handler:
    """``handler``, logging each start to ``runs_file`` and pausing ``pause_s`` seconds (after some progress)."""

    def handle(ctx: JobContext) -> None:
        with runs_file.open("a") as out:
            out.write(f"{ctx.job.id} {ctx.worker_id}\n")
        if pause_s > 0:
            ctx.progress(0.01, "pausing")
            time.sleep(pause_s)
        handler(ctx)

    return handle


def worker_env(tmp_path: Path, lease_s: float = LEASE_S) -> dict[str, str]:
    """The environment of a test's worker and server processes: data folder ``<tmp>/data``, short leases."""
    env = dict(os.environ)
    env.update(
        CONCEPTEVO_DATA=str(tmp_path / "data"),
        CONCEPTEVO_LEASE_S=str(lease_s),
        CONCEPTEVO_HEARTBEAT_S="0.25",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        TQDM_DISABLE="1",
    )
    return env


def start_worker(
    url: str, tmp_path: Path, name: str, *args: str, lease_s: float = LEASE_S
) -> subprocess.Popen:
    """A ``tests.queue_worker`` process on ``url``; its output goes to ``<tmp>/<name>.log``, its job starts
    to ``<tmp>/runs.txt``. A worker not meant to be killed may take a long ``lease_s``: on 2 loaded cores a
    short lease can lapse between heartbeats, and the job is then (correctly) run again elsewhere."""
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.queue_worker", url, str(tmp_path / "runs.txt"), *args],
        cwd=REPO,
        env=worker_env(tmp_path, lease_s),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def job_starts(tmp_path: Path) -> Counter:
    """How often each job id was started, from ``runs.txt``."""
    lines = (tmp_path / "runs.txt").read_text().split("\n") if (tmp_path / "runs.txt").exists() else []
    return Counter(int(line.split()[0]) for line in lines if line.strip())


def all_done(store, ids: list[int]) -> bool:
    """Every job of ``ids`` is done (one query)."""
    done = {j.id for j in list_jobs(store, "done", limit=10_000)}
    return set(ids) <= done


def main() -> None:
    """Parse the command line and run the worker until the queue is drained (``--once``) or stopped."""
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("runs_file", type=Path)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--max-jobs", type=int, default=None)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = open_store(args.db)
    handlers: dict[str, Handler] = {"unit": unit_handler(args.runs_file)}
    if args.real:
        from worker.jobs import handlers as real_handlers

        handlers.update({kind: logged(h, args.runs_file, args.pause) for kind, h in real_handlers().items()})
    try:
        done = run_worker(
            store,
            once=args.once,
            poll=args.poll,
            max_jobs=args.max_jobs,
            handlers=handlers,
        )
    finally:
        store.dispose()
    print(f"worker finished {done} job(s)", flush=True)


if __name__ == "__main__":
    main()
