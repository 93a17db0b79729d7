"""Store + queue + worker end to end: real SQLite files, real ``conceptevo`` processes, a real (tiny) demo world.

Every test works in its own data directory (``$CONCEPTEVO_DATA``, with ``demo`` a symlink to the session's
tiny demo world, read-only) and its own database file (``$CONCEPTEVO_DB``). The demo flow runs once per
module; the other tests start from copies of its database (right after registration, or fully drained).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from backend.store import (
    Importance,
    ImportanceScore,
    NeuronState,
    PatchSet,
    Run,
    Snapshot,
    Space,
    SpaceSnapshot,
    cancel,
    get_job,
    list_jobs,
    list_space_snapshots,
    run_neurons,
    snapshot_vectors,
    unpack_boxes,
)
from tests.datadir import DataDir, copy_database, make_data_dir, wait_exit, wait_for
from worker.registration import add_run

CLAIMED = re.compile(r"claimed job (\d+) \((\w+)\)")
RAN = re.compile(r"job (\d+) (\w+) done in")


def job_counts(store) -> Counter:
    return Counter((job.kind, job.status) for job in list_jobs(store, limit=10_000))


def first_job(store, kind: str):
    return next(job for job in list_jobs(store, limit=10_000) if job.kind == kind)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def assert_demo_world_complete(data: DataDir) -> dict[str, int]:
    """The drained demo: one space; every registered snapshot placed in it once, with all its neurons; a
    complete set of patch rows per snapshot whose sprite files exist; importance scores for every neuron.
    Returns some counts."""
    store = data.store()
    try:
        with store.session(readonly=True) as s:
            spaces = s.scalars(select(Space)).all()
            assert [space.name for space in spaces] == ["demo"]
            space = spaces[0]
            assert space.reducer and space.image_vectors
            k = int(space.params["k"])
            runs = s.scalars(select(Run)).all()
            assert sorted(run.name for run in runs) == ["healthy", "high-lr", "overfit"]
            n_snapshots = 0
            for run in runs:
                neurons = len(run_neurons(s, run.id).neuron_id)
                assert neurons > 0
                for snap in s.scalars(select(Snapshot).where(Snapshot.run_id == run.id)):
                    n_snapshots += 1
                    placed = s.scalars(
                        select(SpaceSnapshot).where(
                            SpaceSnapshot.space_id == space.id, SpaceSnapshot.snapshot_id == snap.id
                        )
                    ).all()
                    assert len(placed) == 1, f"{run.name}@{snap.epoch}: {len(placed)} space snapshots"
                    assert placed[0].n_points == neurons
                    states = s.scalar(
                        select(func.count())
                        .select_from(NeuronState)
                        .where(NeuronState.space_id == space.id, NeuronState.snapshot_id == snap.id)
                    )
                    assert states == neurons
                    patches = s.execute(
                        select(
                            PatchSet.boxes, PatchSet.file, PatchSet.byte_offset, PatchSet.byte_length
                        ).where(PatchSet.snapshot_id == snap.id)
                    ).all()
                    assert len(patches) == neurons, f"{run.name}@{snap.epoch}: {len(patches)} patch sets"
                    assert {len(unpack_boxes(p.boxes)) for p in patches} == {k}
                    sprites = {(p.file, p.byte_offset, p.byte_length) for p in patches}
                    assert len(sprites) == neurons  # one sprite (a byte range of a pack) per neuron
                    files = {p.file for p in patches}
                    assert all(f.endswith(".pack") for f in files) and len(files) < neurons
                    missing = [
                        f
                        for f in files
                        if not (data.root / f).is_file() or (data.root / f).stat().st_size == 0
                    ]
                    assert not missing, f"{len(missing)} sprite files missing, e.g. {missing[:3]}"
                    short = [
                        sprite
                        for sprite in sprites
                        if sprite[1] + sprite[2] > (data.root / sprite[0]).stat().st_size
                    ]
                    assert not short, f"{len(short)} sprites past the end of their pack, e.g. {short[:3]}"
            assert s.scalar(select(func.count()).select_from(SpaceSnapshot)) == n_snapshots
            importances = s.scalars(select(Importance)).all()
            assert importances, "no importance rows"
            keys = [(i.run_id, i.epoch_from, i.epoch_to, i.class_idx) for i in importances]
            assert len(set(keys)) == len(keys)
            for importance in importances:
                neurons = len(run_neurons(s, importance.run_id).neuron_id)
                scores = s.scalar(
                    select(func.count())
                    .select_from(ImportanceScore)
                    .where(ImportanceScore.importance_id == importance.id)
                )
                assert scores == neurons
            n_stages = len({(run, t, t2) for run, t, t2, _ in keys})
        return {"snapshots": n_snapshots, "stages": n_stages, "importances": len(importances)}
    finally:
        store.dispose()


@dataclass
class Registered:
    data: DataDir
    db_copy: Path
    first: subprocess.CompletedProcess
    counts: Counter


@dataclass
class DemoFlow:
    registered: Registered
    second: subprocess.CompletedProcess
    third: subprocess.CompletedProcess
    counts_second: Counter
    counts_drained: Counter
    drain_rc: int
    drain_log: str

    @property
    def data(self) -> DataDir:
        return self.registered.data


@pytest.fixture(scope="module")
def registered(tiny_demo_world, tmp_path_factory) -> Registered:
    """A first ``demo --no-serve``: the world registered and its jobs queued; ``db_copy`` keeps that state."""
    data = make_data_dir(tmp_path_factory.mktemp("demo_flow"), tiny_demo_world)
    first = data.cli("demo", "--no-serve", "--size", "small")
    assert first.returncode == 0, first.stderr[-3000:]
    store = data.store()
    try:
        counts = job_counts(store)
    finally:
        store.dispose()
    db_copy = data.root.parent / "registered.db"
    copy_database(data.db, db_copy)
    return Registered(data, db_copy, first, counts)


@pytest.fixture(scope="module")
def demo_flow(registered) -> DemoFlow:
    """Then ``demo`` again, one ``worker --once`` draining the queue, and ``demo`` a third time."""
    data = registered.data
    second = data.cli("demo", "--no-serve", "--size", "small")
    store = data.store()
    try:
        counts_second = job_counts(store)
        proc = data.worker("--once")
        drain_rc = wait_exit(proc, 240, data.logs[-1])
        counts_drained = job_counts(store)
    finally:
        store.dispose()
    third = data.cli("demo", "--no-serve", "--size", "small")
    return DemoFlow(
        registered, second, third, counts_second, counts_drained, drain_rc, data.logs[-1].read_text()
    )


@pytest.mark.slow
def test_demo_queues_once_and_one_worker_drains_it_into_a_full_database(demo_flow):
    flow = demo_flow
    # First demo: registers the world and queues the space (with every run to place) and the importance stages.
    assert "queued" in flow.registered.first.stdout
    assert flow.registered.counts[("build_space", "queued")] == 1
    n_importance = flow.registered.counts[("importance", "queued")]
    assert n_importance >= 1
    assert sum(flow.registered.counts.values()) == 1 + n_importance
    # Second demo: nothing new.
    assert flow.second.returncode == 0, flow.second.stderr[-3000:]
    assert "queued 0 new job(s)" in flow.second.stdout
    assert flow.counts_second == flow.registered.counts
    # Draining fills the database.
    assert flow.drain_rc == 0, flow.drain_log[-3000:]
    assert "Traceback" not in flow.drain_log
    counts = assert_demo_world_complete(flow.data)
    assert {status for _kind, status in flow.counts_drained} == {"done"}, flow.counts_drained
    assert flow.counts_drained[("build_space", "done")] == 1
    assert (
        flow.counts_drained[("add_snapshot", "done")] == counts["snapshots"] - 1
    )  # the base is placed by the build
    assert flow.counts_drained[("importance", "done")] == n_importance == counts["stages"]
    store = flow.data.store()
    try:
        assert {job.attempts for job in list_jobs(store, limit=10_000)} == {1}
    finally:
        store.dispose()
    # Third demo: everything is already computed.
    assert flow.third.returncode == 0, flow.third.stderr[-3000:]
    match = re.search(
        r"queued (\d+) new job\(s\); (\d+) already queued or running; (\d+) already computed",
        flow.third.stdout,
    )
    assert match, flow.third.stdout
    assert match.groups() == ("0", "0", str(counts["snapshots"] + counts["stages"]))


@pytest.mark.slow
def test_concurrent_workers_run_every_job_exactly_once(demo_flow, tiny_demo_world, tmp_path):
    """Copy the drained demo, forget the placements of two runs and every importance, re-queue them with
    ``demo``, and let four workers drain the queue together (the queue's claim under more contenders — 40 jobs,
    4 workers, on SQLite and PostgreSQL — is tests/backend/test_scaleout_queue.py's)."""
    n_workers = 4
    data = make_data_dir(tmp_path / "data", tiny_demo_world, demo_flow.data.db, demo_flow.data.root)
    store = data.store()
    try:
        with store.session() as s:
            forget = list(
                s.scalars(select(Snapshot.id).join(Run).where(Run.name.in_(["high-lr", "overfit"])))
            )
            s.execute(delete(NeuronState).where(NeuronState.snapshot_id.in_(forget)))
            s.execute(delete(SpaceSnapshot).where(SpaceSnapshot.snapshot_id.in_(forget)))
            s.execute(delete(PatchSet).where(PatchSet.snapshot_id.in_(forget)))
            s.execute(delete(ImportanceScore))
            s.execute(delete(Importance))
        for snapshot_id in forget:
            shutil.rmtree(data.root / "patches" / f"s{snapshot_id}")
        old_jobs = {job.id for job in list_jobs(store, limit=10_000)}
        queued = data.cli("demo", "--no-serve", "--size", "small")
        assert queued.returncode == 0, queued.stderr[-3000:]
        new_jobs = {job.id for job in list_jobs(store, limit=10_000)} - old_jobs
        assert len(new_jobs) >= 5

        workers = [data.worker("--once", "--poll", "0.2") for _ in range(n_workers)]
        for proc, log in zip(workers, data.logs, strict=True):
            assert wait_exit(proc, 300, log) == 0, log.read_text()[-3000:]

        claims: Counter = Counter()
        finishes: Counter = Counter()
        busy_workers = 0
        for log in data.logs:
            text = log.read_text()
            assert "Traceback" not in text, text[-3000:]
            mine = [int(job) for job, _kind in CLAIMED.findall(text)]
            claims.update(mine)
            finishes.update(int(job) for job, _kind in RAN.findall(text))
            busy_workers += bool(mine)
        assert set(claims) == new_jobs and set(claims.values()) == {1}, claims
        assert set(finishes) == new_jobs and set(finishes.values()) == {1}, finishes
        assert busy_workers >= 2, "only one worker got any job: the test did not exercise concurrency"
        for job_id in new_jobs:
            job = get_job(store, job_id)
            assert (job.status, job.attempts) == ("done", 1), job
        assert_movement_matches_consecutive_epochs(store)
    finally:
        store.dispose()
    assert_demo_world_complete(data)


def assert_movement_matches_consecutive_epochs(store) -> None:
    """Whatever order the workers computed the epochs in, each computed snapshot's movement is the mean
    distance of its neurons' vectors from the previous computed epoch of its run (None for the first)."""
    with store.session(readonly=True) as s:
        (space,) = s.scalars(select(Space)).all()
        by_run: dict[int, list[tuple[int, int, float | None]]] = {}
        for row, snap in list_space_snapshots(s, space.id):
            by_run.setdefault(snap.run_id, []).append((snap.epoch, snap.id, row.movement))
        for rows in by_run.values():
            rows.sort()
            assert rows[0][2] is None
            for (_, earlier, _m), (_, later, moved) in zip(rows, rows[1:], strict=False):
                ids_a, vec_a, _ = snapshot_vectors(s, space.id, earlier)
                ids_b, vec_b, _ = snapshot_vectors(s, space.id, later)
                assert list(ids_a) == list(ids_b)
                expected = float(np.linalg.norm(vec_b - vec_a, axis=1).mean())
                assert moved == pytest.approx(expected, rel=1e-5), (earlier, later)


def _start_build_and_wait_for_progress(data: DataDir):
    """Start a worker on the registered demo's queue; return it once its build_space job reports progress."""
    store = data.store()
    job_id = first_job(store, "build_space").id
    proc = data.worker("--once", "--poll", "0.2")

    def running():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{data.logs[-1].read_text()[-3000:]}")
        job = get_job(store, job_id)
        return job if job.status == "running" and job.progress > 0 else None

    job = wait_for(running, 120, "the build_space job to report progress")
    return store, proc, job


@pytest.mark.slow
def test_sigkilled_worker_job_is_completed_by_another_with_one_result_set(
    registered, tiny_demo_world, tmp_path
):
    data = make_data_dir(tmp_path / "data", tiny_demo_world, registered.db_copy)
    data.lease_s = 3.0
    store, victim, job = _start_build_and_wait_for_progress(data)
    try:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        dead = get_job(store, job.id)
        assert (dead.status, dead.worker_id, dead.attempts) == ("running", job.worker_id, 1)

        # The rescuer must find the dead worker's lease expired, or it claims a queued job instead (a worker
        # claims within a second of starting now that it imports each kind's handler when it first runs one).
        time.sleep(data.lease_s + 0.5)
        rescuer = data.worker("--max-jobs", "1", "--poll", "0.3")
        assert wait_exit(rescuer, 240, data.logs[-1]) == 0, data.logs[-1].read_text()[-3000:]
        done = get_job(store, job.id)
        assert done.status == "done", done
        assert done.attempts == 2 and done.worker_id != job.worker_id
        with store.session(readonly=True) as s:
            space = s.scalars(select(Space)).one()
            assert space.base_snapshot_id == job.params["base_snapshot_id"]
            base = space.base_snapshot_id
            neurons = len(run_neurons(s, s.get(Snapshot, base).run_id).neuron_id)
            k = int(space.params["k"])
            placed = s.scalars(select(SpaceSnapshot)).all()
            assert [(p.space_id, p.snapshot_id, p.n_points) for p in placed] == [(space.id, base, neurons)]
            assert s.scalar(select(func.count()).select_from(NeuronState)) == neurons
            patches = s.execute(select(PatchSet.snapshot_id, PatchSet.boxes, PatchSet.file)).all()
        assert len(patches) == neurons and {p[0] for p in patches} == {base}
        assert {len(unpack_boxes(p[1])) for p in patches} == {k}
        from PIL import Image

        for file in {p[2] for p in patches}:
            with Image.open(data.root / file) as sprite:
                sprite.load()  # a complete file: a truncated JPEG fails to decode
                assert sprite.size == (64 * k, 64)
    finally:
        store.dispose()


@pytest.mark.slow
def test_sigterm_releases_the_running_job_and_the_worker_exits_cleanly(registered, tiny_demo_world, tmp_path):
    data = make_data_dir(tmp_path / "data", tiny_demo_world, registered.db_copy)
    store, proc, job = _start_build_and_wait_for_progress(data)
    try:
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 120, data.logs[-1]) == 0, data.logs[-1].read_text()[-3000:]
        log = data.logs[-1].read_text()
        assert "Traceback" not in log
        assert f"job {job.id} released" in log
        assert "worker finished 0 job(s)" in log
        released = get_job(store, job.id)
        assert (released.status, released.attempts, released.worker_id) == ("queued", 0, None)
        with store.session(readonly=True) as s:
            assert s.scalar(select(func.count()).select_from(Space)) == 0
            assert s.scalar(select(func.count()).select_from(PatchSet)) == 0
    finally:
        store.dispose()


