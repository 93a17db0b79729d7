"""Schema v4 (issue 13): flags stored under the old stability rule are recomputed from the stored figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.store import open_store
from backend.store.schema import STABLE_MAX_DISPLACEMENT, _migrate_v3_to_v4
from tests.backend.store.conftest import execute_behind_the_store, read_after_opening
from worker.engine.stability import MAX_DISPLACEMENT

# (snapshot, cosine, displacement, flag as v3 stored it) → the flag v4 reads
ROWS = [
    (2, 0.41, 0.05, False, True),  # flagged only by the old cosine rule: now stable
    (3, 0.33, 0.16, False, False),  # its points jump: still unstable
    (4, 0.95, 0.10, True, True),  # exactly at the limit: stable
    (5, 0.40, None, False, False),  # no map measured: the stored flag stays
    (6, None, None, None, None),  # never measured: stays unmeasured
]


INSERT = (
    "INSERT INTO space_snapshots (space_id, snapshot_id, computed_at, coverage, n_points, points,"
    " stability_cosine, stability_displacement, stable) VALUES (1, {s}, '2026-01-01 00:00:00', 0.5, 0, {p},"
    " {c}, {d}, {f})"
)


def _as_v3(url: str) -> None:
    """A database as v3 left it: space snapshots with figures and the old rule's flags (bare rows, so without
    their foreign keys: a plain SQLite connection has them off; on PostgreSQL they are dropped)."""
    open_store(url).dispose()
    sqlite = "://" not in url
    statements = (
        []
        if sqlite
        else [
            f"ALTER TABLE space_snapshots DROP CONSTRAINT IF EXISTS space_snapshots_{key}_fkey"
            for key in ("space_id", "snapshot_id")
        ]
    )
    for snapshot, cosine, displacement, stable, _ in ROWS:
        values = {"c": cosine, "d": displacement, "f": stable}
        literal = {
            k: "NULL" if v is None else str(v).upper() if isinstance(v, bool) else repr(v)
            for k, v in values.items()
        }
        if sqlite and stable is not None:
            literal["f"] = str(int(stable))
        statements.append(INSERT.format(s=snapshot, p="x''" if sqlite else "''::bytea", **literal))
    statements.append("UPDATE schema_info SET schema_version = 3")
    execute_behind_the_store(url, statements)


def _flags(url: str) -> list[tuple]:
    rows, _ = read_after_opening(url, "SELECT snapshot_id, stable FROM space_snapshots ORDER BY snapshot_id")
    return [(r[0], None if r[1] is None else bool(r[1])) for r in rows]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_v3_flags_follow_the_map_after_migration(backend: str, tmp_path: Path, request) -> None:
    url = str(tmp_path / "v3.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    _as_v3(url)
    want = [(snapshot, flag) for snapshot, _c, _d, _old, flag in ROWS]
    assert _flags(url) == want
    assert _flags(url) == want  # opening it again changes nothing
    store = open_store(url)
    try:
        with store.engine.begin() as conn:
            _migrate_v3_to_v4(conn)  # the step itself is idempotent too
    finally:
        store.dispose()
    assert _flags(url) == want


def test_store_and_worker_share_the_flag_rule() -> None:
    assert STABLE_MAX_DISPLACEMENT == MAX_DISPLACEMENT
