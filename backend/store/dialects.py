"""Database-specific behaviour — the ONE place where SQLite- or PostgreSQL-only code lives.

Everything else in the store is portable SQLAlchemy. What is here:

* **SQLite only** (:func:`_install_sqlite_hooks`): on every new connection ``PRAGMA busy_timeout=10000``,
  ``journal_mode=WAL``, ``synchronous=NORMAL`` (the usual WAL setting), ``foreign_keys=ON``; the driver's own transaction handling is switched off and every
  transaction is opened by us with ``BEGIN IMMEDIATE`` (takes the write lock up front, waiting up to the busy
  timeout) — or plain deferred ``BEGIN`` for read-only sessions. Without IMMEDIATE, two processes that both
  read and then write (claiming a job) would fail with ``SQLITE_BUSY`` instead of waiting their turn.
  So on SQLite every write transaction is serialised, which makes claim/enqueue atomic.
* **PostgreSQL only**: claim candidates are selected ``FOR UPDATE SKIP LOCKED`` (:func:`lock_for_claim`), and
  schema creation/migration takes a transaction-scoped advisory lock (:func:`lock_schema`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, Select, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0
"""How long a SQLite connection waits for a lock held by another connection before failing."""

BEGIN_OPTION = "conceptevo_sqlite_begin"
"""Execution option naming how a SQLite transaction begins: ``"IMMEDIATE"`` (default) or ``"DEFERRED"``."""

_PG_SCHEMA_LOCK_KEY = 0x436F6E4576  # arbitrary constant: "ConEv"


def engine_kwargs(url: str) -> dict[str, Any]:
    """Extra ``create_engine`` arguments for ``url``'s dialect."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return {"pool_pre_ping": True}
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}}
    if u.database in (None, "", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one shared in-memory database for all sessions
    return kwargs


def configure_engine(engine: Engine) -> None:
    """Install the dialect-specific connection hooks on a new engine."""
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine)


# --------------------------------------------------------------------------------------------------
# SQLite-only section
# --------------------------------------------------------------------------------------------------
def _enable_wal(cur: Any) -> None:
    """SQLite ONLY: switch a database file to WAL. Switching needs an exclusive lock, and SQLite answers
    "database is locked" at once — without waiting out ``busy_timeout`` — when several processes open a
    new database together, so wait for it here, up to the same timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() not in ("wal", "memory"):
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _install_sqlite_hooks(engine: Engine) -> None:
    """SQLite ONLY: pragmas on connect; explicit ``BEGIN IMMEDIATE`` / ``BEGIN`` per transaction."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(cur)
            cur.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


# --------------------------------------------------------------------------------------------------
# PostgreSQL-only section
# --------------------------------------------------------------------------------------------------
def lock_for_claim(stmt: Select[Any], dialect_name: str) -> Select[Any]:
    """Row-lock the claim candidates: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; unchanged elsewhere.

    (On SQLite the whole transaction already holds the database write lock, see ``BEGIN IMMEDIATE`` above.)
    """
    if dialect_name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def lock_schema(conn: Connection) -> None:
    """Serialise schema creation/migration between processes (PG: advisory lock; SQLite: BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK_KEY})
