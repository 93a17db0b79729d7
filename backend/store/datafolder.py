"""Is this process's data folder the one the database's other users share? (README "Scale out".)

Workers write patch images under the data folder and the API serves them from its own; on a database server
(PostgreSQL) workers on several machines must therefore mount ONE shared folder (a volume, a network
filesystem). The first process that checks writes a random id into ``<data>/.conceptevo-data-id`` and the
same id into the table ``data_folder_marks``; every later check compares the two, so a worker started on a
folder that is not the shared one stops at once with a one-line :class:`StoreError` instead of writing files
the API will never find.

A SQLite database is a file on one machine, and everything that uses it shares that machine's folders: the
check is skipped there.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, Table, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from backend.store import dialects
from backend.store.config import Store
from backend.store.errors import StoreError
from backend.store.models import Base, utcnow

MARKER = ".conceptevo-data-id"
"""The marker file's name inside the data folder."""


class DataFolderMark(Base):
    """The single row naming the id of the database's shared data folder (a table new in v3, no migration)."""

    __tablename__ = "data_folder_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


def _read_marker(folder: Path) -> str | None:
    try:
        return (folder / MARKER).read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(
            f"data folder {folder}: cannot read {MARKER} ({exc.strerror}); check its permissions"
        ) from None


def _write_marker(folder: Path, token: str) -> None:
    """Write the marker atomically (a half-written marker would fail every later check)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{MARKER}.{os.getpid()}.tmp"
        tmp.write_text(token + "\n")
        os.replace(tmp, folder / MARKER)
    except OSError as exc:
        raise StoreError(
            f"data folder {folder} is not writable ({exc.strerror}); workers write patch images there"
        ) from None


def ensure_table(conn: Connection, table: Table) -> None:
    """Create ``table`` if the database lacks it — a table added after the database was created, by a module the
    process imported after opening it — one process at a time (PostgreSQL: the schema's advisory lock; SQLite:
    the write lock of ``BEGIN IMMEDIATE``)."""
    dialects.lock_schema(conn)
    table.create(conn, checkfirst=True)


def check_data_folder(store: Store, folder: Path) -> str | None:
    """Check (or, on first use, establish) that ``folder`` is the data folder shared by ``store``'s users.

    Args:
        store: the open database.
        folder: this process's data folder (``$CONCEPTEVO_DATA``).

    Returns:
        The folder's id, or None on SQLite (not checked).

    Raises:
        StoreError: the folder lacks the marker the database expects, holds another database's marker, or
            cannot be read or written; the message names the folder, the database and the fix.
    """
    if store.dialect == "sqlite":
        return None
    with store.engine.begin() as conn:
        ensure_table(conn, DataFolderMark.__table__)  # also serialises the first mark between processes
        expected = conn.execute(select(DataFolderMark.token).where(DataFolderMark.id == 1)).scalar()
        found = _read_marker(folder)
        if expected is None:
            token = found or uuid.uuid4().hex
            if found is None:
                _write_marker(folder, token)
            conn.execute(insert(DataFolderMark).values(id=1, token=token, created_at=utcnow()))
            return token
    if found == expected:
        return expected
    if found is None:
        raise StoreError(
            f"data folder {folder} is not the one shared by the other workers of {store.label}: it has no "
            f"{MARKER} (they wrote one into theirs); mount the shared data folder (a shared volume or network "
            "filesystem) there, or point CONCEPTEVO_DATA at it"
        )
    raise StoreError(
        f"data folder {folder} belongs to another database ({MARKER} holds {found[:8]}…, "
        f"{store.label} expects {expected[:8]}…); point CONCEPTEVO_DATA at this database's shared data folder"
    )
