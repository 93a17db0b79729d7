"""Fixtures for the store tests: a fresh SQLite file per test, and a small registered world."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from backend.store import (
    SCHEMA_VERSION,
    Store,
    open_store,
    register_dataset,
    register_layers,
    register_run,
    upsert_snapshot,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a not-yet-created SQLite database file."""
    return tmp_path / "conceptevo.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """A freshly created store on a real SQLite file."""
    st = open_store(str(db_path))
    yield st
    st.dispose()


def execute_behind_the_store(url: str, statements: Iterable[str]) -> None:
    """Run raw SQL on a database as an older version left it, in one transaction: on SQLite through a plain
    connection (foreign keys off, so bare rows need no parents), on PostgreSQL through the store's engine."""
    if "://" not in url:
        con = sqlite3.connect(url)
        try:
            for statement in statements:
                con.execute(statement)
            con.commit()
        finally:
            con.close()
        return
    store = open_store(url)
    try:
        with store.engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        store.dispose()


def read_after_opening(url: str, query: str) -> tuple[list[tuple], set[str]]:
    """Open a database (migrating it), check that it is now at :data:`SCHEMA_VERSION`, and return the rows of
    ``query`` and the names of its tables."""
    store = open_store(url)
    try:
        with store.session(readonly=True) as s:
            assert s.execute(text("SELECT schema_version FROM schema_info")).scalar() == SCHEMA_VERSION
            return [tuple(r) for r in s.execute(text(query))], set(inspect(s.connection()).get_table_names())
    finally:
        store.dispose()


@dataclass(frozen=True)
class World:
    """Ids of a small registered world: one dataset (6 images, 3 classes), one run, 2 layers, 3 epochs."""

    dataset_id: int
    run_id: int
    layer_ids: list[int]
    snapshot_ids: list[int]  # epochs 0, 1, 2


@pytest.fixture
def world(store: Store) -> World:
    """The small world of :class:`World`, registered in ``store``."""
    return register_world(store)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_and_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, World]]:
    """A fresh store on SQLite, then on PostgreSQL, with the small world of :class:`World` registered."""
    url = str(tmp_path / "db.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    st = open_store(url)
    try:
        yield st, register_world(st)
    finally:
        st.dispose()


def register_world(store: Store) -> World:
    """Register the small world of :class:`World` in ``store``."""
    with store.session() as s:
        ds = register_dataset(
            s,
            "shapes",
            "/data/shapes",
            ["circle", "square", "star"],
            [(f"img{i}.png", i % 3) for i in range(6)],
        )
        run = register_run(s, "healthy", "demo_net", "/ckpt/healthy", ds.id, 3, notes="lr 0.01")
        layers = register_layers(s, run.id, [("features.0", 2), ("features.3", 3)])
        snaps = [
            upsert_snapshot(s, run.id, e, f"/ckpt/healthy/epoch{e}.pt", val_top1=0.3 + 0.1 * e)
            for e in range(3)
        ]
        return World(ds.id, run.id, [la.id for la in layers], [sn.id for sn in snaps])
