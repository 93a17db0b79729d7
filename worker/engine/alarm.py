"""The diversity alarm of a run that is still training (issue 16): pure rules over per-epoch metrics.

Two rules, each giving the epoch the condition started and a one-sentence reason:

* **band** — against a reference run the user names: the early-warning rule of the health view
  (:func:`worker.engine.warning.assess_run`, the port of ``frontend/src/health/warning.ts``) says the run's
  diversity fell clearly below the reference's (kinds ``early`` / ``diversity-only``, or ``same``: the drop is
  real even when accuracy fell at the same epoch). Movement leaves the band when it rises above the reference's
  by more than the same kind of threshold (the reference's own wobble), sustained over two compared epochs.
* **drop** — without a reference: diversity fell by more than ``max_drop`` nats within the last ``window``
  computed epochs.

Records are mappings like :data:`worker.engine.warning.HealthEpoch` (``epoch``, ``computed``, ``diversity``,
``movement``, ``val_top1``, ``train_top1``). No database, no web.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from worker.engine.warning import HealthEpoch, assess_run, diversity_threshold

#: Default of the drop rule: nats of diversity lost within ``DROP_WINDOW`` computed epochs.
MAX_DROP = 0.5
DROP_WINDOW = 3


@dataclass(frozen=True)
class Alarm:
    """One raised alarm.

    Attributes:
        metric: ``diversity`` or ``movement``.
        rule: ``band`` or ``drop``.
        start_epoch: the epoch the condition started.
        accuracy_epoch: first epoch the accuracy fell behind the reference's (band rule), else None.
        reason: one sentence for the training log and the page.
    """

    metric: str
    rule: str
    start_epoch: int
    accuracy_epoch: int | None
    reason: str

    @property
    def lead(self) -> int | None:
        """Epochs between the alarm and the accuracy falling behind (None until it does)."""
        return None if self.accuracy_epoch is None else self.accuracy_epoch - self.start_epoch


def band_alarm(
    run: Sequence[HealthEpoch], reference: Sequence[HealthEpoch], reference_name: str
) -> Alarm | None:
    """The diversity band rule against ``reference`` (see the module docstring), or None.

    Args:
        run: the watched run's epochs.
        reference: the reference run's epochs in the same space.
        reference_name: its name, for the reason.

    Returns:
        The alarm, or None while diversity stays in the band.
    """
    a = assess_run(run, reference)
    if a.diversity_epoch is None or a.kind not in ("early", "diversity-only", "same"):
        return None
    what = "collapsed" if a.collapsed else f"fell more than {a.threshold:.2f} nats below {reference_name}'s"
    if a.accuracy_epoch is None:
        tail = f"while its {a.accuracy or 'top-1'} accuracy still keeps up"
    elif a.lead and a.lead > 0:
        tail = f"{a.lead} epoch(s) before its accuracy fell behind (epoch {a.accuracy_epoch})"
    else:
        tail = "at the epoch its accuracy fell behind"
    reason = f"Concept diversity {what} from epoch {a.diversity_epoch}, {tail}."
    return Alarm("diversity", "band", a.diversity_epoch, a.accuracy_epoch, reason)


def movement_alarm(
    run: Sequence[HealthEpoch], reference: Sequence[HealthEpoch], reference_name: str
) -> Alarm | None:
    """Movement above ``reference``'s band, sustained over two compared epochs (or at the newest), or None."""
    as_diversity = [
        {"epoch": e["epoch"], "computed": True, "diversity": e.get("movement")} for e in reference
    ]
    threshold = diversity_threshold([e for e in as_diversity if _finite(e["diversity"])])
    ref = {e["epoch"]: e.get("movement") for e in reference}
    compared: list[tuple[int, bool]] = []
    for e in sorted(run, key=lambda e: e["epoch"]):
        mine, theirs = e.get("movement"), ref.get(e["epoch"])
        if _finite(mine) and _finite(theirs):
            compared.append((int(e["epoch"]), mine - theirs > threshold))
    for i, (epoch, above) in enumerate(compared):
        if above and (i == len(compared) - 1 or compared[i + 1][1]):
            reason = (
                f"Neurons move more than {threshold:.2f} farther per epoch than in {reference_name!r} "
                f"from epoch {epoch}: concepts are being overwritten rather than refined."
            )
            return Alarm("movement", "band", epoch, None, reason)
    return None


def drop_alarm(
    run: Sequence[HealthEpoch], max_drop: float = MAX_DROP, window: int = DROP_WINDOW
) -> Alarm | None:
    """Diversity fell by more than ``max_drop`` nats within ``window`` computed epochs (first such epoch), or None.

    Args:
        run: the run's epochs.
        max_drop: nats of diversity that may be lost within the window.
        window: computed epochs looked back from each epoch.

    Returns:
        The alarm at the first epoch whose diversity is that far below one of the previous ``window`` epochs'.
    """
    series = [
        (int(e["epoch"]), -math.inf if e.get("diversity") is None else float(e["diversity"]))
        for e in sorted(run, key=lambda e: e["epoch"])
        if e.get("computed")
    ]
    for i, (epoch, value) in enumerate(series):
        earlier = [v for _, v in series[max(0, i - window) : i] if math.isfinite(v)]
        if earlier and max(earlier) - value > max_drop:
            lost = "all of it (collapsed)" if value == -math.inf else f"{max(earlier) - value:.2f} nats"
            reason = (
                f"Concept diversity dropped by {lost} within {window} computed epoch(s) up to epoch {epoch}, "
                f"faster than the {max_drop:.2f}-nat limit."
            )
            return Alarm("diversity", "drop", epoch, None, reason)
    return None


def alarms(
    run: Sequence[HealthEpoch],
    reference: Sequence[HealthEpoch] | None = None,
    reference_name: str = "reference",
    max_drop: float = MAX_DROP,
    window: int = DROP_WINDOW,
) -> list[Alarm]:
    """Every alarm the rules raise for ``run`` (band rules only with a ``reference``)."""
    found = [drop_alarm(run, max_drop, window)]
    if reference:
        found += [band_alarm(run, reference, reference_name), movement_alarm(run, reference, reference_name)]
    return [a for a in found if a is not None]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
