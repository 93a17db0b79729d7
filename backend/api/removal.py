"""``DELETE /api/runs/{id}``, ``/api/datasets/{id}``, ``/api/spaces/{id}``: one helper shared by the three routers.

The store does the work (:mod:`backend.store.removal`: one transaction, patch files unlinked after the commit);
this module maps its answer to :class:`RemovedOut`. Writes need the server's token like every other write (the
token middleware covers ``DELETE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.store import removal

from .db import Db
from .schemas import ErrorOut, RemovedOut

#: The documented answers of a removal besides 200.
REMOVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such object (or it was removed already)."},
    409: {
        "model": ErrorOut,
        "description": "A queued or running job uses it, or another object depends on it (the message says "
        "what to remove or cancel first).",
    },
}


def remove_object(db: Db, data_dir: Path, kind: removal.Kind, object_id: int) -> RemovedOut:
    """Remove the ``kind`` with id ``object_id`` and everything derived from it; what was removed.

    Args:
        db: the request's database runner (busy retries).
        data_dir: the server's data directory (patch files under it are unlinked).
        kind: ``"run"``, ``"dataset"`` or ``"space"``.
        object_id: its id.

    Returns:
        The removal's summary.
    """
    done = db.call(lambda: removal.remove(db.store, kind, object_id, data_dir))
    return RemovedOut(kind=done.kind, id=done.id, name=done.name, rows=done.rows, files=len(done.files))
