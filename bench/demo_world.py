"""Benchmark: build the whole demo world (data + the three training runs) and time each stage.

Usage::

    python bench/demo_world.py [--quick] [--out DIR] [--threads N]

Generates the demo ImageFolder into ``OUT/dataset`` (``--quick``: the small size, and each run cut to
2 epochs) and trains the demo runs into ``OUT/runs/<name>``. Prints, as its last line, one JSON object
with per-stage seconds (``data_s``, ``healthy_s``, ``high_lr_s``, ``overfit_s``, ``total_s``) and each
run's final train/val top-1. The issue's budget for the full (non-quick) world is 240 s on 2 cores.
Without ``--out`` everything goes into a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import os

# Under CPU contention OpenMP's busy-waiting threads slow training several-fold; yield instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from worker.demo import runs as demo_runs  # noqa: E402
from worker.demo.generate import generate_demo_data  # noqa: E402

logger = logging.getLogger("bench.demo_world")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The result dict printed as the last line.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, 2 epochs per run")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    temp = None
    if args.out is None:
        temp = tempfile.TemporaryDirectory(prefix="conceptevo-demo-")
        out = Path(temp.name)
    else:
        out = args.out
    result: dict = {"quick": args.quick, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    started = time.perf_counter()
    try:
        t0 = time.perf_counter()
        summary = generate_demo_data(
            out / "dataset", size="small" if args.quick else "default", seed=args.seed
        )
        result["data_s"] = round(time.perf_counter() - t0, 2)
        result["data_reused"] = bool(getattr(summary, "reused", False))
        for name in demo_runs.DEMO_RUNS:
            config = demo_runs.DEMO_RUNS[name]
            if args.quick:
                demo_runs.DEMO_RUNS[name] = replace(
                    config, epochs=2, train_subset=min(config.train_subset or 96, 96)
                )
            t0 = time.perf_counter()
            history = demo_runs.train_demo_runs(
                out / "dataset", out / "runs", names=[name], seed=args.seed, progress=args.progress
            )[name]
            key = name.replace("-", "_")
            result[f"{key}_s"] = round(time.perf_counter() - t0, 2)
            result[f"{key}_train_top1"] = round(history[-1]["train_top1"], 4)
            result[f"{key}_val_top1"] = round(history[-1]["val_top1"], 4)
            result[f"{key}_val_top1_by_epoch"] = [round(h["val_top1"], 3) for h in history]
            demo_runs.DEMO_RUNS[name] = config
        result["total_s"] = round(time.perf_counter() - started, 2)
        result["within_240s"] = result["total_s"] <= 240
        result["out"] = None if temp is not None else str(out)
    finally:
        if temp is not None:
            temp.cleanup()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
