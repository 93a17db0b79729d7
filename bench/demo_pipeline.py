"""Benchmark: the whole ``conceptevo demo`` job set on one CPU worker, with per-stage seconds.

Usage::

    python bench/demo_pipeline.py [--quick] [--keep DIR] [--world DIR]

Works in a fresh data directory and database (a temporary one, or ``--keep DIR``), never touching the
source world. The demo world:

* default: the complete world in ``data/demo`` (or ``--world DIR``) is reused. Its dataset is generated
  afresh into the fresh data dir (timed: ``data_s``; same seed, same bytes) and its runs are symlinked;
  the runs' training time is read from their ``history.json`` (``train_s``: per-epoch training + eval
  seconds recorded when they were trained). ``world_s = data_s + train_s``. When no complete world is
  there, it is built into the fresh data dir and ``world_s`` is that build's time.
* ``--quick``: a small world built afresh (the small dataset, each run cut to 2 epochs).

Then ``register_demo`` + ``enqueue_demo_jobs`` (``register_s``) and one in-process worker drains the queue
(``drain_s``). Per-stage seconds come from the job rows (claim → done): ``build_space_s``,
``add_snapshot_s`` (total, ``add_snapshot_per_s`` mean), ``importance_s``; ``add_snapshot_parts`` splits
add_snapshot into stimuli pass, Eq 2 placement + UMAP transform, and patch sprites. The last line is one
JSON object; ``total_s = world_s + register_s + drain_s`` (goal: ≤ 360 s on 2 cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.demo_pipeline")
GOAL_S = 360.0


def _timed(fn, calls: dict[str, list[float]], key: str):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            calls[key].append(time.perf_counter() - started)

    return wrapper


def _recorded_train_s(runs: Path) -> float:
    total = 0.0
    for history in sorted(runs.glob("*/history.json")):
        for epoch in json.loads(history.read_text()):
            total += float(epoch.get("seconds") or 0) + float(epoch.get("eval_seconds") or 0)
    return total


def _prepare_world(args, demo: Path, result: dict) -> None:
    """Make ``demo`` (the fresh data dir's ``demo``) a complete demo world; record how it was made."""
    from worker.demo.generate import generate_demo_data
    from worker.demo.plan import demo_world_ready
    from worker.demo.runs import DEMO_RUNS
    from worker.jobs.demo import build_demo_world
    from worker.training import train

    source = args.world.resolve()
    started = time.perf_counter()
    if args.quick:
        generate_demo_data(demo / "dataset", size="small", seed=0)
        for name, config in DEMO_RUNS.items():
            train(
                replace(config, epochs=2), demo / "dataset", demo / "runs" / name, progress=False, name=name
            )
        result["world_s"] = round(time.perf_counter() - started, 2)
        result["world_source"] = "built afresh (quick: small data, 2 epochs per run)"
    elif demo_world_ready(source):
        generate_demo_data(demo / "dataset", size="default", seed=0)
        result["data_s"] = round(time.perf_counter() - started, 2)
        (demo / "runs").mkdir(parents=True)
        for run in sorted((source / "runs").iterdir()):
            (demo / "runs" / run.name).symlink_to(run, target_is_directory=True)
        result["train_s"] = round(_recorded_train_s(demo / "runs"), 2)
        result["world_s"] = round(result["data_s"] + result["train_s"], 2)
        result["world_source"] = (
            f"data generated afresh + training seconds recorded in {source}/runs/*/history.json"
        )
    else:
        build_demo_world(demo, size="default", seed=0)
        result["world_s"] = round(time.perf_counter() - started, 2)
        result["world_source"] = "built afresh (default size)"
    assert demo_world_ready(demo), f"demo world in {demo} is incomplete"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small world built afresh (2 epochs per run)")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR (kept) instead of a temp dir")
    parser.add_argument("--world", type=Path, default=REPO / "data" / "demo", help="demo world to reuse")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    temp = None
    if args.keep is None:
        temp = tempfile.TemporaryDirectory(prefix="conceptevo-pipeline-")
        root = Path(temp.name)
    else:
        root = args.keep.resolve()
        if root.exists() and any(root.iterdir()):
            parser.error(f"--keep {root}: not empty")
        root.mkdir(parents=True, exist_ok=True)
    os.environ["CONCEPTEVO_DATA"] = str(root)
    os.environ["CONCEPTEVO_DB"] = str(root / "conceptevo.db")
    os.environ["TQDM_DISABLE"] = "1"

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from backend.store import list_jobs, open_store
    from worker.demo.plan import enqueue_demo_jobs, register_demo
    from worker.jobs import space as space_jobs
    from worker.runner import run_worker

    result: dict = {"quick": args.quick, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    try:
        _prepare_world(args, root / "demo", result)

        started = time.perf_counter()
        store = open_store()
        register_demo(store, root / "demo")
        plan = enqueue_demo_jobs(store, root / "demo")
        result["register_s"] = round(time.perf_counter() - started, 2)
        result["queued_first"] = len(plan.queued)

        parts: dict[str, list[float]] = defaultdict(list)
        for name, key in (
            ("snapshot_stimuli", "stimuli_s"),
            ("place_stimuli", "place_umap_s"),
            ("write_patch_files", "patches_s"),
        ):
            setattr(space_jobs, name, _timed(getattr(space_jobs, name), parts, key))
        started = time.perf_counter()
        done = run_worker(store, device="cpu", once=True, install_signals=False)
        result["drain_s"] = round(time.perf_counter() - started, 2)

        jobs = list_jobs(store, limit=100_000)
        by_kind: dict[str, list[float]] = defaultdict(list)
        for job in jobs:
            if job.started_at and job.finished_at:
                by_kind[job.kind].append((job.finished_at - job.started_at).total_seconds())
        build = next((job for job in jobs if job.kind == "build_space"), None)
        n_add = len(by_kind["add_snapshot"])
        # The base snapshot's add_snapshot is a no-op (placed by the build): the parts are the others'.
        result.update(
            build_space_s=round(sum(by_kind["build_space"]), 2),
            build_space_parts={
                k: round(v, 2)
                for k, v in (build.result or {}).items()
                if build is not None and k.endswith("_s")
            },
            add_snapshot_s=round(sum(by_kind["add_snapshot"]), 2),
            add_snapshot_per_s=round(sum(by_kind["add_snapshot"]) / max(1, n_add - 1), 2),
            # write_patch_files' first call is build_space's (it runs first: highest priority).
            build_patches_s=round(parts["patches_s"][0], 2) if parts["patches_s"] else None,
            add_snapshot_parts={
                key: round(sum(times[1:] if key == "patches_s" else times), 2) for key, times in parts.items()
            },
            importance_s=round(sum(by_kind["importance"]), 2),
            jobs=len(jobs),
            jobs_done=done,
            jobs_by_kind={kind: len(times) for kind, times in by_kind.items()},
            failed=[f"{job.id} {job.kind}: {job.error}" for job in jobs if job.status != "done"],
        )
        from sqlalchemy import func, select

        from backend.store import Importance, NeuronState, PatchSet, SpaceSnapshot

        with store.session(readonly=True) as s:
            result["counts"] = {
                "space_snapshots": s.scalar(select(func.count()).select_from(SpaceSnapshot)),
                "neuron_states": s.scalar(select(func.count()).select_from(NeuronState)),
                "patch_sets": s.scalar(select(func.count()).select_from(PatchSet)),
                "importances": s.scalar(select(func.count()).select_from(Importance)),
            }
        store.dispose()
        result["total_s"] = round(result["world_s"] + result["register_s"] + result["drain_s"], 2)
        result["within_goal"] = result["total_s"] <= GOAL_S
        result["kept"] = None if temp is not None else str(root)
    finally:
        if temp is not None:
            temp.cleanup()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
