"""What the demo world must show (issue 14, "Make the demo world show the phenomena"), measured from a run's
training history and its neurons' vectors in the unified space.

Pure functions (no torch, no store): ``bench/demo_phenomena.py`` trains and places the runs with the worker's own
code and hands the results here.

* healthy's accuracy milestones (train top-1 closest to 0.25 / 0.5 / 0.75, paper §4.4 footnote 1) fall at
  distinct epochs after the initialisation;
* high-lr's concept diversity falls clearly below healthy's before its accuracy falls behind (the health view's
  rule, :func:`worker.engine.warning.assess_run`);
* the overfitting run's neurons move less between its milestones than healthy's (paper §4.5).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from worker.engine.health import movement
from worker.engine.milestones import epochs_at_milestones

#: The paper's accuracy milestones (train top-1).
MILESTONES = (0.25, 0.5, 0.75)


def milestones_distinct_after_init(epochs: Sequence[int]) -> bool:
    """Whether milestone epochs are all different and none is the initialisation (epoch 0).

    Args:
        epochs: the epochs chosen for the milestones, in the milestones' order.

    Returns:
        True when every stage between consecutive milestones is a real stretch of training.
    """
    return len(set(epochs)) == len(epochs) and min(epochs) > 0


def health_records(
    history: Sequence[Mapping[str, Any]], diversity: Mapping[int, float]
) -> list[dict[str, Any]]:
    """A run's epochs as the health view's warning rule reads them.

    Args:
        history: the run's ``history.json`` records (``epoch``, ``train_top1``, ``val_top1``).
        diversity: epoch → concept diversity of that epoch's neurons (``-inf`` when collapsed); epochs missing
            here are not computed.

    Returns:
        One record per history epoch: ``epoch``, ``computed``, ``diversity`` (None when collapsed or not
        computed), ``train_top1``, ``val_top1``.
    """
    records = []
    for entry in history:
        value = diversity.get(int(entry["epoch"]))
        records.append(
            {
                "epoch": int(entry["epoch"]),
                "computed": value is not None,
                "diversity": value if value is not None and math.isfinite(value) else None,
                "train_top1": entry.get("train_top1"),
                "val_top1": entry.get("val_top1"),
            }
        )
    return records


def milestone_movement(
    history: Sequence[Mapping[str, Any]],
    vectors: Mapping[int, np.ndarray],
    targets: Sequence[float] = MILESTONES,
) -> dict[str, Any]:
    """Mean movement of a run's neuron vectors between its consecutive accuracy milestones (paper §4.5).

    Args:
        history: the run's ``history.json`` records.
        vectors: epoch → ``(n_neurons, dim)`` vectors in the space; must hold every milestone epoch.
        targets: the milestone accuracies.

    Returns:
        ``milestones`` (one epoch per target), ``stages`` (``[t, t', mean distance]`` between distinct consecutive
        milestone epochs) and ``mean`` (their mean; None when every milestone is the same epoch).
    """
    epochs = epochs_at_milestones(history, targets)
    stages = [
        [a, b, movement(vectors[a], vectors[b])[0]]
        for a, b in zip(epochs, epochs[1:], strict=False)
        if a != b
    ]
    return {
        "milestones": epochs,
        "stages": stages,
        "mean": float(np.mean([m for *_, m in stages])) if stages else None,
    }


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, minimum and maximum of one figure over seeds (None values — not measurable — left out).

    Args:
        values: the figure per seed.

    Returns:
        ``values``, ``mean``, ``min``, ``max`` (None when no value is known).
    """
    known = [v for v in values if v is not None]
    return {
        "values": list(values),
        "mean": statistics.fmean(known) if known else None,
        "min": min(known) if known else None,
        "max": max(known) if known else None,
    }
