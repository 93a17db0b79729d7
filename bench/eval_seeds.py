"""Benchmark: the paper's findings over several seeds of the demo world — which hold for every seed (issue 14).

Usage::

    python bench/eval_seeds.py REPORT [REPORT ...]

Each ``REPORT`` is the ``results.json`` (or the folder holding it) that ``conceptevo eval`` wrote for one world
— the default demo world built with a different run seed each (``bench/demo_phenomena.py --seeds 0,1,2 --out
DIR`` trains the runs; place them with ``conceptevo demo --no-serve`` + ``conceptevo worker --once`` in a data
folder holding them, then ``bench/eval.py``). Nothing is recomputed here: the figures are read from the reports
and set side by side, with mean ± std over the seeds and whether each finding holds for every one:

* ``auc``: the simulated intruder AUC of the unified space (within the base model, within one model across
  epochs, across models) and of its baselines; ``unified_beats_baselines_across`` per seed;
* ``reversion``: per seed, the stages (healthy's accuracy milestones) and whether the paper's ordering holds at
  each on train top-1; the most and least important quarters' and the random quarter's train top-1 change at
  each seed's last stage;
* ``diversity``: high-lr's and overfit's warning kind and lead in epochs against healthy;
* ``movement``: mean movement between accuracy milestones and per epoch, healthy vs overfit (paper: overfit
  moves less).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

SETTINGS = ("within_base", "within_model", "across")
GEOMETRIES = ("unified", "activation", "umap", "shuffled")


def load(path: str) -> dict[str, Any]:
    """One eval report's ``results.json`` (``path`` names it or its folder)."""
    file = Path(path)
    if file.is_dir():
        file = file / "results.json"
    if not file.is_file():
        sys.exit(f"{file}: no eval report here; run `conceptevo eval` (or bench/eval.py) on that world first")
    return json.loads(file.read_text())


def spread(values: list[float | None]) -> dict[str, Any]:
    """Mean and sample std of the values present, with the values themselves."""
    present = [v for v in values if v is not None]
    return {
        "values": [None if v is None else round(v, 3) for v in values],
        "mean": round(statistics.fmean(present), 3) if present else None,
        "std": round(statistics.stdev(present), 3) if len(present) > 1 else None,
    }


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The side-by-side figures of several worlds' reports (see the module docstring)."""
    settings = [r["alignment"]["settings"] for r in reports]
    auc = {
        f"{setting}_{geometry}": spread([s[setting].get(geometry, {}).get("auc") for s in settings])
        for setting in SETTINGS
        for geometry in GEOMETRIES
    }
    beats = [bool(r["alignment"].get("beats_baselines_across")) for r in reports]

    stages, holds, last_stage = [], [], {"most": [], "least": [], "random": []}
    for r in reports:
        found = r["reversion"]["stages"]
        stages.append([f"{s['epoch_from']}->{s['epoch_to']}" for s in found])
        holds.append([bool(s["order_holds"]["train_top1"]) for s in found])
        if found:
            final = found[-1]
            column = final["columns"].index("train_top1")
            rows = {name: final["mean"][i][column] for i, name in enumerate(final["rows"])}
            last_stage["most"].append(rows["0-25%"])
            last_stage["least"].append(rows["75-100%"])
            last_stage["random"].append(rows["random"])

    every_stage = [bool(h) and all(h) for h in holds]  # a world without stages does not count as holding

    warnings = [r["diversity"]["warnings"] for r in reports]
    diversity = {
        run: {
            "kind": [(w.get(run) or {}).get("kind") for w in warnings],
            "lead_epochs": [(w.get(run) or {}).get("lead_epochs") for w in warnings],
        }
        for run in ("high-lr", "overfit")
    }

    movement = {}
    for measure in ("milestone_mean", "per_epoch_mean"):
        healthy = [r["movement"].get("healthy", {}).get(measure) for r in reports]
        overfit = [r["movement"].get("overfit", {}).get(measure) for r in reports]
        movement[measure] = {
            "healthy": spread(healthy),
            "overfit": spread(overfit),
            "overfit_moves_less": [
                h is not None and o is not None and o < h for h, o in zip(healthy, overfit, strict=True)
            ],
        }

    return {
        "bench": "eval_seeds",
        "worlds": len(reports),
        "auc": auc,
        "unified_beats_baselines_across": beats,
        "reversion": {
            "stages": stages,
            "order_holds_train_top1": holds,
            "holds_at_every_stage": every_stage,
            "last_stage_train_top1": {name: spread(v) for name, v in last_stage.items()},
        },
        "diversity": diversity,
        "movement": movement,
        "holds_for_every_seed": {
            "unified_beats_baselines_across": all(beats),
            "reversion_order": all(every_stage),
            "high_lr_warning_early": all(k == "early" for k in diversity["high-lr"]["kind"]),
            "overfit_moves_less_between_milestones": all(movement["milestone_mean"]["overfit_moves_less"]),
            "overfit_moves_less_per_epoch": all(movement["per_epoch_mean"]["overfit_moves_less"]),
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="results.json of each world (or its folder)")
    args = parser.parse_args(argv)
    summary = summarise([load(path) for path in args.reports])
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
