"""Benchmark: several worker processes on one PostgreSQL queue (issue 15, README "Scale out").

1. **Stimuli pass** for every epoch of the three demo runs, as one queued job per (run, epoch), drained by 1 and
   then by 2 worker processes (1 torch thread each — one worker per device); ``stimuli_1_s`` / ``stimuli_2_s``
   are the wall times from the first claim to the last finish (job rows), ``speedup`` their ratio (on 2 cores
   expect ≤ 2×).
2. **Claim overhead**: 4 processes drain a 100-job queue of empty jobs, each timing its ``claim()`` calls;
   ``claim_ms`` is the median (``claim_p95_ms`` the 95th percentile; goal ≤ 50 ms) and ``duplicates`` the
   number of job runs beyond one per job (goal 0).

The database is a throwaway PostgreSQL server (tests/pg.py: Debian's binaries, loopback, a temporary folder),
one fresh database per phase. The demo world is ``$CONCEPTEVO_DATA/demo`` when it is complete,
else ``--world DIR``, else a small one built in a temporary folder (small data, 2 epochs per run).

Usage: ``.venv/bin/python bench/scaleout.py [--world DIR] [--k 10]``. The last line printed is one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.store import Dataset, claim, data_dir, enqueue, finishing, list_jobs, open_store  # noqa: E402

logger = logging.getLogger("bench.scaleout")
N_DRAIN_JOBS = 100
N_DRAIN_WORKERS = 4


# --------------------------------------------------------------------------------------------------
# Worker roles (run in child processes)
# --------------------------------------------------------------------------------------------------
def stimuli_worker(db: str, k: int, start_at: float, dataset_root: str | None) -> None:
    """Drain the ``bench_stimuli`` jobs with the real worker loop: load the checkpoint, run the stimuli pass."""
    import torch

    from worker.models.checkpoints import load_model
    from worker.models.layers import default_layers
    from worker.pipeline import image_batches, open_dataset, snapshot_stimuli
    from worker.runner import run_worker

    torch.set_num_threads(1)
    datasets: dict[str, object] = {}
    if dataset_root:  # decode the images before the common start, as a long-running worker would have
        datasets[dataset_root] = open_dataset(dataset_root)
        next(iter(image_batches(datasets[dataset_root], 128)))

    def handle(ctx) -> None:
        params = ctx.params
        if params["dataset"] not in datasets:
            datasets[params["dataset"]] = open_dataset(params["dataset"])
        dataset = datasets[params["dataset"]]
        model = load_model(None, None, params["checkpoint"])
        stimuli = snapshot_stimuli(model, dataset, default_layers(model), k=k, progress=ctx.progress)
        with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"images": stimuli.n_images}):
            pass

    store = open_store(db)
    time.sleep(max(0.0, start_at - time.time()))  # all workers start claiming together
    run_worker(store, once=True, poll=0.1, handlers={"bench_stimuli": handle}, install_signals=False)
    store.dispose()


def drain_worker(db: str, start_at: float) -> None:
    """Claim and finish empty jobs until none is left, timing each claim; print the timings and job ids."""
    store = open_store(db)
    worker_id = f"drain-{os.getpid()}"
    claims_ms: list[float] = []
    jobs: list[int] = []
    time.sleep(max(0.0, start_at - time.time()))
    while True:
        started = time.perf_counter()
        job = claim(store, worker_id, lease_s=60)
        claims_ms.append((time.perf_counter() - started) * 1000)
        if job is None:
            break
        jobs.append(job.id)
        with finishing(store, job.id, worker_id, result={"by": worker_id}) as s:
            s.add(Dataset(name=f"result-of-job-{job.id}", root=worker_id, n_images=0, class_names=[]))
    store.dispose()
    print(json.dumps({"claims_ms": claims_ms, "jobs": jobs}))


# --------------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------------
def demo_world(given: Path | None, scratch: Path) -> Path:
    """A complete demo world: ``given``, else ``$CONCEPTEVO_DATA/demo``, else a small one built in ``scratch``."""
    from worker.demo.world import demo_world_ready

    for candidate in (given, data_dir() / "demo"):
        if candidate is not None and demo_world_ready(candidate):
            return candidate
    if given is not None:
        raise SystemExit(f"{given} is not a complete demo world; run `conceptevo demo-train` or omit --world")
    from worker.demo.generate import generate_demo_data
    from worker.demo.runs import DEMO_RUNS
    from worker.training import train

    root = scratch / "world"
    logger.info("building a small demo world in %s", root)
    generate_demo_data(root / "dataset", size="small", seed=0, progress=False)
    for name, config in DEMO_RUNS.items():
        train(replace(config, epochs=2), root / "dataset", root / "runs" / name, progress=False, name=name)
    return root


def _child(role: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, __file__, "--role", role, *args], env=env, stdout=subprocess.PIPE, text=True
    )


def stimuli_phase(db: str, world: Path, n_workers: int, k: int) -> tuple[float, int]:
    """Queue the stimuli pass of every (run, epoch); drain with ``n_workers``; (first claim → last finish, jobs)."""
    from worker.models.checkpoints import discover_epochs

    store = open_store(db)
    n_jobs = 0
    for run_dir in sorted((world / "runs").iterdir()):
        for epoch, checkpoint in discover_epochs(run_dir).items():
            params = {"dataset": str(world / "dataset"), "checkpoint": str(checkpoint), "epoch": epoch}
            enqueue(store, "bench_stimuli", params)
            n_jobs += 1
    start_at = f"{time.time() + 15.0}"  # after every worker has imported torch
    args = ("--k", str(k), "--start-at", start_at, "--dataset", str(world / "dataset"))
    workers = [_child("stimuli", db, *args) for _ in range(n_workers)]
    for proc in workers:
        proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a stimuli worker exited with status {proc.returncode}")
    jobs = list_jobs(store, limit=10_000)
    store.dispose()
    if {j.status for j in jobs} != {"done"}:
        raise SystemExit(f"stimuli jobs not all done: {Counter(j.status for j in jobs)}")
    wall = max(j.finished_at for j in jobs) - min(j.started_at for j in jobs)
    return wall.total_seconds(), n_jobs


def drain_phase(db: str) -> dict[str, float | int]:
    """100 empty jobs drained by 4 processes: claim timings and duplicate runs."""
    store = open_store(db)
    ids = [enqueue(store, "bench_unit", {"i": i})[0].id for i in range(N_DRAIN_JOBS)]
    start_at = f"{time.time() + 3.0}"
    workers = [_child("drain", db, "--start-at", start_at) for _ in range(N_DRAIN_WORKERS)]
    outputs = [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in workers]
    undone = [j.id for j in list_jobs(store, limit=10_000) if j.status != "done"]
    store.dispose()
    runs = Counter(job for out in outputs for job in out["jobs"])
    claims = sorted(ms for out in outputs for ms in out["claims_ms"])
    return {
        "drain_jobs": len(ids),
        "drain_workers": N_DRAIN_WORKERS,
        "duplicates": sum(n - 1 for n in runs.values()),
        "missed": len(set(ids) - set(runs)) + len(undone),
        "busy_workers": sum(1 for out in outputs if out["jobs"]),
        "claim_ms": round(statistics.median(claims), 2),
        "claim_p95_ms": round(claims[int(0.95 * (len(claims) - 1))], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=None, help="a complete demo world folder")
    parser.add_argument("--k", type=int, default=10, help="stimuli per neuron")
    parser.add_argument("--role", choices=["stimuli", "drain"], help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default=None, help=argparse.SUPPRESS)
    parser.add_argument("db", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "stimuli":
        stimuli_worker(args.db, args.k, args.start_at, args.dataset)
        return
    if args.role == "drain":
        drain_worker(args.db, args.start_at)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("backend.store").setLevel(logging.WARNING)  # not a line per queued job
    from tests.pg import Unavailable, start_server

    try:
        server = start_server()
    except Unavailable as exc:
        raise SystemExit(f"bench/scaleout.py needs PostgreSQL: {exc}") from None
    try:
        with tempfile.TemporaryDirectory(prefix="scaleout-") as scratch:
            world = demo_world(args.world, Path(scratch))
            one_s, n_jobs = stimuli_phase(server.new_database("one"), world, 1, args.k)
            logger.info("stimuli, 1 worker: %.2f s for %d snapshots", one_s, n_jobs)
            two_s, _ = stimuli_phase(server.new_database("two"), world, 2, args.k)
            logger.info("stimuli, 2 workers: %.2f s", two_s)
        drain = drain_phase(server.new_database("drain"))
        logger.info("drain: %s", drain)
    finally:
        server.stop()
    result = {
        "bench": "scaleout",
        "database": "postgresql",
        "world": "given"
        if args.world
        else "small (2 epochs per run)"
        if world.name == "world"
        else str(world),
        "snapshots": n_jobs,
        "k": args.k,
        "threads_per_worker": 1,
        "stimuli_1_s": round(one_s, 3),
        "stimuli_2_s": round(two_s, 3),
        "speedup": round(one_s / two_s, 3),
        **drain,
        "goal_claim_ms": 50,
        "load_avg_1m": round(os.getloadavg()[0], 2),  # other work on the machine inflates every figure
        "goal_duplicates": 0,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