def test_corrupt_checkpoint_fails_its_job_with_the_file_named_and_the_next_job_runs(
    registered, tiny_demo_world, tmp_path
):
    data = make_data_dir(tmp_path / "data", tiny_demo_world, registered.db_copy)
    broken = tmp_path / "broken-run"
    shutil.copytree(tiny_demo_world / "runs" / "healthy", broken)
    bad_file = broken / "epoch_002.pt"
    size = bad_file.stat().st_size
    with bad_file.open("r+b") as handle:
        handle.truncate(size // 2)
    store = data.store()
    try:
        for job in list_jobs(store, limit=100):
            cancel(store, job.id)
        add_run(store, "broken", "demo-vgg", broken, "demo-train")  # finds the files; does not load them
        for run in ("broken", "healthy"):  # same kind and priority: claimed in this order
            queued = data.cli("importance", run, "--from", "1", "--to", "2", "--classes", "0,1")
            assert queued.returncode == 0, queued.stderr[-3000:]
        proc = data.worker("--once")
        # issue 12: a worker that ran a failed job exits 1 and says how many failed
        assert wait_exit(proc, 180, data.logs[-1]) == 1, data.logs[-1].read_text()[-3000:]
        assert "1 failed" in data.logs[-1].read_text()
        jobs = {job.params["run_id"]: job for job in list_jobs(store, limit=100) if job.status != "cancelled"}
        with store.session(readonly=True) as s:
            run_ids = {name: run_id for name, run_id in s.execute(select(Run.name, Run.id))}
            failed, good = jobs[run_ids["broken"]], jobs[run_ids["healthy"]]
            assert failed.status == "failed", failed
            assert failed.error and "\n" not in failed.error.strip()
            assert "epoch_002.pt" in failed.error, failed.error
            assert failed.attempts == 1  # a corrupt file is not retried
            assert good.status == "done", good
            stored = s.execute(
                select(Importance.run_id, Importance.class_idx).where(Importance.epoch_from == 1)
            ).all()
            assert sorted(stored) == [(run_ids["healthy"], 0), (run_ids["healthy"], 1)]
    finally:
        store.dispose()
    listed = data.cli("jobs", "list", "--status", "failed")
    assert listed.returncode == 0 and "epoch_002.pt" in listed.stdout


@pytest.mark.parametrize(
    "args",
    [
        [
            "add-run",
            "x",
            "--arch",
            "no-such-arch",
            "--checkpoints",
            "{world}/runs/healthy",
            "--dataset",
            "demo-train",
        ],
        [
            "add-run",
            "x",
            "--arch",
            "demo-vgg",
            "--checkpoints",
            "{world}/no-such-dir",
            "--dataset",
            "demo-train",
        ],
        ["compute", "healthy", "--space", "no-such-space"],
        ["compute", "no-such-run", "--space", "demo"],
        ["build-space", "--base", "healthy@99"],
        ["importance", "healthy", "--from", "2", "--to", "1"],
        ["jobs", "retry", "99999"],
    ],
    ids=lambda args: "-".join(a for a in args if not a.startswith("{"))[:60],
)
def test_cli_user_errors_are_one_line_with_status_2(registered, tiny_demo_world, tmp_path, args):
    data = make_data_dir(tmp_path / "data", tiny_demo_world, registered.db_copy)
    result = data.cli(*[a.format(world=tiny_demo_world) for a in args], timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
