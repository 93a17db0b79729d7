"""A job's results never hold the write lock long, and the worker copes with a busy database (issue 12).

The real ``add_snapshot`` handler runs in-process on the tiny world of ``test_cancel_cleanup``; the busy
database is a real second process holding SQLite's write lock.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import event, func, select

from backend.store import NeuronState, PatchSet, SpaceSnapshot, dialects, get_job, open_store, writes
from backend.store import queue as job_queue
from backend.store.models import StagedNeuronState, StagedPatchSet
from tests.backend.store.test_staged_writes import hold_write_lock
from tests.worker.test_cancel_cleanup import world  # noqa: F401  (the fixture)
from worker import runner
from worker.jobs import space as space_jobs

HANDLERS = {"add_snapshot": space_jobs.handle_add_snapshot}


def _count(store, model, **where) -> int:
    with store.session(readonly=True) as s:
        query = select(func.count()).select_from(model).filter_by(**where)
        return int(s.scalar(query))


def test_results_are_written_in_short_chunks_and_flipped_visible_at_once(world, monkeypatch) -> None:  # noqa: F811
    store, space_id, snaps, _data = world
    monkeypatch.setattr(writes, "STAGE_CHUNK_ROWS", 3)
    job, _ = job_queue.enqueue(store, "add_snapshot", {"space_id": space_id, "snapshot_id": snaps[1]})
    rows_in = {"now": 0, "max": 0}
    many_in_final: list[int] = []

    def on_execute(conn, cursor, statement, params, context, executemany):
        if executemany:
            rows_in["now"] += len(params)
        if "UPDATE jobs SET status" in statement:
            rows_in["final"] = True

    def on_commit(conn):
        rows_in["max"] = max(rows_in["max"], rows_in["now"])
        if rows_in.pop("final", False):
            many_in_final.append(rows_in["now"])
        rows_in["now"] = 0

    event.listen(store.engine, "before_cursor_execute", on_execute)
    event.listen(store.engine, "commit", on_commit)
    seen_while_staged = {}
    real_stage_patches = space_jobs.stage_patches

    def stage_then_look(*args, **kwargs):
        written = real_stage_patches(*args, **kwargs)
        reader = open_store(str(store.path))  # another connection, as the API would read
        seen_while_staged.update(
            states=_count(reader, NeuronState, snapshot_id=snaps[1]),
            patches=_count(reader, PatchSet, snapshot_id=snaps[1]),
            listed=_count(reader, SpaceSnapshot, snapshot_id=snaps[1]),
            staged=_count(reader, StagedPatchSet),
        )
        reader.dispose()
        return written

    monkeypatch.setattr(space_jobs, "stage_patches", stage_then_look)
    assert runner.run_worker(store, once=True, poll=0.01, handlers=HANDLERS, install_signals=False) == 1
    assert get_job(store, job.id).status == "done"
    assert seen_while_staged == {"states": 0, "patches": 0, "listed": 0, "staged": 10}
    assert rows_in["max"] <= 3, "no transaction inserts more than a chunk of rows from Python"
    assert many_in_final == [0], "the final transaction only copies staged rows inside the database"
    assert _count(store, NeuronState, snapshot_id=snaps[1]) == 10
    assert _count(store, PatchSet, snapshot_id=snaps[1]) == 10
    assert _count(store, StagedNeuronState) == _count(store, StagedPatchSet) == 0


def test_a_job_cancelled_after_staging_leaves_no_rows(world, monkeypatch) -> None:  # noqa: F811
    store, space_id, snaps, _data = world
    job, _ = job_queue.enqueue(store, "add_snapshot", {"space_id": space_id, "snapshot_id": snaps[1]})
    real_stage_patches = space_jobs.stage_patches

    def stage_then_cancel(*args, **kwargs):
        written = real_stage_patches(*args, **kwargs)
        job_queue.cancel(store, job.id)
        return written

    monkeypatch.setattr(space_jobs, "stage_patches", stage_then_cancel)
    assert runner.run_worker(store, once=True, poll=0.01, handlers=HANDLERS, install_signals=False) == 0
    assert get_job(store, job.id).status == "cancelled"
    for model in (StagedNeuronState, StagedPatchSet, NeuronState, PatchSet):
        assert _count(store, model) == 0, model.__tablename__
    assert _count(store, SpaceSnapshot, snapshot_id=snaps[1]) == 0


def test_the_heartbeat_survives_a_busy_database_quietly(world, monkeypatch, caplog) -> None:  # noqa: F811
    store, _space_id, _snaps, _data = world
    monkeypatch.setattr(dialects, "BUSY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(runner, "HEARTBEAT_S", 0.1)
    busy = open_store(str(store.path))  # connections that give up after 0.2 s
    job_queue.enqueue(busy, "other", {"i": 1})
    job = job_queue.claim(busy, "w", lease_s=60)
    ctx = runner.JobContext(
        store=busy, job=job, worker_id="w", device="cpu", cache={}, stop=threading.Event()
    )
    stop = threading.Event()
    beat = threading.Thread(target=runner._heartbeat_loop, args=(ctx, stop))
    caplog.set_level(logging.INFO, logger="worker.runner")
    holder = hold_write_lock(store.path, 2.0)
    locked_until = time.monotonic() + 2.0
    beat.start()
    try:
        holder.wait(timeout=30)
        time.sleep(max(0.0, locked_until - time.monotonic()) + 1.0)
    finally:
        stop.set()
        beat.join(timeout=10)
        busy.dispose()
    beats = [r for r in caplog.records if "heartbeat" in r.getMessage()]
    warnings = [r for r in beats if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in beats]
    assert warnings[0].exc_info is None and "database busy" in warnings[0].getMessage()
    assert any("works again" in r.getMessage() for r in beats)
    assert not ctx._lost
    info = get_job(store, job.id)
    assert info.status == "running" and info.heartbeat_at is not None
