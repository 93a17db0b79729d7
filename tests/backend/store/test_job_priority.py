"""Every job kind has a default priority, defined once next to its parameters (``backend/store/jobspec.py``)."""

from __future__ import annotations

from backend.store.jobspec import KINDS, PRIORITY
from worker.jobs import PRIORITY as WORKER_PRIORITY


def test_every_kind_has_a_priority_and_inputs_come_first() -> None:
    assert set(PRIORITY) == set(KINDS)
    assert WORKER_PRIORITY is PRIORITY
    # a kind is claimed before the kinds that need its output
    assert PRIORITY["demo"] > PRIORITY["build_space"] > PRIORITY["add_snapshot"] > PRIORITY["importance"]
