"""Fixtures of the API tests: one small synthetic world (real SQLite file, real patch files) per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store.config import Store, open_store
from tests.fixtures.synthetic import SyntheticWorld, build_synthetic_store


@dataclass
class World:
    """The session's store, its ids and where its files live."""

    store: Store
    ids: SyntheticWorld
    data_dir: Path
    db_path: Path
    outside_file: Path


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """24 neurons × 3 epochs × 2 runs in one space, plus a 100-neuron snapshot; patches on disk."""
    root = tmp_path_factory.mktemp("api-world")
    data_dir = root / "data"
    data_dir.mkdir()
    outside = root / "secret.png"
    outside.write_bytes(b"\x89PNG not for clients")
    db_path = root / "conceptevo.db"
    store = open_store(str(db_path))
    ids = build_synthetic_store(
        store, n_neurons=24, n_epochs=3, n_runs=2, extra_big_snapshot=100, seed=0, data_dir=data_dir
    )
    yield World(store, ids, data_dir, db_path, outside)
    store.dispose()


@pytest.fixture(scope="session")
def app(world: World) -> FastAPI:
    """The application on the session world, default settings (no token, 1 MiB body limit)."""
    return create_app(
        world.store, Settings(data_dir=world.data_dir, frontend_dist=world.data_dir / "no-dist")
    )


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient that turns unhandled server exceptions into failures."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_client(world: World) -> Iterator[Callable[..., TestClient]]:
    """Build a client on the session world with other settings (token, limits, ...)."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        values: dict[str, object] = {"data_dir": world.data_dir, "frontend_dist": world.data_dir / "no-dist"}
        values.update(overrides)
        c = TestClient(create_app(world.store, Settings(**values)), raise_server_exceptions=False)  # type: ignore[arg-type]
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
