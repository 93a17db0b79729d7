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

from backend.store import (
    Store,
    find_run,
    find_space,
    list_importances,
    list_snapshots,
    list_space_snapshots,
)
from backend.store.jobspec import PRIORITY, enqueue_job, parse
from worker.demo.runs import DEMO_RUNS
from worker.demo.world import demo_world_ready as demo_world_ready  # re-exported: tests and callers use it
from worker.engine.milestones import epochs_at_milestones
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


def register_demo(store: Store, root: Path) -> list[str]:
    """Register the demo dataset (train split) and its three runs."""
    summaries = [add_dataset(store, root / "dataset" / "train", name=DEMO_DATASET).summary]
    for name in DEMO_RUNS:
        summaries.append(add_run(store, name, "demo-vgg", root / "runs" / name, DEMO_DATASET).summary)
    return summaries


def enqueue_demo_jobs(store: Store, root: Path) -> DemoPlan:
    """Queue the space on the healthy run's last epoch with every epoch of every run placed in it, and
    importance for every class at two evolution stages per run (between the epochs whose train top-1 is
    closest to 0.25 → 0.5 and 0.5 → 0.75, the paper's milestones)."""
    plan = DemoPlan()
    with store.session(readonly=True) as session:
        runs = {name: find_run(session, name) for name in DEMO_RUNS}
        snapshots = {name: list_snapshots(session, run.id) for name, run in runs.items()}
        run_ids = {name: run.id for name, run in runs.items()}
        space = find_space(session, DEMO_SPACE)
        built = space is not None and bool(space.reducer)
        space_id = space.id if built else None
        computed = {snap.id for _row, snap in list_space_snapshots(session, space_id)} if built else set()
        stages_done = {(imp.run_id, imp.epoch_from, imp.epoch_to) for imp in list_importances(session)}

    jobs: list[tuple[str, dict]] = []
    if not built:
        base = max(snapshots[BASE_RUN], key=lambda snap: snap.epoch)
        jobs.append(
            (
                "build_space",
                {"base_snapshot_id": base.id, "name": DEMO_SPACE, "compute_runs": list(run_ids.values())},
            )
        )
    else:
        for snaps in snapshots.values():
            for snap in snaps:
                if snap.id in computed:
                    plan.already_done += 1
                else:
                    jobs.append(("add_snapshot", {"space_id": space_id, "snapshot_id": snap.id}))
    for name, run_id in run_ids.items():
        history = json.loads((root / "runs" / name / "history.json").read_text())
        stage_epochs = sorted(set(epochs_at_milestones(history, MILESTONES)))
        for start, end in zip(stage_epochs, stage_epochs[1:], strict=False):
            if (run_id, start, end) in stages_done:
                plan.already_done += 1
            else:
                jobs.append(("importance", {"run_id": run_id, "epoch_from": start, "epoch_to": end}))
    for kind, params in jobs:
        job, created = enqueue_job(store, parse(kind, params), priority=PRIORITY[kind])
        (plan.queued if created else plan.existing).append(job.id)
    return plan
