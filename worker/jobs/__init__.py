"""Job handlers, one thin module per kind; :func:`handlers` maps a job kind to its handler.

Every handler reads its inputs through the store, calls the pure engine (via :mod:`worker.pipeline`),
and writes its results with :func:`backend.store.finishing` — rows and the job's ``done`` in one
transaction, after any files were renamed into place. Parameters are those ``POST /api/jobs``
validates (``backend/api/jobs.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.jobs.priorities import PRIORITY

__all__ = ["PRIORITY", "handlers"]


def handlers() -> dict[str, Callable[[Any], None]]:
    """Kind → handler (imported on first use: the handlers pull in torch and the engine)."""
    from worker.jobs.demo import handle_demo_world
    from worker.jobs.importance import handle_importance, handle_revert_eval
    from worker.jobs.space import handle_add_snapshot, handle_build_space

    return {
        "demo": handle_demo_world,
        "build_space": handle_build_space,
        "add_snapshot": handle_add_snapshot,
        "importance": handle_importance,
        "revert_eval": handle_revert_eval,
    }
