"""Benchmark: the paper's findings over several seeds of the demo world — which hold for every seed (issue 14).

Usage::

    python bench/eval_seeds.py REPORT [REPORT ...]

Each ``REPORT`` is the ``results.json`` (or the folder holding it) that ``conceptevo eval`` wrote for one world
— the default demo world built with a different seed each (README, *Findings*: ``conceptevo demo --seed N`` in
its own data folder, then ``conceptevo eval``; or ``bench/demo_phenomena.py --seeds 0,1,2 --out DIR`` for the runs
alone). Nothing is recomputed: the figures are read from the reports and set side by side by
:func:`worker.eval.seeds.summarise` (the same code as ``conceptevo eval-seeds``, which also writes ``seeds.json``
and ``seeds.md`` for the page): mean ± std over the seeds of the intruder AUCs, the reversion ordering per stage,
high-lr's and overfit's diversity warnings and the movement of healthy vs overfit, and whether each finding holds
for every seed.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.errors import ConceptEvoError  # noqa: E402
from worker.eval.seeds import load_results, summarise  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="results.json of each world (or its folder)")
    args = parser.parse_args(argv)
    try:
        reports = [load_results(Path(path)) for path in args.reports]
    except ConceptEvoError as exc:
        sys.exit(str(exc))
    summary = {"bench": "eval_seeds", **summarise(reports, sources=args.reports)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
