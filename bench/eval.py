"""Benchmark: the ``eval`` job (issue 14) on a computed world, by one in-process CPU worker.

Usage::

    CONCEPTEVO_DATA=data CONCEPTEVO_DB=data/conceptevo.db python bench/eval.py [--space NAME] [--reps N] [--images N]

The data directory must hold a computed world (``make demo``, or ``conceptevo demo`` and a worker). The job is
queued like ``conceptevo eval`` does and run by ``run_worker(..., max_jobs=1)``; the report lands in
``<data>/reports/<space>/``. The last line is one JSON object: ``total_s`` (claim → done of the job, goal ≤ 300 s
on 2 cores for the demo world), the intruder AUCs of the unified space in the three settings and of the shuffled
space, ``reversion_order_holds`` per stage (train top-1) and ``diversity_lead_epochs`` (high-lr vs healthy).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.store import find_space, get_job, list_jobs, list_spaces, open_store  # noqa: E402
from backend.store.evaluation import read_report  # noqa: E402
from backend.store.jobspec import EvalParams, enqueue_job  # noqa: E402
from worker.jobs import PRIORITY  # noqa: E402
from worker.runner import run_worker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", help="space name (default: the only one)")
    parser.add_argument("--reps", type=int, default=5, help="reversion repetitions (default 5)")
    parser.add_argument("--images", type=int, default=16, help="reversion images per class (default 16)")
    args = parser.parse_args()
    store = open_store()
    with store.session(readonly=True) as s:
        space = find_space(s, args.space) if args.space else (list_spaces(s) or [None])[0]
        if space is None:
            sys.exit("no computed space: run `make demo` (or conceptevo demo + a worker) first")
        space_id = space.id
    if any(j.status in ("queued", "running") for j in list_jobs(store, limit=10_000)):
        sys.exit("the queue is not empty: drain it first (conceptevo worker --once)")
    job, _ = enqueue_job(
        store, EvalParams(space_id=space_id, reps=args.reps, images=args.images), priority=PRIORITY["eval"]
    )
    started = time.perf_counter()
    run_worker(store, device="cpu", once=True, max_jobs=1)
    wall = time.perf_counter() - started
    done = get_job(store, job.id)
    if done.status != "done":
        sys.exit(f"eval job {job.id} ended {done.status}: {done.error}")
    with store.session(readonly=True) as s:
        results = read_report(find_space(s, space.name))
    settings = results.get("alignment", {}).get("settings", {})

    def auc(setting: str, geometry: str) -> float | None:
        score = settings.get(setting, {}).get(geometry)
        return round(score["auc"], 3) if score else None

    warnings = results["diversity"]["warnings"]
    summary = {
        "total_s": round((done.finished_at - done.started_at).total_seconds(), 1),
        "wall_s": round(wall, 1),
        "sections_s": {k: round(v, 1) for k, v in results["timings"].items()},
        "auc_within_base": auc("within_base", "unified"),
        "auc_within_model": auc("within_model", "unified"),
        "auc_across": auc("across", "unified"),
        "auc_within_base_shuffled": auc("within_base", "shuffled"),
        "auc_within_model_shuffled": auc("within_model", "shuffled"),
        "auc_across_shuffled": auc("across", "shuffled"),
        "auc_across_activation": auc("across", "activation"),
        "auc_across_umap": auc("across", "umap"),
        "reversion_order_holds": {
            f"{s['epoch_from']}->{s['epoch_to']}": s["order_holds"]["train_top1"]
            for s in results["reversion"]["stages"]
        },
        "diversity_lead_epochs": (warnings.get("high-lr") or {}).get("lead_epochs"),
        "diversity_warning": {name: w["kind"] for name, w in warnings.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
