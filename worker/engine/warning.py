"""The early-warning rule of the training-health view (paper §4.5), ported from
``frontend/src/health/warning.ts`` so the evaluation report (and an alarm) can apply the very rule the page shows.

A run trained with an ill-suited hyper-parameter (a too-high learning rate) loses concept diversity *before* its
accuracy shows it. :func:`assess_run` compares a run with a reference run epoch by epoch:

* **diversity clearly below** at an epoch computed in both runs: lower than the reference's by more than
  :func:`diversity_threshold` (a collapsed, ``-inf``/None, diversity is below any finite value);
* **accuracy behind**: lower than the reference's by more than ``accuracy_margin`` (val top-1 when both runs have
  some, else train top-1);
* both **sustained**: the onset is the first epoch where the condition holds and still holds at the next
  compared epoch (or is the last compared one).

Pure functions over plain records; no database, no web.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The defaults of ``DEFAULT_WARNING_OPTIONS`` in warning.ts.
K, RANGE_FRACTION, FLOOR, ACCURACY_MARGIN = 3.0, 0.25, 0.05, 0.05

#: One epoch of a run: ``epoch``, ``computed``, ``diversity`` (None = collapsed), ``val_top1``, ``train_top1``.
HealthEpoch = Mapping[str, Any]


@dataclass(frozen=True)
class HealthAssessment:
    """What the rule says of a run against a reference (fields as ``HealthAssessment`` in warning.ts).

    Attributes:
        kind: ``early``, ``diversity-only``, ``same``, ``late``, ``unclear``, ``accuracy-only``, ``none`` or
            ``too-few`` (see warning.ts ``WarningKind``).
        diversity_epoch: first epoch of the sustained clear drop of diversity, or None.
        diversity_fine_until: last compared epoch before it, or None.
        collapsed: whether diversity is collapsed (-inf) at ``diversity_epoch``.
        accuracy_epoch: first epoch of the sustained accuracy fall, or None.
        accuracy: ``"val"``, ``"train"`` or None — which accuracy was compared.
        lead: ``accuracy_epoch - diversity_epoch`` when both exist, else None.
        threshold: the diversity gap (nats) counted as clearly below.
        margin: the accuracy gap counted as behind.
        compared: epochs whose diversity is computed in both runs, ascending.
    """

    kind: str
    diversity_epoch: int | None
    diversity_fine_until: int | None
    collapsed: bool
    accuracy_epoch: int | None
    accuracy: str | None
    lead: int | None
    threshold: float
    margin: float
    compared: list[int]

    @property
    def early_warning(self) -> bool:
        """Whether this is the paper's early sign (diversity first, accuracy later or not yet)."""
        return self.kind in ("early", "diversity-only")


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def _diversity(epoch: HealthEpoch) -> float | None:
    """A computed epoch's diversity, ``-inf`` when collapsed (None or NaN); None when not computed."""
    if not epoch.get("computed"):
        return None
    value = epoch.get("diversity")
    return -math.inf if value is None or math.isnan(value) else float(value)


def diversity_threshold(
    reference: Sequence[HealthEpoch],
    k: float = K,
    range_fraction: float = RANGE_FRACTION,
    floor: float = FLOOR,
) -> float:
    """``max(k × median |step| of the reference's finite diversities, range_fraction × their range, floor)``.

    Args:
        reference: the reference run's epochs.
        k, range_fraction, floor: the rule's options (warning.ts defaults).

    Returns:
        The diversity gap in nats that counts as clearly below.
    """
    ordered = sorted(reference, key=lambda e: e["epoch"])
    values = [v for v in map(_diversity, ordered) if v is not None and math.isfinite(v)]
    steps = [abs(b - a) for a, b in zip(values, values[1:], strict=False)]
    spread = max(values) - min(values) if values else 0.0
    return max(k * (statistics.median(steps) if steps else 0.0), range_fraction * spread, floor)


def _onset(flags: Sequence[bool]) -> int:
    """First index where a condition holds and also holds at the next one (or is the last); -1 if none."""
    for i, flag in enumerate(flags):
        if flag and (i == len(flags) - 1 or flags[i + 1]):
            return i
    return -1


def _kind(div: int | None, fine_until: int | None, acc: int | None, n_compared: int) -> str:
    if div is None:
        if n_compared < 2:
            return "too-few"
        return "accuracy-only" if acc is not None else "none"
    if acc is None:
        return "diversity-only"
    if div < acc:
        return "early"
    if div == acc:
        return "same"
    # Accuracy first — unless its epoch lies in the gap of uncomputed diversity just before the drop.
    return "unclear" if fine_until is None or acc > fine_until else "late"


def assess_run(
    run: Sequence[HealthEpoch], reference: Sequence[HealthEpoch], accuracy_margin: float = ACCURACY_MARGIN
) -> HealthAssessment:
    """Compare ``run`` with ``reference`` epoch by epoch (the rule of warning.ts ``assessRun``).

    Args:
        run: the run's epochs (any order).
        reference: the reference run's epochs (usually the space's base run).
        accuracy_margin: top-1 gap (fraction) counted as behind.

    Returns:
        :class:`HealthAssessment`.
    """
    threshold = diversity_threshold(reference)
    ref = {e["epoch"]: e for e in reference}
    ordered = sorted(run, key=lambda e: e["epoch"])
    compared: list[int] = []
    below: list[bool] = []
    collapsed: list[bool] = []
    for e in ordered:
        mine = _diversity(e)
        theirs = _diversity(ref[e["epoch"]]) if e["epoch"] in ref else None
        if mine is None or theirs is None:
            continue
        compared.append(int(e["epoch"]))
        collapsed.append(mine == -math.inf)
        below.append(theirs != -math.inf and (mine == -math.inf or theirs - mine > threshold))
    has_val = any(_finite(e.get("val_top1")) for e in ordered) and any(
        _finite(e.get("val_top1")) for e in reference
    )
    has_train = any(_finite(e.get("train_top1")) for e in ordered) and any(
        _finite(e.get("train_top1")) for e in reference
    )
    accuracy = "val" if has_val else "train" if has_train else None
    acc_epochs: list[int] = []
    behind: list[bool] = []
    if accuracy is not None:
        key = f"{accuracy}_top1"
        for e in ordered:
            mine = e.get(key)
            theirs = ref[e["epoch"]].get(key) if e["epoch"] in ref else None
            if _finite(mine) and _finite(theirs):
                acc_epochs.append(int(e["epoch"]))
                behind.append(theirs - mine > accuracy_margin)
    d, a = _onset(below), _onset(behind)
    div_epoch = compared[d] if d >= 0 else None
    fine_until = compared[d - 1] if d > 0 else None
    acc_epoch = acc_epochs[a] if a >= 0 else None
    return HealthAssessment(
        kind=_kind(div_epoch, fine_until, acc_epoch, len(compared)),
        diversity_epoch=div_epoch,
        diversity_fine_until=fine_until,
        collapsed=d >= 0 and collapsed[d],
        accuracy_epoch=acc_epoch,
        accuracy=accuracy,
        lead=acc_epoch - div_epoch if div_epoch is not None and acc_epoch is not None else None,
        threshold=threshold,
        margin=accuracy_margin,
        compared=compared,
    )
