"""Schema versioning: create on an empty database, migrate an older one, refuse a newer or foreign one.

The version lives in the single row of ``schema_info`` (``app = "conceptevo"``). ``MIGRATIONS[v]`` upgrades a
database from version ``v`` to ``v + 1`` inside the opening transaction; :func:`ensure_schema` applies them in
order, so a database several versions old is brought up to date step by step, or left untouched on error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    Float,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from backend.store import dialects
from backend.store.blobs import pack_boxes
from backend.store.errors import StoreError
from backend.store.models import Base, PatchSet, SchemaInfo

log = logging.getLogger(__name__)

APP_NAME = "conceptevo"
SCHEMA_VERSION = 6
"""The schema version this code reads and writes."""

Migration = Callable[[Connection], None]


def _migrate_v0_to_v1(conn: Connection) -> None:
    """v0 (pre-release) → v1: the job queue gains ``active_key`` with a UNIQUE index (race-safe dedupe).

    Back-fills ``active_key = dedupe_key`` for queued/running jobs; if a v0 database holds two identical
    active jobs, the younger ones are cancelled first so that the unique index can be built.
    """
    conn.execute(text("ALTER TABLE jobs ADD COLUMN active_key VARCHAR(64)"))
    rows = conn.execute(
        text("SELECT id, dedupe_key FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, id")
    ).all()
    seen: set[str] = set()
    for job_id, key in rows:
        if key in seen:
            conn.execute(
                text("UPDATE jobs SET status = 'cancelled', error = :e WHERE id = :id"),
                {"id": job_id, "e": "cancelled by schema migration v0→v1: duplicate of an active job"},
            )
        else:
            seen.add(key)
            conn.execute(text("UPDATE jobs SET active_key = :k WHERE id = :id"), {"k": key, "id": job_id})
    conn.execute(text("CREATE UNIQUE INDEX ux_jobs_active_key ON jobs (active_key)"))


def _migrate_v1_to_v2(conn: Connection) -> None:
    """v1 → v2: deferred jobs wait — ``jobs.not_before`` (claimed only once due) and ``jobs.deferrals``
    (how often deferred). Columns already present are left alone."""
    have = {c["name"] for c in inspect(conn).get_columns("jobs")}
    if "not_before" not in have:
        timestamp = DateTime().compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE jobs ADD COLUMN not_before {timestamp}"))
    if "deferrals" not in have:
        conn.execute(text("ALTER TABLE jobs ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0"))


def _add_missing_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    """``ALTER TABLE table ADD COLUMN name type`` for each of ``columns`` not there yet (idempotent)."""
    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


def _migrate_v2_to_v3(conn: Connection) -> None:
    """v2 → v3 (issue 13): ``space_snapshots`` gains the split-half stability of a snapshot's placement
    (``stability_cosine``, ``stability_displacement``, ``stable``) and its tied neurons (``tied_neurons``,
    ``tied_per_layer``), all NULL for snapshots computed before (not measured). Additive and idempotent:
    columns already present are left alone. Others may append their own v3 columns below."""
    real = Float().compile(dialect=conn.dialect)
    flag = Boolean().compile(dialect=conn.dialect)
    json = JSON().compile(dialect=conn.dialect)
    _add_missing_columns(
        conn,
        "space_snapshots",
        {
            "stability_cosine": real,
            "stability_displacement": real,
            "stable": flag,
            "tied_neurons": json,
            "tied_per_layer": json,
        },
    )


STABLE_MAX_DISPLACEMENT = 0.1
"""The flag rule of ``worker.engine.stability`` (its ``MAX_DISPLACEMENT``; a test keeps the two equal), applied
here to flags stored before v4 — the store does not import the worker."""


def _migrate_v3_to_v4(conn: Connection) -> None:
    """v3 → v4 (issue 13): the ``stable`` flag now follows the map — a snapshot is unstable when its two half
    placements land more than a tenth of the map apart — instead of also requiring a split-half cosine of 0.9,
    which flagged every snapshot. Flags stored under the old rule are recomputed from the stored figures; rows
    without a measured displacement keep theirs. Idempotent."""
    conn.execute(
        text(
            "UPDATE space_snapshots SET stable = (stability_displacement <= :limit) "
            "WHERE stability_displacement IS NOT NULL"
        ),
        {"limit": STABLE_MAX_DISPLACEMENT},
    )


def _migrate_v4_to_v5(conn: Connection) -> None:
    """v4 → v5 (issue 12): a patch row may name a byte range of its file (``byte_offset``, ``byte_length``), so
    that one *pack* file holds the sprites of many neurons instead of one file each. Rows written before keep
    NULL there and still mean the whole file. Additive and idempotent."""
    big = BigInteger().compile(dialect=conn.dialect)
    present = set(inspect(conn).get_table_names())
    for table in ("patches", "staged_patches"):
        if table in present:  # a table not there yet is created whole once the migrations ran
            _add_missing_columns(conn, table, {"byte_offset": big, "byte_length": big})


def _migrate_v5_to_v6(conn: Connection) -> None:
    """v5 → v6 (issue 12): one ``patch_sets`` row per (snapshot, neuron) — its k boxes packed in one blob, its
    sprite's file and byte range once — replaces the k ``patches`` rows that repeated them (ResNet18: 48,000 rows
    per epoch, whose staging, copying and clean-up were most of a snapshot's write stage). Each neuron's rows
    become one set in rank order, taking rank 0's file and byte range (the worker has always written one sprite
    per neuron, which all of its ranks name), one snapshot at a time (so memory holds one snapshot's rows);
    ``staged_patches`` only held scratch and is dropped. Idempotent: a database without ``patches`` is left
    alone."""
    present = set(inspect(conn).get_table_names())
    PatchSet.__table__.create(conn, checkfirst=True)
    if "patches" in present:
        snapshots = conn.execute(
            text("SELECT DISTINCT snapshot_id FROM patches ORDER BY snapshot_id")
        ).scalars()
        n_rows = n_sets = 0
        for snapshot_id in snapshots.all():
            rows = conn.execute(
                text(
                    "SELECT neuron_id, image_idx, y0, x0, y1, x1, file, byte_offset, byte_length FROM patches "
                    "WHERE snapshot_id = :s ORDER BY neuron_id, rank"
                ),
                {"s": snapshot_id},
            ).all()
            sets: dict[int, dict[str, object]] = {}
            boxes: dict[int, list[tuple[int, int, int, int, int]]] = {}
            for neuron_id, image_idx, y0, x0, y1, x1, file, offset, length in rows:
                if neuron_id not in sets:
                    sets[neuron_id] = {"snapshot_id": snapshot_id, "neuron_id": neuron_id, "file": file}
                    sets[neuron_id].update(byte_offset=offset, byte_length=length)
                    boxes[neuron_id] = []
                boxes[neuron_id].append((image_idx, y0, x0, y1, x1))
            conn.execute(
                insert(PatchSet.__table__),
                [{**row, "boxes": pack_boxes(boxes[neuron])} for neuron, row in sets.items()],
            )
            n_rows, n_sets = n_rows + len(rows), n_sets + len(sets)
        log.warning("schema v6: %d patch rows became %d patch sets", n_rows, n_sets)
        conn.execute(text("DROP TABLE patches"))
    if "staged_patches" in present:
        conn.execute(text("DROP TABLE staged_patches"))


MIGRATIONS: dict[int, Migration] = {
    0: _migrate_v0_to_v1,
    1: _migrate_v1_to_v2,
    2: _migrate_v2_to_v3,
    3: _migrate_v3_to_v4,
    4: _migrate_v4_to_v5,
    5: _migrate_v5_to_v6,
}
"""``MIGRATIONS[v]`` migrates schema version ``v`` to ``v + 1``."""


def ensure_schema(engine: Engine, label: str) -> None:
    """Create, check or migrate the schema of the database behind ``engine`` (``label`` names it in messages).

    Raises :class:`StoreError` for a foreign database (tables but no ``schema_info``, or another app's), a
    newer schema, or an older one without a migration path.
    """
    with engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite: one process at a time creates/migrates
        dialects.lock_schema(conn)
        tables = {t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_")}
        if not tables:
            Base.metadata.create_all(conn)
            conn.execute(
                SchemaInfo.__table__.insert().values(id=1, app=APP_NAME, schema_version=SCHEMA_VERSION)
            )
            log.info("created ConceptEvo schema v%d in %s", SCHEMA_VERSION, label)
            return
        if "schema_info" not in tables:
            shown = ", ".join(sorted(tables)[:4]) + (", …" if len(tables) > 4 else "")
            raise StoreError(
                f"{label} is not a ConceptEvo database (it has tables {shown} but no schema_info); "
                "point CONCEPTEVO_DB elsewhere"
            )
        rows = conn.execute(select(SchemaInfo.app, SchemaInfo.schema_version)).all()
        if len(rows) != 1 or rows[0].app != APP_NAME:
            app = rows[0].app if rows else "nothing"
            raise StoreError(
                f"{label} is not a ConceptEvo database (its schema_info names {app!r}); "
                "point CONCEPTEVO_DB elsewhere"
            )
        version = int(rows[0].schema_version)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{label} was written by ConceptEvo schema {version}; "
                f"this version reads schema {SCHEMA_VERSION} "
                "— upgrade ConceptEvo or point CONCEPTEVO_DB elsewhere"
            )
        while version < SCHEMA_VERSION:
            step = MIGRATIONS.get(version)
            if step is None:
                raise StoreError(
                    f"{label} has ConceptEvo schema {version}, which this version cannot migrate to schema "
                    f"{SCHEMA_VERSION}; rebuild it or point CONCEPTEVO_DB elsewhere"
                )
            step(conn)
            version += 1
            conn.execute(update(SchemaInfo).where(SchemaInfo.id == 1).values(schema_version=version))
            log.warning("migrated %s to ConceptEvo schema v%d", label, version)
        missing = set(Base.metadata.tables) - tables
        if missing:  # a migration that only adds tables need not spell them out
            Base.metadata.create_all(conn, tables=[Base.metadata.tables[t] for t in sorted(missing)])
