"""Milestone epochs (paper §4.4 footnote 1) on hand-made histories."""

from __future__ import annotations

import pytest

from worker.engine.milestones import epochs_at_milestones
from worker.errors import ConceptEvoError


def test_paper_like_history():
    accuracies = [0.05, 0.12, 0.2, 0.24, 0.27, 0.4, 0.49, 0.52, 0.7, 0.74, 0.77, 0.8]
    history = [{"epoch": e + 1, "train_top1": a, "val_top1": a / 2} for e, a in enumerate(accuracies)]
    assert epochs_at_milestones(history) == [4, 7, 10]
    assert epochs_at_milestones(history, targets=(0.75, 0.1)) == [10, 2]
    assert epochs_at_milestones(history, targets=(0.3,), key="val_top1") == [8]


def test_position_is_the_epoch_and_ties_pick_the_earliest():
    history = [{"train_top1": a} for a in (0.25, 0.75, 0.5, 0.5)]
    assert epochs_at_milestones(history, targets=(0.0, 0.5, 1.0)) == [0, 2, 1]


@pytest.mark.parametrize(
    ("history", "targets", "message"),
    [
        ([], (0.5,), "empty"),
        ([{"val_top1": 0.3}], (0.5,), "no 'train_top1'"),
        ([{"train_top1": "high"}], (0.5,), "non-numeric"),
        ([{"train_top1": 0.2}], (1.5,), "fraction"),
        ([{"train_top1": 0.2}], (), "no milestone"),
        ([{"train_top1": 45.0}], (0.5,), "percentages"),
        ([{"train_top1": 0.2, "epoch": "one"}], (0.5,), "epoch"),
    ],
)
def test_bad_input(history, targets, message):
    with pytest.raises(ConceptEvoError, match=message):
        epochs_at_milestones(history, targets=targets)
