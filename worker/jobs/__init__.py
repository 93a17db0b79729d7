"""Job handlers, one thin module per kind; :data:`HANDLERS` maps a job kind to its handler.

Every handler reads its inputs through the store, calls the pure engine (via :mod:`worker.pipeline`),
and writes its results with :func:`backend.store.finishing` — rows and the job's ``done`` in one
transaction, after any files were renamed into place.
"""

from __future__ import annotations

from worker.jobs.demo import handle_demo_world
from worker.jobs.importance import handle_importance, handle_revert_eval
from worker.jobs.space import handle_add_snapshot, handle_build_space

HANDLERS = {
    "demo_world": handle_demo_world,
    "build_space": handle_build_space,
    "add_snapshot": handle_add_snapshot,
    "importance": handle_importance,
    "revert_eval": handle_revert_eval,
}

# Claim order when one worker drains a mixed queue: inputs before what needs them.
PRIORITY = {"demo_world": 100, "build_space": 50, "add_snapshot": 20, "importance": 10, "revert_eval": 5}
