"""Schema v3 (issue 13): a v2 database gains the stability and tie columns of ``space_snapshots``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import inspect, text

from backend.store import SCHEMA_VERSION, open_store
from backend.store.schema import _migrate_v2_to_v3

V3_COLUMNS = ("stability_cosine", "stability_displacement", "stable", "tied_neurons", "tied_per_layer")


def _make_v2(path: Path) -> None:
    """A database as schema v2 left it: no v3 columns, one space snapshot row already computed."""
    open_store(str(path)).dispose()
    con = sqlite3.connect(path)  # foreign keys off in a plain connection: a bare row is enough here
    for column in V3_COLUMNS:
        con.execute(f"ALTER TABLE space_snapshots DROP COLUMN {column}")
    con.execute(
        "INSERT INTO space_snapshots (space_id, snapshot_id, computed_at, coverage, n_points, points) "
        "VALUES (1, 2, '2026-01-01 00:00:00', 0.5, 0, x'')"
    )
    con.execute("UPDATE schema_info SET schema_version = 2")
    con.commit()
    con.close()


def test_v2_database_migrates_to_v3_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    _make_v2(path)
    st = open_store(str(path))
    try:
        with st.session(readonly=True) as s:
            assert s.execute(text("SELECT schema_version FROM schema_info")).scalar() == SCHEMA_VERSION
            row = s.execute(
                text(
                    "SELECT coverage, stability_cosine, stability_displacement, stable, tied_neurons, "
                    "tied_per_layer FROM space_snapshots WHERE snapshot_id = 2"
                )
            ).one()
        assert tuple(row) == (0.5, None, None, None, None, None)  # not measured, not invented
    finally:
        st.dispose()
    open_store(str(path)).dispose()  # opening the migrated database again changes nothing


def test_v2_to_v3_step_is_idempotent(tmp_path: Path) -> None:
    st = open_store(str(tmp_path / "fresh.db"))
    try:
        with st.engine.begin() as conn:
            _migrate_v2_to_v3(conn)  # every column already there: nothing to add, no error
            names = {c["name"] for c in inspect(conn).get_columns("space_snapshots")}
        assert set(V3_COLUMNS) <= names
    finally:
        st.dispose()
