"""Evolution stages chosen by accuracy milestones (paper §4.4, footnote 1).

The paper picks the epochs whose training top-1 accuracy is closest to 25 %, 50 % and 75 % (epochs 5, 21
and 207 of its VGG16) and studies the evolutions between consecutive milestones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from worker.errors import ConceptEvoError

logger = logging.getLogger(__name__)


def epochs_at_milestones(
    history: Sequence[Mapping[str, object]],
    targets: Sequence[float] = (0.25, 0.5, 0.75),
    key: str = "train_top1",
) -> list[int]:
    """The epoch whose ``key`` accuracy is closest to each target (ties: the earliest epoch).

    Args:
        history: one record per epoch, e.g. the training run's ``history.json``. A record's epoch is its
            ``"epoch"`` field when present, else its position in the list.
        targets: accuracies to match, fractions in [0, 1].
        key: which accuracy field (the paper: training top-1).

    Returns:
        One epoch per target, in the targets' order.

    Raises:
        ConceptEvoError: empty history or targets, a record without ``key`` or with a non-numeric value,
            a target outside [0, 1], or accuracies recorded as percentages (values above 1).
    """
    if not history:
        raise ConceptEvoError("training history is empty; no epochs to choose milestones from")
    if not targets:
        raise ConceptEvoError("no milestone accuracies given")
    for target in targets:
        if not isinstance(target, int | float) or not 0.0 <= float(target) <= 1.0:
            raise ConceptEvoError(f"milestone accuracy {target!r} is not a fraction in [0, 1]")
    epochs: list[int] = []
    values: list[float] = []
    for position, record in enumerate(history):
        if not isinstance(record, Mapping):
            raise ConceptEvoError(f"training history entry {position} is not a record")
        if key not in record:
            raise ConceptEvoError(f"training history entry {position} has no {key!r} field")
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(float(value)):
            raise ConceptEvoError(f"training history entry {position} has a non-numeric {key!r}: {value!r}")
        epoch = record.get("epoch", position)
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ConceptEvoError(f"training history entry {position} has a non-integer epoch: {epoch!r}")
        epochs.append(epoch)
        values.append(float(value))
    if max(values) > 1.0:
        raise ConceptEvoError(
            f"{key!r} values go above 1 (max {max(values)}); expected fractions, not percentages"
        )
    chosen = []
    for target in targets:
        best = min(range(len(values)), key=lambda i: (abs(values[i] - float(target)), epochs[i]))
        chosen.append(epochs[best])
    logger.info("milestones %s of %s → epochs %s", list(targets), key, chosen)
    return chosen
