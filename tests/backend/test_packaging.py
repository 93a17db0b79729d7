"""The shipped packages (``backend``, ``worker``) hold product code only (issue 11, item 13): the synthetic world
that tests and benchmarks build lives in ``tests/fixtures``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_synthetic_world_is_not_shipped() -> None:
    assert importlib.util.find_spec("backend.store.synthetic") is None
    assert (ROOT / "tests" / "fixtures" / "synthetic.py").is_file()
    for package in ("backend", "worker"):
        for module in (ROOT / package).rglob("*.py"):
            assert "build_synthetic_store" not in module.read_text(), module


def test_synthetic_world_still_builds(tmp_path: Path) -> None:
    from backend.store.config import open_store
    from tests.fixtures.synthetic import build_synthetic_store

    store = open_store(str(tmp_path / "db.sqlite"))
    try:
        world = build_synthetic_store(store, n_neurons=6, n_epochs=2, n_runs=1, data_dir=tmp_path / "data")
    finally:
        store.dispose()
    assert world.run_ids == [1] and world.n_patches == 6 * 2 * 3
