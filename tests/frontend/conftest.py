"""Fixtures of the browser tests: a demo world computed by the real CLI and worker (one epoch left out, for
the page to ask for), ``conceptevo serve`` over it, over a per-test copy of it and over an empty database, and
one Chromium per session with a fresh page per test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.store import (
    find_run,
    list_jobs,
    list_runs,
    list_snapshots,
    list_space_snapshots,
    list_spaces,
)
from tests.datadir import DataDir, free_port, make_data_dir, stop, wait_exit, wait_for
from tests.frontend.browser import CHROMIUM_ARGS, SIZES, Ui, browser_unavailable, chromium_path

#: The run whose last epoch is left uncomputed, for the page to ask the worker for it.
UNCOMPUTED_RUN = "overfit"


@dataclass
class World:
    """The computed demo world the page shows."""

    data: DataDir
    space_id: int
    #: Run name → run id.
    runs: dict[str, int]
    #: Run name → its epochs placed in the space when the tests start.
    computed: dict[str, list[int]]
    #: The run with an epoch left out (:data:`UNCOMPUTED_RUN`), that epoch and its snapshot id.
    uncomputed_run: str
    uncomputed_epoch: int
    uncomputed_snapshot: int


def _cancel_when_queued(data: DataDir, snapshot_id: int) -> None:
    """Run the queue one job at a time until an ``add_snapshot`` job for ``snapshot_id`` is queued (the space
    build queues them), and cancel it with ``conceptevo jobs cancel``."""
    store = data.store()
    try:
        for _ in range(100):
            active = [job for job in list_jobs(store, limit=10_000) if job.status in ("queued", "running")]
            target = [
                job
                for job in active
                if job.kind == "add_snapshot" and int(job.params["snapshot_id"]) == snapshot_id
            ]
            if target:
                cancelled = data.cli("jobs", "cancel", str(target[0].id))
                assert cancelled.returncode == 0, cancelled.stderr[-3000:]
                return
            assert active, f"the queue ran dry without an add_snapshot job for snapshot {snapshot_id}"
            one = data.worker("--once", "--max-jobs", "1", "--poll", "0.2")
            assert wait_exit(one, 900, data.logs[-1]) == 0, data.logs[-1].read_text()[-3000:]
        raise AssertionError("100 jobs run without an add_snapshot job for the left-out epoch")
    finally:
        store.dispose()


@pytest.fixture(scope="session")
def demo_world(tiny_demo_world, tmp_path_factory) -> World:
    """``conceptevo demo --no-serve``, then ``conceptevo worker`` until the space is built, the cancelling of
    the add_snapshot job of the last epoch of :data:`UNCOMPUTED_RUN`, and ``worker --once`` for the rest."""
    data = make_data_dir(tmp_path_factory.mktemp("frontend") / "data", tiny_demo_world)
    queued = data.cli("demo", "--no-serve", "--size", "small", timeout=600)
    assert queued.returncode == 0, queued.stdout[-3000:] + queued.stderr[-3000:]
    store = data.store()
    try:
        with store.session(readonly=True) as s:
            left_out = max(list_snapshots(s, find_run(s, UNCOMPUTED_RUN).id), key=lambda snap: snap.epoch)
    finally:
        store.dispose()
    _cancel_when_queued(data, left_out.id)
    drain = data.worker("--once", "--poll", "0.2")
    assert wait_exit(drain, 900, data.logs[-1]) == 0, data.logs[-1].read_text()[-3000:]

    store = data.store()
    try:
        jobs = list_jobs(store, limit=10_000)
        unfinished = [
            (job.id, job.kind, job.status) for job in jobs if job.status not in ("done", "cancelled")
        ]
        assert not unfinished, unfinished
        with store.session(readonly=True) as s:
            (space,) = list_spaces(s)
            placed = list_space_snapshots(s, space.id)
            runs = {run.name: run.id for run in list_runs(s)}
            names = {run_id: name for name, run_id in runs.items()}
            computed: dict[str, list[int]] = {}
            for _row, snap in placed:
                computed.setdefault(names[snap.run_id], []).append(snap.epoch)
            space_id = space.id
    finally:
        store.dispose()
    assert left_out.epoch not in computed[UNCOMPUTED_RUN]
    assert len(computed[UNCOMPUTED_RUN]) >= 2, computed
    return World(
        data=data,
        space_id=space_id,
        runs=runs,
        computed={name: sorted(epochs) for name, epochs in computed.items()},
        uncomputed_run=UNCOMPUTED_RUN,
        uncomputed_epoch=left_out.epoch,
        uncomputed_snapshot=left_out.id,
    )


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path

    def get(self, path: str):
        response = httpx.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.json()


def _serve(data: DataDir) -> Iterator[Server]:
    """``conceptevo serve`` on a free loopback port, once it answers ``/api/health``; stopped afterwards."""
    for _attempt in range(3):
        port = free_port()
        proc = data.serve(port)
        log = data.logs[-1]
        url = f"http://127.0.0.1:{port}"

        def healthy(proc=proc, url=url) -> bool:
            if proc.poll() is not None:
                return True  # exited: told apart below
            try:
                return httpx.get(url + "/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 90, f"conceptevo serve on port {port} to answer /api/health", poll=0.3)
        if proc.poll() is None:
            break
        if "address already in use" not in log.read_text():  # another process took the port first: retry
            raise AssertionError(
                f"conceptevo serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
    else:
        raise AssertionError("conceptevo serve found no free port in 3 tries")
    try:
        yield Server(url, proc, log)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def server(demo_world) -> Iterator[Server]:
    """The page and the API over the demo world."""
    yield from _serve(demo_world.data)


@pytest.fixture
def world_copy(demo_world, tiny_demo_world, tmp_path) -> DataDir:
    """A data dir over a copy of the demo world's database and patches, for a test that queues, cancels or
    computes things without changing the world the other tests share."""
    return make_data_dir(
        tmp_path / "data", tiny_demo_world, db_from=demo_world.data.db, patches_from=demo_world.data.root
    )


@pytest.fixture
def copy_server(world_copy) -> Iterator[Server]:
    """The page and the API over :func:`world_copy`."""
    yield from _serve(world_copy)


@pytest.fixture(scope="session")
def empty_server(tmp_path_factory) -> Iterator[Server]:
    """The page and the API over a database with nothing in it."""
    root = tmp_path_factory.mktemp("frontend-empty")
    yield from _serve(DataDir(root))


@pytest.fixture(scope="session")
def browser():
    reason = browser_unavailable()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_ui(browser) -> Iterator[Callable[[Server], Ui]]:
    """``open_ui(server)``: a fresh browser context and page on a server, at the first of :data:`SIZES`.

    Whatever went wrong in the pages is printed at teardown, so that a test failing before its final
    ``assert_no_problems`` still shows it."""
    opened: list[tuple[object, Ui]] = []

    def open_(server: Server) -> Ui:
        width, height = SIZES[0]
        context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
        context.set_default_timeout(30_000)
        ui = Ui(context.new_page(), server.url)
        opened.append((context, ui))
        return ui

    yield open_
    for context, ui in opened:
        for problem in ui.problems:
            print(f"page problem: {problem}")
        context.close()


@pytest.fixture
def ui(open_ui, server) -> Ui:
    """A fresh page on the demo world's server (not navigated yet)."""
    return open_ui(server)
