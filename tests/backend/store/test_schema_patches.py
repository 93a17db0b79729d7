"""Patch tables across schema versions (issue 12).

v5: a patch row may name a byte range of a pack file; rows written before keep NULL there and still mean the
whole file. v6: the k rows of a neuron at a snapshot become one ``patch_sets`` row (its boxes in rank order,
its sprite's file and range once); the old tables are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.store import (
    open_store,
    register_dataset,
    register_layers,
    register_run,
    run_neurons,
    upsert_snapshot,
)
from backend.store.schema import _migrate_v4_to_v5, _migrate_v5_to_v6
from tests.backend.store.conftest import execute_behind_the_store, read_after_opening

_RANGE = ", byte_offset BIGINT, byte_length BIGINT"
_BOX = "rank INTEGER NOT NULL, image_idx INTEGER, y0 INTEGER, x0 INTEGER, y1 INTEGER, x1 INTEGER, file TEXT"


def _as_old(url: str, version: int, rows: list[tuple]) -> None:
    """A database as schema ``version`` (4 or 5) left it: one row per patch in ``patches``, ``staged_patches``
    beside it, no ``patch_sets``; ``rows`` are
    ``(snapshot_id, neuron_id, rank, image_idx, y0, x0, y1, x1, file[, byte_offset, byte_length])`` naming
    snapshots 1–2 and neurons 1–8, which exist (the migrated rows' foreign keys hold)."""
    store = open_store(url)
    try:
        with store.session() as s:
            dataset = register_dataset(s, "d", "/data/d", ["a", "b"], [("x.png", 0), ("y.png", 1)])
            run = register_run(s, "r", "demo_net", "/ckpt/r", dataset.id, 2)
            register_layers(s, run.id, [("features.0", 8)])
            assert [upsert_snapshot(s, run.id, e, f"/ckpt/r/{e}.pt").id for e in (1, 2)] == [1, 2]
            assert run_neurons(s, run.id).neuron_id.tolist() == list(range(1, 9))
    finally:
        store.dispose()
    columns = _RANGE if version >= 5 else ""
    statements = [
        "DROP TABLE patch_sets",
        "DROP TABLE staged_patch_sets",
        f"CREATE TABLE patches (snapshot_id INTEGER NOT NULL, neuron_id INTEGER NOT NULL, {_BOX}{columns}, "
        "PRIMARY KEY (snapshot_id, neuron_id, rank))",
        f"CREATE TABLE staged_patches (stage VARCHAR(250) NOT NULL, neuron_id INTEGER NOT NULL, "
        f"job_id INTEGER, snapshot_id INTEGER, {_BOX}{columns}, PRIMARY KEY (stage, neuron_id, rank))",
        f"UPDATE schema_info SET schema_version = {version}",
    ]
    for row in rows:
        values = ", ".join("NULL" if v is None else repr(v) for v in row)
        names = "snapshot_id, neuron_id, rank, image_idx, y0, x0, y1, x1, file" + (
            ", byte_offset, byte_length" if len(row) > 9 else ""
        )
        statements.append(f"INSERT INTO patches ({names}) VALUES ({values})")
    execute_behind_the_store(url, statements)


def _patch_sets(url: str) -> list[tuple]:
    """Open (so migrate) the database; its patch sets as ``(snapshot, neuron, boxes, file, offset, length)``."""
    rows, tables = read_after_opening(
        url,
        "SELECT snapshot_id, neuron_id, boxes, file, byte_offset, byte_length FROM patch_sets "
        "ORDER BY snapshot_id, neuron_id",
    )
    assert {"patch_sets", "staged_patch_sets"} <= tables and not {"patches", "staged_patches"} & tables
    return [
        (snap, neuron, np.frombuffer(bytes(boxes), "<i4").reshape(-1, 5).tolist(), file, offset, length)
        for snap, neuron, boxes, file, offset, length in rows
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_v4_patches_become_sets_that_keep_meaning_their_whole_files(
    backend: str, tmp_path: Path, request
) -> None:
    url = str(tmp_path / "v4.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    _as_old(url, 4, [(1, 2, 0, 3, 0, 0, 4, 4, "patches/s1/n2.jpg")])
    want = [(1, 2, [[3, 0, 0, 4, 4]], "patches/s1/n2.jpg", None, None)]
    assert _patch_sets(url) == want
    assert _patch_sets(url) == want  # opening it again changes nothing
    store = open_store(url)
    try:
        with store.engine.begin() as conn:  # each step is idempotent too
            _migrate_v4_to_v5(conn)
            _migrate_v5_to_v6(conn)
    finally:
        store.dispose()
    assert _patch_sets(url) == want


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_v5_rows_of_a_neuron_become_one_set_in_rank_order(backend: str, tmp_path: Path, request) -> None:
    url = str(tmp_path / "v5.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    pack = "patches/s1/ab-0.pack"
    rows = [  # ranks out of order; two neurons of one snapshot in one pack, one of another as a whole file
        (1, 7, 1, 11, 1, 2, 3, 4, pack, 900, 800),
        (1, 7, 0, 10, 0, 1, 2, 3, pack, 900, 800),
        (1, 5, 0, 12, 5, 6, 7, 8, pack, 0, 900),
        (1, 5, 1, 13, 9, 9, 9, 9, pack, 0, 900),
        (2, 5, 0, 14, 0, 0, 8, 8, "patches/2/5.webp", None, None),
    ]
    _as_old(url, 5, rows)
    assert _patch_sets(url) == [
        (1, 5, [[12, 5, 6, 7, 8], [13, 9, 9, 9, 9]], pack, 0, 900),
        (1, 7, [[10, 0, 1, 2, 3], [11, 1, 2, 3, 4]], pack, 900, 800),
        (2, 5, [[14, 0, 0, 8, 8]], "patches/2/5.webp", None, None),
    ]
