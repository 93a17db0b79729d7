"""Fixtures for the store tests: a fresh SQLite file per test, and a small registered world."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.store import Store, open_store, register_dataset, register_layers, register_run, upsert_snapshot


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


@dataclass(frozen=True)
class World:
    """Ids of a small registered world: one dataset (6 images, 3 classes), one run, 2 layers, 3 epochs."""

    dataset_id: int
    run_id: int
    layer_ids: list[int]
    snapshot_ids: list[int]  # epochs 0, 1, 2


@pytest.fixture
def world(store: Store) -> World:
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
