"""Staged writes (issue 12): a job's rows go in ahead in short transactions, invisible to readers, and its
final transaction only copies them into place; a busy database is reported as busy, never as unusable.

Real SQLite files; the lock holder is a real second process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, func, select

from backend.store import (
    NeuronState,
    PatchSet,
    SpaceSnapshot,
    Store,
    dialects,
    open_store,
    run_neurons,
    snapshot_vectors,
    write_patches,
    write_snapshot_in_space,
    write_space,
    writes,
)
from backend.store import queue as job_queue
from backend.store.errors import DatabaseBusyError, StoreError
from backend.store.models import StagedNeuronState, StagedPatchSet
from tests.backend.store.conftest import World

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def hold_write_lock(db: Path, seconds: float) -> subprocess.Popen:
    """A second process that takes the SQLite write lock and keeps it for ``seconds``; returns once held."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def _arrays(n: int, k: int = 3, dim: int = 4):
    rng = np.random.default_rng(n)
    stimuli = np.stack([rng.permutation(6)[:k] for _ in range(n)])
    return stimuli, rng.random((n, k)).astype(np.float32), rng.normal(size=(n, dim)), rng.normal(size=(n, 2))


def _space(store: Store, world: World) -> int:
    with store.session() as s:
        return write_space(s, "s", world.snapshot_ids[0], world.dataset_id, {"k": 3}, b"r", None, None, {}).id


def _patches(ids: np.ndarray, stimuli: np.ndarray, tag: str) -> list[dict]:
    """One patch set per neuron: its stimuli's boxes and a sprite file of its own."""
    return [
        {
            "neuron_id": int(n),
            "boxes": [(int(image), 0, r, 2, r + 2) for r, image in enumerate(stimuli[i])],
            "file": f"patches/{tag}/n{int(n)}.webp",
        }
        for i, n in enumerate(ids)
    ]


def _count(store: Store, model, **where) -> int:
    with store.session(readonly=True) as s:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return int(s.scalar(query))


