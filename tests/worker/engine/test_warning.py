"""The early-warning rule ported to Python (worker/engine/warning.py) on the cases the page's rule
(frontend/src/health/warning.ts) distinguishes."""

from __future__ import annotations

import pytest

from worker.engine.warning import assess_run, diversity_threshold


def epochs(diversity, val, computed=None):
    computed = computed or [True] * len(diversity)
    return [
        {"epoch": e, "computed": c, "diversity": d, "val_top1": v, "train_top1": v}
        for e, (d, v, c) in enumerate(zip(diversity, val, computed, strict=True))
    ]


REFERENCE = epochs([1.0, 1.1, 1.2, 1.25, 1.3], [0.1, 0.4, 0.6, 0.7, 0.8])


def test_threshold_is_the_largest_of_median_step_range_share_and_floor():
    # steps 0.1, 0.1, 0.05, 0.05 → median 0.075 × 3 = 0.225; range 0.3 × 0.25 = 0.075; floor 0.05
    assert diversity_threshold(REFERENCE) == pytest.approx(0.225)
    assert diversity_threshold(epochs([1.0, 1.0], [0.1, 0.1])) == 0.05


@pytest.mark.parametrize(
    ("diversity", "val", "kind", "lead"),
    [
        ([1.0, 0.5, 0.2, 0.1, 0.0], [0.1, 0.4, 0.4, 0.4, 0.4], "early", 1),  # diversity at 1, accuracy at 2
        ([1.0, None, None, None, None], [0.1, 0.4, 0.6, 0.7, 0.8], "diversity-only", None),  # collapse
        ([1.0, 1.1, 0.5, 0.4, 0.3], [0.1, 0.2, 0.3, 0.3, 0.3], "late", -1),
        ([1.0, 1.1, 1.2, 1.25, 1.3], [0.1, 0.4, 0.6, 0.7, 0.8], "none", None),
        ([1.0, 1.1, 1.2, 1.25, 1.3], [0.1, 0.4, 0.2, 0.2, 0.2], "accuracy-only", None),
        ([1.0, 1.1, 0.5, 0.5, 0.5], [0.1, 0.4, 0.2, 0.2, 0.2], "same", 0),
    ],
)
def test_kinds(diversity, val, kind, lead):
    a = assess_run(epochs(diversity, val), REFERENCE)
    assert a.kind == kind
    assert a.lead == lead
    assert a.early_warning == (kind in ("early", "diversity-only"))


def test_a_one_epoch_blip_is_not_an_onset_and_too_few_epochs_say_nothing():
    blip = assess_run(epochs([1.0, 0.2, 1.2, 1.25, 1.3], [0.1, 0.4, 0.6, 0.7, 0.8]), REFERENCE)
    assert blip.diversity_epoch is None
    few = assess_run(epochs([1.0, 0.1], [0.1, 0.4], [True, False]), REFERENCE)
    assert few.kind == "too-few"
