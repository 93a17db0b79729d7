"""The measures of what the demo world must show (worker/demo/phenomena.py), on hand-made histories and vectors,
and the demo runs' definitions that make the default world show it (issue 14)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.demo.phenomena import health_records, milestone_movement, milestones_distinct_after_init, spread
from worker.demo.runs import DEMO_RUNS
from worker.engine.warning import assess_run


def _history(train_top1: list[float], val_top1: list[float] | None = None) -> list[dict]:
    val = val_top1 or train_top1
    return [
        {"epoch": e, "train_top1": t, "val_top1": v}
        for e, (t, v) in enumerate(zip(train_top1, val, strict=True))
    ]


def test_milestones_must_be_distinct_and_after_the_initialisation() -> None:
    assert milestones_distinct_after_init([1, 3, 6])
    assert not milestones_distinct_after_init([0, 1, 3])  # 0.25 at the initialisation: the old default world
    assert not milestones_distinct_after_init([2, 2, 5])


def test_milestone_movement_is_the_mean_distance_between_consecutive_milestones() -> None:
    rng = np.random.default_rng(0)
    history = _history([0.08, 0.15, 0.27, 0.55, 0.7, 0.9])  # milestones: epochs 2, 3, 4
    vectors = {e: rng.normal(size=(7, 3)) for e in range(6)}
    found = milestone_movement(history, vectors)
    assert found["milestones"] == [2, 3, 4]
    literal = []
    for a, b in ((2, 3), (3, 4)):
        distances = [math.dist(vectors[a][i], vectors[b][i]) for i in range(7)]
        literal.append(sum(distances) / len(distances))
    assert [s[:2] for s in found["stages"]] == [[2, 3], [3, 4]]
    assert [s[2] for s in found["stages"]] == pytest.approx(literal)
    assert found["mean"] == pytest.approx(sum(literal) / 2)


def test_milestone_movement_skips_a_stage_whose_ends_coincide() -> None:
    history = _history(
        [0.1, 0.6, 1.0]
    )  # 0.25 and 0.5 both closest to epoch 1... 0.25 → epoch 0 (0.15 vs 0.35)
    vectors = {e: np.full((4, 2), float(e)) for e in range(3)}
    found = milestone_movement(history, vectors, targets=(0.5, 0.55, 0.9))
    assert found["milestones"] == [1, 1, 2]
    assert found["stages"] == [[1, 2, pytest.approx(math.sqrt(2))]]
    assert milestone_movement(history, vectors, targets=(0.5, 0.5))["mean"] is None


def test_health_records_mark_collapse_and_uncomputed_epochs() -> None:
    records = health_records(_history([0.1, 0.2, 0.3]), {0: 0.4, 1: -math.inf})
    assert [(r["computed"], r["diversity"]) for r in records] == [(True, 0.4), (True, None), (False, None)]


def test_a_diversity_drop_before_the_accuracy_fall_is_an_early_warning() -> None:
    """The shape the default world is built for: high-lr's diversity collapses at epoch 1 while its accuracy is
    still level with healthy's slow start; it falls behind at epoch 2."""
    healthy = health_records(_history([0.08, 0.15, 0.6, 0.8]), {0: 0.0, 1: 0.05, 2: 0.2, 3: 0.3})
    high = health_records(_history([0.08, 0.16, 0.17, 0.17]), {0: 0.0, 1: -math.inf, 2: -math.inf, 3: -0.4})
    verdict = assess_run(high, healthy)
    assert (verdict.kind, verdict.diversity_epoch, verdict.accuracy_epoch, verdict.lead) == ("early", 1, 2, 1)


def test_spread_leaves_out_unknown_values() -> None:
    assert spread([1, None, 3]) == {"values": [1, None, 3], "mean": 2, "min": 1, "max": 3}
    assert spread([None])["mean"] is None


def test_healthy_starts_slowly_on_the_default_data() -> None:
    """Few steps an epoch under the one-cycle warm-up keep healthy's first epoch near chance on the 4,000 default
    training images (its accuracy milestones then fall at distinct epochs after the initialisation)."""
    healthy = DEMO_RUNS["healthy"]
    assert healthy.schedule == "onecycle"
    assert math.ceil(4000 / healthy.batch_size) <= 16
    assert healthy.epochs >= 10
