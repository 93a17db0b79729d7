"""Exceptions raised by the store and the job queue.

Every message is one line that names the database file or the id concerned and the cause, so that the CLI,
the API and a job row can show it as is.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

#: Lower-cased fragments of driver messages that mean "another connection holds the lock; try again shortly"
#: (SQLite and PostgreSQL).
_BUSY_MARKERS = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "could not obtain lock",
    "lock not available",
    "deadlock detected",
    "could not serialize access",
)

BUSY_HINT = "another process is writing; retry in a moment"
"""What to tell a user whose command met a busy database."""


def is_busy_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a transient lock/busy error of the database driver (not an unusable database).

    Args:
        exc: any exception.

    Returns:
        True for a driver error whose message says the database or a lock is busy.
    """
    if not isinstance(exc, DBAPIError):
        return False
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(marker in text for marker in _BUSY_MARKERS)


class StoreError(Exception):
    """A database that cannot be used (unreadable, foreign, newer schema) or a store operation refused."""


class DatabaseBusyError(StoreError):
    """The database stayed locked by another connection for the whole busy timeout: transient, retry.

    Never a sign of an unusable file; the message says so (:data:`BUSY_HINT`)."""


class NotFoundError(StoreError):
    """A row asked for by id or name does not exist (the API maps this to 404)."""


class ConflictError(StoreError):
    """The operation contradicts the current state (e.g. retrying a done job; the API maps it to 409)."""


class LeaseLost(StoreError):
    """The worker no longer owns the job (its lease expired and another worker took it, or it was cancelled).

    The worker must stop working on the job; nothing of what it tried to write has been committed.
    """


class NotComputedError(NotFoundError):
    """A snapshot that exists but is not computed in the space asked about (a 404 too; an ``add_snapshot``
    job computes it). ``space_id`` and ``snapshot_id`` say which."""

    def __init__(self, message: str, space_id: int, snapshot_id: int) -> None:
        super().__init__(message)
        self.space_id = space_id
        self.snapshot_id = snapshot_id
