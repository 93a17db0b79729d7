"""Register the demo world in the store and queue everything the page shows (``conceptevo demo``).

Idempotent: registration is by name, and the queue returns an identical queued or running job instead
of adding it twice, while finished work is recognised in the database and not queued again — so a
second ``conceptevo demo`` does nothing new.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from backend.store import (
    Importance,
    Space,
    SpaceSnapshot,
    Store,
    enqueue,
    find_run,
    list_snapshots,
)
from worker.demo.runs import DEMO_RUNS
from worker.engine.milestones import epochs_at_milestones
from worker.jobs import PRIORITY
from worker.registration import add_dataset, add_run

log = logging.getLogger(__name__)

DEMO_DATASET = "demo-train"
DEMO_SPACE = "demo"
BASE_RUN = "healthy"
MILESTONES = (0.25, 0.5, 0.75)


@dataclass
class DemoPlan:
    """What ``conceptevo demo`` registered and queued."""

    registered: list[str] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    existing: list[int] = field(default_factory=list)
    already_done: int = 0


def demo_world_ready(root: Path) -> bool:
    """The demo dataset and every demo run are completely written under ``root``."""
    from worker.training import is_complete

    return (root / "dataset" / "attributes.json").exists() and all(
        is_complete(root / "runs" / name) for name in DEMO_RUNS
    )


def register_demo(store: Store, root: Path) -> list[str]:
    """Register the demo dataset (train split) and its three runs."""
    summaries = [add_dataset(store, root / "dataset" / "train", name=DEMO_DATASET).summary]
    for name in DEMO_RUNS:
        summaries.append(add_run(store, name, "demo-vgg", root / "runs" / name, DEMO_DATASET).summary)
    return summaries


def enqueue_demo_jobs(store: Store, root: Path) -> DemoPlan:
    """Queue the space on the healthy run's last epoch, every epoch of every run, and importance at two
    evolution stages (between the epochs whose train top-1 is closest to 0.25 → 0.5 and 0.5 → 0.75)."""
    plan = DemoPlan()
    with store.session(readonly=True) as session:
        epochs = {name: [s.epoch for s in list_snapshots(session, find_run(session, name).id)] for name in DEMO_RUNS}
        space = session.scalars(select(Space).where(Space.name == DEMO_SPACE)).first()
        computed: set[tuple[str, int]] = set()
        if space is not None and space.reducer:
            computed = _computed_pairs(session, space.id)
        stages_done = _importance_done(session)

    base_epoch = max(epochs[BASE_RUN])
    jobs: list[tuple[str, dict]] = []
    if space is None or not space.reducer:
        jobs.append(("build_space", {"space": DEMO_SPACE, "run": BASE_RUN, "epoch": base_epoch}))
    for name, run_epochs in epochs.items():
        for epoch in run_epochs:
            if (name, epoch) not in computed:
                jobs.append(("add_snapshot", {"space": DEMO_SPACE, "run": name, "epoch": epoch}))
            else:
                plan.already_done += 1
    for name in DEMO_RUNS:
        history = json.loads((root / "runs" / name / "history.json").read_text())
        stage_epochs = sorted(set(epochs_at_milestones(history, MILESTONES)))
        for start, end in zip(stage_epochs, stage_epochs[1:], strict=False):
            if (name, start, end) in stages_done:
                plan.already_done += 1
                continue
            jobs.append(("importance", {"run": name, "from": start, "to": end}))
    for kind, params in jobs:
        job, created = enqueue(store, kind, params, priority=PRIORITY[kind])
        (plan.queued if created else plan.existing).append(job.id)
    return plan


def _computed_pairs(session, space_id: int) -> set[tuple[str, int]]:
    from backend.store import Run, Snapshot

    rows = session.execute(
        select(Run.name, Snapshot.epoch)
        .join(Snapshot, Snapshot.run_id == Run.id)
        .join(SpaceSnapshot, SpaceSnapshot.snapshot_id == Snapshot.id)
        .where(SpaceSnapshot.space_id == space_id)
    ).all()
    return {(name, int(epoch)) for name, epoch in rows}


def _importance_done(session) -> set[tuple[str, int, int]]:
    from backend.store import Run

    rows = session.execute(
        select(Run.name, Importance.epoch_from, Importance.epoch_to).join(Run, Run.id == Importance.run_id)
    ).all()
    return {(name, int(a), int(b)) for name, a, b in rows}