def test_staged_then_published_equals_a_direct_write_and_is_invisible_until_then(
    store_and_world: tuple[Store, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, world = store_and_world
    monkeypatch.setattr(writes, "STAGE_CHUNK_ROWS", 2)
    space_id = _space(store, world)
    with store.session(readonly=True) as s:
        ids = run_neurons(s, world.run_id).neuron_id
    stim, maxi, vec, xy = _arrays(len(ids))
    snap_direct, snap_staged = world.snapshot_ids[1], world.snapshot_ids[2]
    with store.session() as s:
        write_snapshot_in_space(s, space_id, snap_direct, ids, stim, maxi, vec, xy, 0.5, 1.0, None)
        write_patches(s, snap_direct, _patches(ids, stim, "a"))

    transactions: list[int] = []  # rows staged per committed transaction
    rows_now = [0]
    event.listen(
        store.engine, "commit", lambda conn: (transactions.append(rows_now[0]), rows_now.__setitem__(0, 0))
    )
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda conn, cur, stmt, params, ctx, many: rows_now.__setitem__(
            0, rows_now[0] + (len(params) if many and "staged_" in stmt else 0)
        ),
    )
    stage = writes.stage_key(7, "w")
    staged = writes.stage_snapshot_in_space(store, stage, 7, space_id, snap_staged, ids, stim, maxi, vec, xy)
    writes.stage_patches(store, stage, 7, snap_staged, _patches(ids, stim, "b"))
    assert max(transactions) <= 2, "each staging transaction writes at most STAGE_CHUNK_ROWS rows"
    assert len(transactions) >= (len(ids) + len(ids)) // 2
    # a reader sees nothing of the staged snapshot before the flip
    assert _count(store, SpaceSnapshot, snapshot_id=snap_staged) == 0
    assert _count(store, NeuronState, snapshot_id=snap_staged) == 0
    assert _count(store, PatchSet, snapshot_id=snap_staged) == 0

    with store.session() as s:
        writes.publish_staged_snapshot(s, space_id, staged, 0.5, 1.0, None)
        assert writes.publish_staged_patches(s, stage, snap_staged) == len(ids)
    writes.discard_stage(store, stage)
    assert _count(store, StagedNeuronState) == _count(store, StagedPatchSet) == 0
    with store.session(readonly=True) as s:
        direct, staged_rows = (snapshot_vectors(s, space_id, snap) for snap in (snap_direct, snap_staged))
        np.testing.assert_array_equal(direct[0], staged_rows[0])
        np.testing.assert_array_equal(direct[1], staged_rows[1])
        one = {
            (r.neuron_id, r.stimuli, r.maxima, r.x, r.y)
            for r in s.scalars(select(NeuronState).filter_by(snapshot_id=snap_direct))
        }
        two = {(r.neuron_id, r.stimuli, r.maxima, r.x, r.y) for r in s.scalars(select(NeuronState).filter_by(snapshot_id=snap_staged))}  # fmt: skip
        assert one == two
        points = [s.get(SpaceSnapshot, (space_id, snap)).points for snap in (snap_direct, snap_staged)]
        assert points[0] == points[1]
        boxes = [
            sorted((p.neuron_id, p.boxes) for p in s.scalars(select(PatchSet).filter_by(snapshot_id=snap)))
            for snap in (snap_direct, snap_staged)
        ]
        assert boxes[0] == boxes[1] and len(boxes[0]) == len(ids)


def test_packed_patches_keep_their_byte_ranges_and_name_the_files_they_supersede(
    store_and_world: tuple[Store, World],
) -> None:
    """Staged rows with a pack's byte ranges are published with them; the files of the replaced rows that no
    new row names are the ones to unlink after the commit, and a half-given range is refused at the door."""
    store, world = store_and_world
    with store.session(readonly=True) as s:
        ids = run_neurons(s, world.run_id).neuron_id
    stim = _arrays(len(ids))[0]
    snap = world.snapshot_ids[1]
    old = _patches(ids, stim, "old")  # one file per neuron, as before schema v5
    old[0]["file"] = "patches/shared.pack"  # a file the new rows name again is not superseded
    last = int(ids[-1])
    old[-1]["file"] = f"patches/old/n{int(ids[-2])}.webp"  # the last neuron is not restaged: a file its set
    # still names is not superseded either
    with store.session() as s:
        write_patches(s, snap, old)
    packed = [
        {**row, "file": "patches/shared.pack" if i % 2 else "patches/new.pack", "byte_offset": 100 * i, "byte_length": 90}
        for i, row in enumerate(_patches(ids, stim, "unused"))
        if row["neuron_id"] != last
    ]  # fmt: skip
    stage = writes.stage_key(8, "w")
    writes.stage_patches(store, stage, 8, snap, packed)
    with store.session() as s:
        superseded = writes.superseded_patch_files(s, stage, snap)
        writes.publish_staged_patches(s, stage, snap)
    writes.discard_stage(store, stage)
    kept = {"patches/shared.pack", f"patches/old/n{int(ids[-2])}.webp"}
    assert superseded == sorted({r["file"] for r in old} - kept) and superseded
    with store.session(readonly=True) as s:
        rows = {p.neuron_id: (p.file, p.byte_offset, p.byte_length) for p in s.scalars(select(PatchSet).filter_by(snapshot_id=snap))}  # fmt: skip
    want = {r["neuron_id"]: (r["file"], r["byte_offset"], r["byte_length"]) for r in packed}
    want.update({r["neuron_id"]: (r["file"], None, None) for r in old if r["neuron_id"] == last})
    assert rows == want
    for bad in ({"byte_offset": 0}, {"byte_length": 5}, {"byte_offset": -1, "byte_length": 5}, {"byte_offset": 0, "byte_length": 0}):  # fmt: skip
        with pytest.raises(ValueError, match="needs both byte_offset"), store.session() as s:
            write_patches(s, snap, [{**packed[0], "byte_offset": None, "byte_length": None, **bad}])


def test_publishing_a_discarded_stage_is_refused_and_stale_stages_are_removed(
    store: Store, world: World
) -> None:
    space_id = _space(store, world)
    with store.session(readonly=True) as s:
        ids = run_neurons(s, world.run_id).neuron_id
    stim, maxi, vec, xy = _arrays(len(ids))
    running, _ = job_queue.enqueue(store, "other", {"i": 1})
    dead, _ = job_queue.enqueue(store, "other", {"i": 2})
    assert job_queue.claim(store, "w") is not None
    live_stage, dead_stage = writes.stage_key(running.id, "w"), writes.stage_key(dead.id, "gone")
    staged = writes.stage_snapshot_in_space(store, dead_stage, dead.id, None, world.snapshot_ids[1], ids, stim, maxi, vec, xy)  # fmt: skip
    writes.stage_snapshot_in_space(store, live_stage, running.id, None, world.snapshot_ids[1], ids, stim, maxi, vec, xy)  # fmt: skip
    writes.stage_patches(store, dead_stage, dead.id, world.snapshot_ids[1], _patches(ids, stim, "x"))
    writes.discard_stale_stages(store)  # job `dead` is queued, not running: its stage goes
    assert _count(store, StagedNeuronState, stage=dead_stage) == _count(store, StagedPatchSet) == 0
    assert _count(store, StagedNeuronState, stage=live_stage) == len(ids)
    with pytest.raises(StoreError, match="run the job again"), store.session() as s:
        writes.publish_staged_snapshot(s, space_id, staged, None, None, None)
    assert _count(store, SpaceSnapshot, snapshot_id=world.snapshot_ids[1]) == 0  # rolled back whole


def test_a_busy_database_is_reported_as_busy_not_as_unusable(db_path: Path, monkeypatch) -> None:
    open_store(str(db_path)).dispose()
    monkeypatch.setattr(dialects, "BUSY_TIMEOUT_S", 0.3)
    holder = hold_write_lock(db_path, 3.0)
    try:
        with pytest.raises(DatabaseBusyError) as caught:
            open_store(str(db_path))
    finally:
        holder.kill()  # done with the lock: end it now (ours)
        holder.wait(timeout=30)
    message = str(caught.value)
    assert "another process is writing; retry" in message and str(db_path) in message
    assert "cannot be used" not in message and "\n" not in message


def test_the_cli_says_busy_in_one_line_with_status_2(db_path: Path, monkeypatch, capsys) -> None:
    import worker.registration  # noqa: F401  (imported before the lock is taken: slow on a loaded machine)
    from worker import cli

    store = open_store(str(db_path))
    monkeypatch.setenv("CONCEPTEVO_DB", str(db_path))
    monkeypatch.setattr(dialects, "BUSY_TIMEOUT_S", 0.3)
    folder = db_path.parent / "imgs" / "a"
    folder.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "0.png")
    holder = hold_write_lock(db_path, 8.0)
    started = time.monotonic()
    try:
        status = cli.run(["add-dataset", str(folder.parent), "--name", "imgs"])
        elapsed = time.monotonic() - started
    finally:
        holder.kill()  # done with the lock: end it now (ours)
        holder.wait(timeout=30)
        store.dispose()
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "another process is writing; retry" in err, err
    assert "cannot be used" not in err and "Traceback" not in err
    assert elapsed < 8.0, "the command must give up, not wait out the lock"
