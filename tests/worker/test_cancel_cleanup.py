"""A cancelled or killed job leaves no patch files behind (issue 11.8).

The real ``add_snapshot`` handler runs in-process on a tiny world (``tests/fixtures/tiny_space.py``: a 2-conv
net, six 16×16 images, a space whose map is a stand-in reducer), and is cancelled after its sprites are written
but before its results commit. Its files must not stay behind without rows; scratch folders of dead jobs are
removed when a worker starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.store import PatchSet, SpaceSnapshot, get_job
from backend.store import queue as job_queue
from tests.fixtures.tiny_space import build_tiny_space
from worker import runner
from worker.jobs import space as space_jobs


def _files(data: Path) -> list[Path]:
    """Sprite files: packs, or a file per neuron as written before schema v5."""
    return sorted(p for p in data.rglob("*") if p.is_file() and p.suffix in (".pack", ".jpg"))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("CONCEPTEVO_DB", raising=False)
    (tmp_path / "data").mkdir()
    store, space_id, snaps = build_tiny_space(tmp_path)
    yield store, space_id, snaps, tmp_path / "data"
    store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """:func:`world` on SQLite, then on PostgreSQL (where workers span machines): the staged writes' final copy
    and its row counts go through each dialect."""
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("CONCEPTEVO_DB", raising=False)
    (tmp_path / "data").mkdir()
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    store, space_id, snaps = build_tiny_space(tmp_path, url=url)
    yield store, space_id, snaps, tmp_path / "data"
    store.dispose()


def test_add_snapshot_writes_its_sprites_and_leaves_no_scratch(any_world) -> None:
    store, space_id, snaps, data = any_world
    job, _ = job_queue.enqueue(store, "add_snapshot", {"space_id": space_id, "snapshot_id": snaps[1]})
    handlers = {"add_snapshot": space_jobs.handle_add_snapshot}
    assert runner.run_worker(store, once=True, poll=0.01, handlers=handlers, install_signals=False) == 1
    assert get_job(store, job.id).status == "done"
    with store.session(readonly=True) as s:
        rows = s.scalars(select(PatchSet).where(PatchSet.snapshot_id == snaps[1])).all()
    files = {row.file for row in rows}
    assert len(files) == 1 and files.pop().endswith(".pack")  # the 10 neurons' sprites (4 + 6) in one pack
    sprites = {(row.neuron_id, row.byte_offset, row.byte_length) for row in rows}
    assert len(sprites) == len(rows) == 10  # one patch set and byte range per neuron
    assert {str(p.relative_to(data)) for p in _files(data)} == {row.file for row in rows}
    assert not (data / "tmp").exists() or not any((data / "tmp").iterdir())


def test_recomputing_a_snapshot_replaces_its_packs_and_removes_the_old(any_world) -> None:
    """A recompute writes new packs beside the old ones (so readers keep valid rows until its commit), then
    removes the packs its rows no longer name, and the files of neurons stored one file each before v5."""
    store, space_id, snaps, data = any_world
    handlers = {"add_snapshot": space_jobs.handle_add_snapshot}
    job_queue.enqueue(store, "add_snapshot", {"space_id": space_id, "snapshot_id": snaps[1]})
    assert runner.run_worker(store, once=True, poll=0.01, handlers=handlers, install_signals=False) == 1
    first = _files(data)
    legacy = (
        data / "patches" / f"s{snaps[1]}" / "n1.jpg"
    )  # as if one neuron's rows still named a file of its own
    legacy.write_bytes(b"\xff\xd8")
    with store.engine.begin() as conn:
        neuron = conn.scalar(select(func.min(PatchSet.neuron_id)).where(PatchSet.snapshot_id == snaps[1]))
        changed = conn.execute(
            PatchSet.__table__.update()
            .where(PatchSet.snapshot_id == snaps[1], PatchSet.neuron_id == neuron)
            .values(file=str(legacy.relative_to(data)), byte_offset=None, byte_length=None)
        )
        assert changed.rowcount == 1
    job, _ = job_queue.enqueue(
        store, "add_snapshot", {"space_id": space_id, "snapshot_id": snaps[1], "force": True}
    )
    assert runner.run_worker(store, once=True, poll=0.01, handlers=handlers, install_signals=False) == 1
    assert get_job(store, job.id).status == "done"
    with store.session(readonly=True) as s:
        named = set(s.scalars(select(PatchSet.file).where(PatchSet.snapshot_id == snaps[1])))
    now = _files(data)
    assert {str(p.relative_to(data)) for p in now} == named and len(now) == len(first)
    assert not set(first) & set(now), "the new packs have names of their own"
    assert not legacy.exists()


def test_a_job_cancelled_before_its_results_commit_leaves_no_files(any_world, monkeypatch) -> None:
    store, space_id, snaps, data = any_world
    job, _ = job_queue.enqueue(store, "add_snapshot", {"space_id": space_id, "snapshot_id": snaps[1]})
    real = space_jobs.write_patch_files

    def write_then_cancel(*args, **kwargs):
        rows = real(*args, **kwargs)  # every sprite written …
        job_queue.cancel(store, job.id)  # … then the user cancels, before the results commit
        return rows

    monkeypatch.setattr(space_jobs, "write_patch_files", write_then_cancel)
    handlers = {"add_snapshot": space_jobs.handle_add_snapshot}
    assert runner.run_worker(store, once=True, poll=0.01, handlers=handlers, install_signals=False) == 0
    assert get_job(store, job.id).status == "cancelled"
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(PatchSet)) == 0
        assert (
            s.scalar(
                select(func.count()).select_from(SpaceSnapshot).where(SpaceSnapshot.snapshot_id == snaps[1])
            )
            == 0
        )
    assert _files(data) == [], "sprite files without rows were left behind"


def test_a_failing_job_leaves_no_files(world, monkeypatch) -> None:
    store, space_id, snaps, data = world
    job, _ = job_queue.enqueue(
        store, "add_snapshot", {"space_id": space_id, "snapshot_id": snaps[1]}, max_attempts=1
    )

    def broken_movement(*args, **kwargs):
        raise RuntimeError("disk trouble while writing results")

    monkeypatch.setattr(space_jobs, "publish_staged_snapshot", broken_movement)
    handlers = {"add_snapshot": space_jobs.handle_add_snapshot}
    runner.run_worker(store, once=True, poll=0.01, handlers=handlers, install_signals=False)
    assert get_job(store, job.id).status == "failed"
    assert _files(data) == []


def test_worker_start_removes_scratch_folders_of_dead_jobs(world) -> None:
    store, _space_id, _snaps, data = world
    dead, _ = job_queue.enqueue(store, "other", {"i": 1})
    alive, _ = job_queue.enqueue(store, "other", {"i": 2})
    assert job_queue.claim(store, "dead-worker") is not None  # job `dead`: running, its worker gone …
    assert job_queue.claim(store, "live-worker") is not None  # job `alive`: running elsewhere, still busy
    job_queue.cancel(store, dead.id)  # … and then cancelled
    stale = runner.scratch_dir(dead.id, "dead-worker")
    kept = runner.scratch_dir(alive.id, "live-worker")
    orphan = runner.scratch_dir(12345, "long-gone")
    for folder in (stale, kept, orphan):
        (folder / "patches" / "s1").mkdir(parents=True)
        (folder / "patches" / "s1" / "n1.jpg").write_bytes(b"\xff\xd8")
    assert stale.is_relative_to(data)
    runner.run_worker(store, once=True, poll=0.01, handlers={}, install_signals=False, kinds=["none"])
    assert not stale.exists() and not orphan.exists()
    assert kept.exists(), "the scratch folder of a job another worker is running must stay"
