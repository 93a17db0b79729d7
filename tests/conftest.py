"""Session-wide fixtures: the small demo data set and a tiny trained demo world, each built once per test
session and shared by every test that asks for it."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

# Tests never touch the network and run on the CPU; keep torch from oversubscribing 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Passive OpenMP threads: busy-waiting threads make small convolutions far slower when cores are shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def small_demo_dataset(tmp_path_factory):
    """The demo ImageFolder at ``size="small"`` (a few hundred 64×64 images), generated once."""
    from worker.demo.generate import generate_demo_data

    root = tmp_path_factory.mktemp("demo") / "dataset"
    generate_demo_data(root, size="small", seed=0)
    return root


#: Epochs per demo run in the tiny world: enough for a space, several snapshots per run and one
#: importance stage, cheap enough to train in seconds on 2 loaded cores.
TINY_EPOCHS = {"healthy": 3, "high-lr": 2, "overfit": 2}
#: Other changes for the tiny world: healthy's batch of 256 slows the default world's first epochs (issue 14), but
#: on the 288 small images it would leave 2 steps an epoch; at 64 the tiny healthy run still learns in 3 epochs.
TINY_CHANGES: dict[str, dict] = {"healthy": {"batch_size": 64}}


@pytest.fixture(scope="session")
def tiny_demo_world(tmp_path_factory) -> Path:
    """A demo world (``dataset/`` + ``runs/<name>``) that :func:`worker.demo.plan.demo_world_ready`
    accepts: the small demo data and the three demo runs cut to :data:`TINY_EPOCHS` epochs (and
    :data:`TINY_CHANGES`).

    Read-only for tests: point ``$CONCEPTEVO_DATA/demo`` at it with a symlink instead of writing into it.
    """
    from worker.demo.generate import generate_demo_data
    from worker.demo.plan import demo_world_ready
    from worker.demo.runs import DEMO_RUNS
    from worker.training import train

    root = tmp_path_factory.mktemp("tiny_demo_world")
    generate_demo_data(root / "dataset", size="small", seed=0, progress=False)
    for name, epochs in TINY_EPOCHS.items():
        config = replace(DEMO_RUNS[name], epochs=epochs, **TINY_CHANGES.get(name, {}))
        train(config, root / "dataset", root / "runs" / name, progress=False, name=name)
    assert demo_world_ready(root)
    return root


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server on loopback for the session (:mod:`tests.pg`); skips, naming the reason,
    only where PostgreSQL or psycopg cannot be installed."""
    from tests.pg import Unavailable, start_server

    try:
        server = start_server()
    except Unavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """URL of a new, empty database on the session's PostgreSQL server."""
    return pg_server.new_database()
