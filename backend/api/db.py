"""Running store work from request handlers: one session per call, busy-database retries, clean errors.

Handlers are plain ``def`` functions (FastAPI runs them in its thread pool) that call
``db.read(fn)`` / ``db.write(fn)`` with a function of a SQLAlchemy session. A database that stays locked after a
few retries becomes :class:`DatabaseBusy`, which the app answers with 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from backend.store.errors import is_busy_error

if TYPE_CHECKING:
    from backend.store.config import Store

    from .settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DatabaseBusy(Exception):
    """The database stayed locked through every retry (answered with 503)."""


class Db:
    """The store plus the retry policy; what request handlers use to read and write."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.retries = settings.busy_retries
        self.backoff_s = settings.busy_backoff_s

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` (which opens its own sessions, e.g. a queue function), retrying while the database is
        locked; raises :class:`DatabaseBusy` when it stays locked."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (OperationalError, DBAPIError) as exc:
                if not is_busy_error(exc):
                    raise
                if attempt == self.retries:
                    logger.warning("database still busy after %d retries: %s", self.retries, exc.orig)
                    raise DatabaseBusy("the database is busy; try again in a moment") from exc
                logger.debug("database busy (attempt %d), retrying in %.3f s", attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, fn: Callable[[Session], T], *, readonly: bool) -> T:
        def once() -> T:
            # Store.session commits on normal exit; readonly sessions begin deferred (readers never wait).
            with self.store.session(readonly=readonly) as session:
                return fn(session)

        return self.call(once)

    def read(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a fresh session, retrying while the database is locked."""
        return self._run(fn, readonly=True)

    def write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` and commit, the whole unit retried while the database is locked."""
        return self._run(fn, readonly=False)
