"""Benchmark: does the default demo world show the paper's phenomena, over several seeds of its runs?

Usage::

    python bench/demo_phenomena.py [--seeds 0,1,2] [--out DIR] [--size default|small] [--set RUN.FIELD=VALUE ...]

Generates the demo images (seed 0) and, for every seed, trains the three demo runs with that seed
(:func:`worker.demo.runs.train_demo_runs`; complete runs in ``--out`` are reused), builds the unified space on
healthy's last epoch with the demo space's parameters and places every epoch of every run in it — all with
the worker's own code (:mod:`worker.pipeline`). Then it measures the issue's targets (issue 14, "Make the demo
world show the phenomena"):

* ``milestones``: per run, the epochs whose train top-1 is closest to 0.25 / 0.5 / 0.75
  (:func:`worker.engine.milestones.epochs_at_milestones`); healthy's must be distinct and after epoch 0;
* ``diversity_lead_epochs``: high-lr against healthy under the health view's warning rule
  (``frontend/src/health/warning.ts``, as ported to :mod:`worker.engine.warning`):
  the epoch its val accuracy falls behind minus the epoch its diversity falls clearly below (≥ 1 = an
  early warning; null when either never happens);
* ``movement``: mean movement of neuron vectors between consecutive milestones, healthy vs overfit
  (paper §4.5: the overfitting run's concepts move less);
* ``build_s``: seconds to make seed 0's world: data generation + the runs' training and evaluation seconds as
  recorded in their ``history.json`` (so also for runs reused from an earlier call with the same ``--out``).

``--set healthy.lr=1e-3`` overrides one field of a run's :class:`~worker.training.TrainConfig` (JSON value)
for experiments. The last printed line is one JSON object.
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
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.demo import runs as demo_runs  # noqa: E402
from worker.demo.generate import generate_demo_data  # noqa: E402
from worker.demo.phenomena import (  # noqa: E402
    MILESTONES,
    health_records,
    milestone_movement,
    milestones_distinct_after_init,
    spread,
)
from worker.demo.plan import BASE_RUN  # noqa: E402
from worker.engine.milestones import epochs_at_milestones  # noqa: E402
from worker.engine.warning import assess_run  # noqa: E402  (warning.ts's rule, ported for the eval report)
from worker.models.checkpoints import load_model  # noqa: E402
from worker.pipeline import SpaceParams, build_space, open_dataset, place_snapshot  # noqa: E402
from worker.training import checkpoint_path  # noqa: E402

log = logging.getLogger("bench.demo_phenomena")


def _overrides(pairs: list[str]) -> None:
    """Apply ``RUN.FIELD=JSON`` overrides to :data:`worker.demo.runs.DEMO_RUNS` (experiments only)."""
    for pair in pairs:
        target, _, value = pair.partition("=")
        run, _, name = target.partition(".")
        demo_runs.DEMO_RUNS[run] = replace(demo_runs.DEMO_RUNS[run], **{name: json.loads(value)})


def _place_runs(world: Path, dataset, wanted: dict[str, list[int]]) -> dict[str, dict[int, Any]]:
    """Build the space on healthy's last epoch and place the wanted epochs of every run (worker.pipeline).

    Args:
        world: the folder of the run folders.
        dataset: the space's images (the demo train split, as the demo job uses).
        wanted: run → the epochs to place.

    Returns:
        Run → epoch → the placed snapshot (healthy's last epoch: the space's base, as the demo job stores it).
    """
    base_epoch = demo_runs.DEMO_RUNS[BASE_RUN].epochs
    base = load_model("demo-vgg", 12, checkpoint_path(world / BASE_RUN, base_epoch))
    space = build_space(base, dataset, SpaceParams(seed=0))
    runs: dict[str, dict[int, Any]] = {}
    for name, epochs in wanted.items():
        runs[name] = {}
        for epoch in sorted(set(epochs)):
            if name == BASE_RUN and epoch == base_epoch:
                runs[name][epoch] = space.base
                continue
            model = load_model("demo-vgg", 12, checkpoint_path(world / name, epoch))
            runs[name][epoch] = place_snapshot(space, model, dataset)
    return runs


def _rounded(found: dict[str, Any]) -> dict[str, Any]:
    """A movement summary with its distances rounded for the JSON line."""
    return {
        "milestones": found["milestones"],
        "stages": [[a, b, round(m, 4)] for a, b, m in found["stages"]],
        "mean": None if found["mean"] is None else round(found["mean"], 4),
    }


def measure_seed(root: Path, seed: int) -> dict[str, Any]:
    """Train (or reuse) seed ``seed``'s runs, place them, and measure the phenomena."""
    world = root / f"seed{seed}" / "runs"
    started = time.perf_counter()
    histories = demo_runs.train_demo_runs(root / "dataset", world, seed=seed, progress=False)
    wall_s = time.perf_counter() - started
    # Training + evaluation seconds as recorded per epoch (also for runs reused from an earlier call).
    train_s = sum(
        float(e.get("seconds") or 0) + float(e.get("eval_seconds") or 0)
        for h in histories.values()
        for e in h
    )
    started = time.perf_counter()
    milestones = {name: epochs_at_milestones(h, MILESTONES) for name, h in histories.items()}
    # The warning compares every epoch of healthy and high-lr; overfit's movement needs its milestones only.
    wanted = {name: [h["epoch"] for h in histories[name]] for name in (BASE_RUN, "high-lr")}
    wanted["overfit"] = milestones["overfit"]
    placed = _place_runs(world, open_dataset(root / "dataset", split="train"), wanted)
    metrics = {
        name: health_records(histories[name], {e: p.diversity for e, p in placed[name].items()})
        for name in (BASE_RUN, "high-lr")
    }
    verdict = assess_run(metrics["high-lr"], metrics[BASE_RUN])
    return {
        "seed": seed,
        "train_s": round(train_s, 1),
        "train_wall_s": round(wall_s, 1),
        "place_s": round(time.perf_counter() - started, 1),
        "warning": {
            "kind": verdict.kind,
            "diversity_epoch": verdict.diversity_epoch,
            "accuracy_epoch": verdict.accuracy_epoch,
            "threshold": round(verdict.threshold, 4),
        },
        "diversity_lead_epochs": verdict.lead,
        "movement": {
            name: _rounded(
                milestone_movement(histories[name], {e: p.vectors for e, p in placed[name].items()})
            )
            for name in (BASE_RUN, "overfit")
        },
        "milestones": milestones,
        "diversity": {name: [m["diversity"] for m in rows] for name, rows in metrics.items()},
        "val_top1": {name: [round(h["val_top1"], 3) for h in hist] for name, hist in histories.items()},
        "train_top1": {name: [round(h["train_top1"], 3) for h in hist] for name, hist in histories.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The result dict printed as the last line.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds")
    parser.add_argument("--out", type=Path, default=None, help="work directory, kept (default: a temp dir)")
    parser.add_argument("--size", default="default", choices=("default", "small"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="RUN.FIELD=JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    _overrides(args.overrides)
    temp = tempfile.TemporaryDirectory(prefix="conceptevo-phenomena-") if args.out is None else None
    root = Path(temp.name) if temp is not None else args.out
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict[str, Any] = {"size": args.size, "seeds": seeds, "overrides": args.overrides}
    try:
        started = time.perf_counter()
        generate_demo_data(root / "dataset", size=args.size, seed=0, workers=2)
        data_s = time.perf_counter() - started
        per_seed = []
        for seed in seeds:
            per_seed.append(measure_seed(root, seed))
            print(json.dumps(per_seed[-1]), flush=True)
        first = per_seed[0]
        result.update(
            build_s=round(data_s + first["train_s"], 1),
            milestones={str(s["seed"]): s["milestones"] for s in per_seed},
            healthy_milestones_ok=[
                milestones_distinct_after_init(s["milestones"][BASE_RUN]) for s in per_seed
            ],
            diversity_lead_epochs=spread([s["diversity_lead_epochs"] for s in per_seed]),
            warning_kinds=[s["warning"]["kind"] for s in per_seed],
            movement_healthy=spread([s["movement"]["healthy"]["mean"] for s in per_seed]),
            movement_overfit=spread([s["movement"]["overfit"]["mean"] for s in per_seed]),
            overfit_moves_less=[
                (s["movement"]["overfit"]["mean"] or 0) < (s["movement"]["healthy"]["mean"] or 0)
                for s in per_seed
            ],
        )
        result["lead_ok_every_seed"] = all((v or 0) >= 1 for v in result["diversity_lead_epochs"]["values"])
    finally:
        if temp is not None:
            temp.cleanup()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
