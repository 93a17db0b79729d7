"""Job handlers, one thin module per kind; :func:`handlers` maps a job kind to its handler.

Every handler reads its inputs through the store, calls the pure engine (via :mod:`worker.pipeline`),
and writes its results with :func:`backend.store.finishing` — rows and the job's ``done`` in one
transaction, after any files were renamed into place. Parameters are those ``POST /api/jobs``
validates (``backend/api/jobs.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from backend.store.jobspec import PRIORITY

__all__ = ["PRIORITY", "handlers"]


#: Kind → (module, function) of its handler.
_HANDLERS: dict[str, tuple[str, str]] = {
    "demo": ("worker.jobs.demo", "handle_demo_world"),
    "build_space": ("worker.jobs.space", "handle_build_space"),
    "add_snapshot": ("worker.jobs.space", "handle_add_snapshot"),
    "importance": ("worker.jobs.importance", "handle_importance"),
    "revert_eval": ("worker.jobs.importance", "handle_revert_eval"),
    "eval": ("worker.jobs.eval", "handle_eval"),
    "stimuli_shard": ("worker.jobs.shards", "handle_stimuli_shard"),
}


def _lazy(module: str, name: str) -> Callable[[Any], None]:
    """A handler that imports its module at its first call: a worker claims its first job (say, the demo's
    data generation) without paying first for every engine's imports (umap and numba take 20–30 s)."""

    def handler(ctx: Any) -> None:
        getattr(importlib.import_module(module), name)(ctx)

    handler.__name__ = name
    return handler


def handlers() -> dict[str, Callable[[Any], None]]:
    """Kind → handler; each handler's module is imported when a job of its kind first runs."""
    return {kind: _lazy(module, name) for kind, (module, name) in _HANDLERS.items()}
