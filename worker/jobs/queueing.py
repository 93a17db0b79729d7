"""Queueing placements, torch-free: shared by the ``build_space`` handler (its follow-ups) and the run tracker /
folder watcher (``worker/tracker.py``), which must not pay for torch's and umap's imports to queue a job."""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.store import list_snapshots, list_space_snapshots
from backend.store.jobspec import PRIORITY, AddSnapshotParams, enqueue_job_in


def queue_snapshots(session: Session, space_id: int, run_ids: list[int]) -> list[int]:
    """Queue (in ``session``'s transaction) ``add_snapshot`` for every epoch of ``run_ids`` not yet computed in
    the space; an identical job already queued or running is not queued twice.

    Args:
        session: a writing transaction (the read of what is computed and the enqueue commit together, so a
            placement finishing meanwhile is not queued again).
        space_id: the space.
        run_ids: the runs whose epochs to place.

    Returns:
        The ids of the jobs (new or already active).
    """
    done = {snap.id for _row, snap in list_space_snapshots(session, space_id)}
    wanted = [
        snap.id for run_id in run_ids for snap in list_snapshots(session, run_id) if snap.id not in done
    ]
    jobs = []
    for snapshot_id in wanted:
        found = enqueue_job_in(
            session, AddSnapshotParams(space_id=space_id, snapshot_id=snapshot_id), PRIORITY["add_snapshot"]
        )
        if found is not None:
            jobs.append(found[0].id)
    return jobs
