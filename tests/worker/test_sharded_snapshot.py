"""``compute --shards N``: an ``add_snapshot`` job whose stimuli pass runs as ``stimuli_shard`` jobs (issue 15).

The real handlers run in-process on the tiny world of ``tests/fixtures/tiny_space.py`` (24 images, batches of 4):
the job queues its shards, waits (deferred) while any worker runs them, then merges them and publishes exactly
the rows the one-pass job writes; the partial top-k are removed with the publish. A shard that fails fails the
placement with one line naming it, and the door refuses more shards than the space's pass has batches.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.store import NeuronState, PatchSet, get_job, list_jobs
from backend.store import queue as job_queue
from backend.store.errors import ConflictError
from backend.store.jobspec import AddSnapshotParams, check_references, enqueue_job
from backend.store.shards import StimuliShard, ensure_shard_table
from tests.fixtures.tiny_space import build_tiny_space
from worker import runner
from worker.errors import ConceptEvoError
from worker.jobs import shards as shard_jobs
from worker.jobs import space as space_jobs

HANDLERS = {
    "add_snapshot": space_jobs.handle_add_snapshot,
    "stimuli_shard": shard_jobs.handle_stimuli_shard,
}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("CONCEPTEVO_DB", raising=False)
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(runner, "DEFER_BASE_S", 0.05)
    monkeypatch.setattr(runner, "DEFER_CAP_S", 0.05)
    store, space_id, snaps = build_tiny_space(tmp_path, per_class=12, batch_size=4, k=2)
    yield store, space_id, snaps
    store.dispose()


def _drain(store, handlers=HANDLERS, timeout_s: float = 60.0) -> None:
    """Run in-process workers until no job is queued or running (deferred jobs come back after their delay)."""
    deadline = time.monotonic() + timeout_s
    while list_jobs(store, "queued") or list_jobs(store, "running"):
        assert time.monotonic() < deadline, [(j.id, j.kind, j.message) for j in list_jobs(store, "queued")]
        runner.run_worker(store, once=True, poll=0.01, handlers=handlers, install_signals=False)
        time.sleep(0.02)


def _placed(store, snapshot_id: int) -> tuple[list[tuple], list[tuple]]:
    with store.session(readonly=True) as s:
        states = s.execute(
            select(NeuronState.neuron_id, NeuronState.stimuli, NeuronState.maxima, NeuronState.vector)
            .where(NeuronState.snapshot_id == snapshot_id)
            .order_by(NeuronState.neuron_id)
        ).all()
        patches = s.execute(
            select(PatchSet.neuron_id, PatchSet.boxes)
            .where(PatchSet.snapshot_id == snapshot_id)
            .order_by(PatchSet.neuron_id)
        ).all()
    return [tuple(r) for r in states], [tuple(r) for r in patches]


def test_a_sharded_placement_writes_exactly_the_one_pass_rows(world) -> None:
    store, space_id, snaps = world
    one = enqueue_job(store, AddSnapshotParams(space_id=space_id, snapshot_id=snaps[1]))[0]
    _drain(store)
    assert get_job(store, one.id).status == "done"
    whole = _placed(store, snaps[1])
    assert len(whole[0]) == 10 and len(whole[1]) == 10  # 4 + 6 neurons, one patch set each
    assert {len(boxes) for _, boxes in whole[1]} == {2 * 5 * 4}  # k = 2 boxes of 5 int32

    sharded = enqueue_job(
        store, AddSnapshotParams(space_id=space_id, snapshot_id=snaps[1], force=True, shards=3)
    )[0]
    _drain(store)
    job = get_job(store, sharded.id)
    assert job.status == "done", job.error
    assert job.result["shards"] == 3 and job.deferrals >= 1
    shard_jobs_done = [j for j in list_jobs(store, "done") if j.kind == "stimuli_shard"]
    assert sorted(j.params["shard"] for j in shard_jobs_done) == [0, 1, 2]
    assert {j.params["n_shards"] for j in shard_jobs_done} == {3}
    assert _placed(store, snaps[1]) == whole, "the sharded pass must publish exactly the one-pass rows"
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(StimuliShard)) == 0, "spent partials stay behind"


def test_a_failed_shard_fails_the_placement_in_one_line(world, monkeypatch) -> None:
    store, space_id, snaps = world

    def shard_or_fail(ctx) -> None:
        if ctx.job.params["shard"] == 1:
            raise ConceptEvoError("disk full while reading images")
        shard_jobs.handle_stimuli_shard(ctx)

    job = enqueue_job(store, AddSnapshotParams(space_id=space_id, snapshot_id=snaps[1], shards=2))[0]
    _drain(store, {**HANDLERS, "stimuli_shard": shard_or_fail})
    failed = get_job(store, job.id)
    assert failed.status == "failed"
    assert failed.error.startswith("stimuli shard 2 of 2 of snapshot ") and "disk full" in failed.error
    assert "\n" not in failed.error and "retry this job" in failed.error
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(NeuronState)) == 0

    # retrying the placement queues the failed range again; this time it works
    job_queue.retry(store, job.id)
    _drain(store)
    assert get_job(store, job.id).status == "done"


def test_the_door_refuses_more_shards_than_the_pass_has_batches(world) -> None:
    store, space_id, snaps = world
    ensure_shard_table(store)
    with store.session(readonly=True) as s:
        check_references(s, AddSnapshotParams(space_id=space_id, snapshot_id=snaps[1], shards=6))  # 6 batches
        with pytest.raises(
            ConflictError, match=r"space 'tiny': 7 shards of 24 images .* use at most 6 shards"
        ):
            check_references(s, AddSnapshotParams(space_id=space_id, snapshot_id=snaps[1], shards=7))
