"""Configuration, schema creation, migration, and refusal of foreign / newer / non-database files."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from backend.store import (
    SCHEMA_VERSION,
    StoreError,
    config,
    data_dir,
    database_url,
    dedupe_key,
    enqueue,
    get_job,
    open_store,
)

REPO = Path(__file__).resolve().parents[3]


def test_data_dir_and_database_url_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CONCEPTEVO_DATA", raising=False)
    monkeypatch.delenv("CONCEPTEVO_DB", raising=False)
    assert data_dir() == REPO / "data"
    assert database_url() == f"sqlite:///{REPO / 'data' / 'conceptevo.db'}"
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    assert database_url() == f"sqlite:///{tmp_path / 'd' / 'conceptevo.db'}"
    monkeypatch.setenv("CONCEPTEVO_DB", str(tmp_path / "other.db"))
    assert database_url() == f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("CONCEPTEVO_DB", "postgresql+psycopg://u:p@host/db")
    assert database_url() == "postgresql+psycopg://u:p@host/db"


def test_open_store_default_uses_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CONCEPTEVO_DB", raising=False)
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "data"))
    st = open_store()
    try:
        assert st.path == tmp_path / "data" / "conceptevo.db"
        assert st.path.is_file()
        assert st.dialect == "sqlite"
        assert st.url == f"sqlite:///{tmp_path / 'data' / 'conceptevo.db'}"
    finally:
        st.dispose()


def test_sqlite_pragmas_and_schema_row(store: config.Store, db_path: Path) -> None:
    with store.session() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 10000
        row = s.execute(text("SELECT app, schema_version FROM schema_info")).one()
        assert tuple(row) == ("conceptevo", SCHEMA_VERSION)
    # reopening an up-to-date database changes nothing
    store.dispose()
    again = open_store(str(db_path))
    with again.session(readonly=True) as s:
        assert s.execute(text("SELECT count(*) FROM schema_info")).scalar() == 1
    again.dispose()


def test_readonly_session_rolls_back_on_error(store: config.Store) -> None:
    with pytest.raises(RuntimeError), store.session() as s:
        s.execute(text("UPDATE schema_info SET schema_version = 99"))
        raise RuntimeError("boom")
    with store.session(readonly=True) as s:
        assert s.execute(text("SELECT schema_version FROM schema_info")).scalar() == SCHEMA_VERSION


def _set_version(path: Path, version: int, app: str = "conceptevo") -> None:
    con = sqlite3.connect(path)
    con.execute("UPDATE schema_info SET schema_version = ?, app = ?", (version, app))
    con.commit()
    con.close()


def test_newer_schema_refused_with_message(store: config.Store, db_path: Path) -> None:
    store.dispose()
    _set_version(db_path, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as err:
        open_store(str(db_path))
    assert str(err.value) == (
        f"{db_path} was written by ConceptEvo schema {SCHEMA_VERSION + 1}; this version reads schema {SCHEMA_VERSION} "
        "— upgrade ConceptEvo or point CONCEPTEVO_DB elsewhere"
    )


def test_unmigratable_old_schema_refused(store: config.Store, db_path: Path) -> None:
    store.dispose()
    _set_version(db_path, -1)
    with pytest.raises(StoreError, match=r"has ConceptEvo schema -1, which this version cannot migrate"):
        open_store(str(db_path))


def test_other_app_refused(store: config.Store, db_path: Path) -> None:
    store.dispose()
    _set_version(db_path, 1, app="someone-else")
    with pytest.raises(StoreError) as err:
        open_store(str(db_path))
    assert str(err.value) == (
        f"{db_path} is not a ConceptEvo database (its schema_info names 'someone-else'); "
        "point CONCEPTEVO_DB elsewhere"
    )


def test_foreign_sqlite_database_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError) as err:
        open_store(str(path))
    assert str(err.value) == (
        f"{path} is not a ConceptEvo database (it has tables customers but no schema_info); "
        "point CONCEPTEVO_DB elsewhere"
    )
    # and it was not modified
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["customers"]
    con.close()


def test_non_database_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is a text file, not SQLite\n" * 200)
    with pytest.raises(StoreError) as err:
        open_store(str(path))
    assert str(err.value) == f"{path} cannot be used as a ConceptEvo database: file is not a database"
    assert "\n" not in str(err.value)


def test_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"is a directory, not a database file"):
        open_store(str(tmp_path))


def test_v0_database_is_migrated(store: config.Store, db_path: Path) -> None:
    """Fake a v0 database (no jobs.active_key, version 0) holding two identical active jobs and a done one."""
    store.dispose()
    key = dedupe_key("demo", {"n": 1})
    con = sqlite3.connect(db_path)
    con.execute("DROP INDEX ux_jobs_active_key")
    con.execute("ALTER TABLE jobs DROP COLUMN active_key")
    rows = [
        (1, "queued", "2024-01-01 00:00:00"),
        (2, "queued", "2024-01-01 00:00:01"),
        (3, "done", "2024-01-01 00:00:02"),
    ]
    for job_id, status, created in rows:
        con.execute(
            "INSERT INTO jobs (id, kind, params, dedupe_key, status, priority, attempts, max_attempts, progress,"
            " message, created_at) VALUES (?, 'demo', '{\"n\": 1}', ?, ?, 0, 0, 3, 0.0, '', ?)",
            (job_id, key, status, created),
        )
    con.execute("UPDATE schema_info SET schema_version = 0")
    con.commit()
    con.close()

    st = open_store(str(db_path))
    try:
        with st.session(readonly=True) as s:
            assert s.execute(text("SELECT schema_version FROM schema_info")).scalar() == SCHEMA_VERSION
            got = s.execute(text("SELECT id, status, active_key FROM jobs ORDER BY id")).all()
        assert got == [(1, "queued", key), (2, "cancelled", None), (3, "done", None)]
        assert get_job(st, 2).error == "cancelled by schema migration v0→v1: duplicate of an active job"
        # the unique index is back: enqueueing the same job again returns job 1
        job, created = enqueue(st, "demo", {"n": 1})
        assert (job.id, created) == (1, False)
    finally:
        st.dispose()


def test_import_pulls_in_neither_torch_nor_fastapi() -> None:
    code = (
        "import sys, backend.store, backend.store.queue, backend.store.queries, backend.store.writes\n"
        "bad = [m for m in ('torch', 'fastapi', 'starlette', 'worker') if m in sys.modules]\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"store imported {proc.stdout.strip()}: {proc.stderr[-500:]}"


def test_schema_and_claim_compile_for_postgresql() -> None:
    """No SQLite-only types in the models; the claim query locks rows with SKIP LOCKED on PostgreSQL."""
    from sqlalchemy import select
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    from backend.store import Base, Job
    from backend.store.dialects import lock_for_claim

    pg = postgresql.dialect()
    for table in Base.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=pg))
        assert "BLOB" not in ddl  # LargeBinary → BYTEA
        for index in table.indexes:
            str(CreateIndex(index).compile(dialect=pg))
    stmt = select(Job).order_by(Job.priority.desc()).limit(8)
    assert str(lock_for_claim(stmt, "postgresql").compile(dialect=pg)).endswith("FOR UPDATE SKIP LOCKED")
    assert "FOR UPDATE" not in str(lock_for_claim(stmt, "sqlite").compile(dialect=sqlite.dialect()))
