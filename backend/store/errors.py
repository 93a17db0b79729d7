"""Exceptions raised by the store and the job queue.

Every message is one line that names the database file or the id concerned and the cause, so that the CLI,
the API and a job row can show it as is.
"""

from __future__ import annotations


class StoreError(Exception):
    """A database that cannot be used (unreadable, foreign, newer schema) or a store operation refused."""


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
