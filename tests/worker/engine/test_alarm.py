"""The diversity alarm's rules (worker/engine/alarm.py) against series whose answer is known by hand."""

from __future__ import annotations

import math

from worker.engine.alarm import alarms, band_alarm, drop_alarm, movement_alarm


def epochs(diversity, val_top1=None, movement=None) -> list[dict]:
    """Per-epoch records; None diversity = collapsed, ``...`` = not computed."""
    out = []
    for e, d in enumerate(diversity):
        out.append(
            {
                "epoch": e,
                "computed": d is not ...,
                "diversity": None if d is ... else d,
                "val_top1": None if val_top1 is None else val_top1[e],
                "train_top1": None,
                "movement": None if movement is None else movement[e],
            }
        )
    return out


REFERENCE = epochs([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], val_top1=[0.1, 0.3, 0.5, 0.6, 0.7, 0.8])


def test_band_alarm_reports_its_lead_over_the_accuracy() -> None:
    # Threshold: max(3 × median step 0.1, 0.25 × range 0.5, 0.05) = 0.3. Diversity is 0.5 below from epoch 2 on;
    # accuracy falls more than 5 points behind from epoch 4 on.
    run = epochs([1.0, 1.05, 0.7, 0.6, 0.5, 0.4], val_top1=[0.1, 0.3, 0.48, 0.57, 0.5, 0.4])
    alarm = band_alarm(run, REFERENCE, "healthy")
    assert alarm is not None and (alarm.start_epoch, alarm.accuracy_epoch, alarm.lead) == (2, 4, 2)
    assert alarm.reason.startswith("Concept diversity fell more than 0.30 nats below healthy's from epoch 2")
    assert "2 epoch(s) before its accuracy fell behind (epoch 4)" in alarm.reason


def test_band_alarm_quiet_in_the_band_and_on_a_one_epoch_blip() -> None:
    assert band_alarm(epochs([1.0, 1.1, 1.15, 1.3, 1.4, 1.5]), REFERENCE, "healthy") is None
    assert band_alarm(epochs([1.0, 1.1, 0.5, 1.3, 1.4, 1.5]), REFERENCE, "healthy") is None


def test_band_alarm_on_a_collapse_while_accuracy_keeps_up() -> None:
    alarm = band_alarm(epochs([1.0, None, None]), REFERENCE, "healthy")
    assert alarm is not None and alarm.start_epoch == 1 and alarm.accuracy_epoch is None
    assert "collapsed" in alarm.reason and "still keeps up" in alarm.reason


def test_drop_alarm_without_a_reference() -> None:
    # Lost 0.6 nats within 3 computed epochs by epoch 3 (1.2 → 0.6); epoch 2 is not computed and not guessed.
    alarm = drop_alarm(epochs([1.0, 1.2, ..., 0.6, 0.5]), max_drop=0.5, window=3)
    assert alarm is not None and alarm.start_epoch == 3 and "0.60 nats" in alarm.reason
    assert drop_alarm(epochs([1.0, 0.8, 0.6, 0.4, 0.2]), max_drop=0.5, window=2) is None  # slow decline
    assert drop_alarm(epochs([1.0, None]), max_drop=0.5)
    assert alarms(epochs([1.0, 0.9])) == []


def test_movement_alarm_when_neurons_move_far_more_than_the_reference() -> None:
    ref = epochs([1.0] * 5, movement=[math.nan, 1.0, 0.9, 0.8, 0.7])
    ref[0]["movement"] = None
    run = epochs([1.0] * 5, movement=[None, 1.0, 2.5, 2.6, 2.0])
    alarm = movement_alarm(run, ref, "healthy")
    assert alarm is not None and (alarm.metric, alarm.start_epoch) == ("movement", 2)
    assert movement_alarm(epochs([1.0] * 5, movement=[None, 1.0, 2.5, 0.8, 0.7]), ref, "healthy") is None
