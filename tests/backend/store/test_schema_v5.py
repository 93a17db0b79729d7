"""Schema v5 (issue 12): patch rows may name a byte range of a pack file; rows written before keep NULL there
and still mean the whole file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from backend.store import SCHEMA_VERSION, open_store
from backend.store.schema import _migrate_v4_to_v5
from tests.backend.store.conftest import execute_behind_the_store

ROW = (
    "INSERT INTO patches (snapshot_id, neuron_id, rank, image_idx, y0, x0, y1, x1, file)"
    " VALUES (1, 2, 0, 3, 0, 0, 4, 4, 'patches/s1/n2.jpg')"
)


def _as_v4(url: str) -> None:
    """A database as v4 left it: the patch tables without the byte-range columns, one patch row (bare, so
    without its foreign keys: a plain SQLite connection has them off; on PostgreSQL they are dropped)."""
    open_store(url).dispose()
    sqlite = "://" not in url
    statements = [
        f"ALTER TABLE {table} DROP COLUMN {column}"
        for table in ("patches", "staged_patches")
        for column in ("byte_offset", "byte_length")
    ]
    if not sqlite:
        statements += [
            f"ALTER TABLE patches DROP CONSTRAINT IF EXISTS patches_{key}_fkey"
            for key in ("snapshot_id", "neuron_id")
        ]
    statements += [ROW, "UPDATE schema_info SET schema_version = 4"]
    execute_behind_the_store(url, statements)


def _patches(url: str) -> list[tuple]:
    store = open_store(url)
    try:
        with store.session(readonly=True) as s:
            assert s.execute(text("SELECT schema_version FROM schema_info")).scalar() == SCHEMA_VERSION
            for table in ("patches", "staged_patches"):
                columns = {c["name"] for c in inspect(s.connection()).get_columns(table)}
                assert {"byte_offset", "byte_length"} <= columns, table
            return [
                tuple(r)
                for r in s.execute(text("SELECT neuron_id, file, byte_offset, byte_length FROM patches"))
            ]
    finally:
        store.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_v4_patches_gain_byte_ranges_and_keep_meaning_their_files(
    backend: str, tmp_path: Path, request
) -> None:
    url = str(tmp_path / "v4.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    _as_v4(url)
    want = [(2, "patches/s1/n2.jpg", None, None)]
    assert _patches(url) == want
    assert _patches(url) == want  # opening it again changes nothing
    store = open_store(url)
    try:
        with store.engine.begin() as conn:
            _migrate_v4_to_v5(conn)  # the step itself is idempotent too
    finally:
        store.dispose()
    assert _patches(url) == want
