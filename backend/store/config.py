"""Configuration (data directory, database URL) and :func:`open_store`, the entry point to the database.

* ``CONCEPTEVO_DATA`` — the data directory (default ``<repo>/data``).
* ``CONCEPTEVO_DB`` — a SQLAlchemy URL (``postgresql+psycopg://…``) or a plain file path meaning SQLite;
  default ``sqlite:///<data dir>/conceptevo.db``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from backend.store import dialects
from backend.store.errors import BUSY_HINT, DatabaseBusyError, StoreError, is_busy_error

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (two levels above ``backend/``)."""


def data_dir() -> Path:
    """The data directory: ``$CONCEPTEVO_DATA`` or ``<repo>/data`` (not created here)."""
    env = os.environ.get("CONCEPTEVO_DATA")
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def database_url() -> str:
    """The database URL: ``$CONCEPTEVO_DB`` (URL or SQLite file path), or data/conceptevo.db."""
    env = os.environ.get("CONCEPTEVO_DB")
    if env:
        return _as_url(env)
    return f"sqlite:///{(data_dir() / 'conceptevo.db').resolve()}"


def _as_url(value: str) -> str:
    """A URL stays as is; anything without ``://`` is a SQLite file path."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


class Store:
    """An open database: an engine plus session factories. Create it with :func:`open_store`.

    ``session()`` is the way in: a context manager yielding a :class:`~sqlalchemy.orm.Session` that commits on
    normal exit and rolls back on an exception. Objects stay usable after the block
    (``expire_on_commit=False``).
    """

    def __init__(self, engine: Engine, label: str, path: Path | None) -> None:
        self.engine = engine
        self.label = label
        """Human-readable name of the database : the SQLite file path, or the URL sans password."""
        self.path = path
        """The SQLite file, or None for other databases."""
        self._write = sessionmaker(bind=engine, expire_on_commit=False)
        self._read = sessionmaker(
            bind=engine.execution_options(**{dialects.BEGIN_OPTION: "DEFERRED"}), expire_on_commit=False
        )

    @property
    def url(self) -> str:
        """The database URL (password hidden)."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"`` (the SQLAlchemy dialect name)."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, readonly: bool = False) -> Iterator[Session]:
        """A transaction: commit on success, roll back on exception.

        ``readonly=True`` is for reads only (API GETs): on SQLite it begins a deferred transaction that does
        not wait for writers. A write in a readonly session may fail with "database is locked"
        under contention.
        """
        maker = self._read if readonly else self._write
        with maker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close all pooled connections (call before forking, or when done)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.label!r})"


def open_store(url: str | None = None) -> Store:
    """Open (and create, or migrate, if needed) the database at ``url`` (default :func:`database_url`).

    ``url`` may also be a plain file path (SQLite). Raises :class:`StoreError` with a one-line message naming
    the database when it cannot be used: not a database, a foreign database, or a newer schema.
    """
    from backend.store.schema import ensure_schema  # local: schema imports models, keep config import-light

    url = _as_url(url) if url else database_url()
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"{url!r} is not a database URL ({exc}); set CONCEPTEVO_DB to a URL or a file path"
        ) from exc
    path: Path | None = None
    if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
        path = Path(u.database)
        label = str(path)
        if path.is_dir():
            raise StoreError(f"{label} is a directory, not a database file; point CONCEPTEVO_DB at a file")
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        label = u.render_as_string(hide_password=True)
    try:
        engine = create_engine(u, **dialects.engine_kwargs(url))
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"{label}: cannot create a database engine ({exc})") from exc
    dialects.configure_engine(engine)
    try:
        ensure_schema(engine, label)
    except StoreError:
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        cause = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]
        if is_busy_error(exc):  # a long write elsewhere, not a broken file (issue 12)
            raise DatabaseBusyError(f"{label} is busy ({cause}): {BUSY_HINT}") from exc
        raise StoreError(f"{label} cannot be used as a ConceptEvo database: {cause}") from exc
    log.debug("opened store %s", label)
    return Store(engine, label, path)
