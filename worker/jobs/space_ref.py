"""Which space an ``add_snapshot`` job computes in: by id, or by name while the space's build job runs (issue 12,
item 5). Glue between the job's parameters and the queue's deferral (:class:`worker.jobs.context.Deferred`).

A job queued by name right after ``build-space`` (``conceptevo compute RUN --space S``) finds no space yet: it is
deferred with backoff for as long as a ``build_space`` job for ``S`` is queued or running (the deferral limit does
not apply to that wait, however long the build takes), and fails at once, saying why, when none is left.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.store import find_space, get_space
from backend.store.jobspec import AddSnapshotParams, building_space
from backend.store.models import Space
from worker.errors import ConceptEvoError
from worker.jobs.context import Deferred


def space_for_job(session: Session, spec: AddSnapshotParams) -> Space:
    """The space the job computes in.

    Args:
        session: an open session.
        spec: the job's parameters (``space_id`` or ``space_name``).

    Returns:
        The space row.

    Raises:
        Deferred: the space is named and its build job is still queued or running (a patient deferral).
        ConceptEvoError: the space is named, does not exist, and no job builds it any more.
        NotFoundError: ``space_id`` names no space.
    """
    if spec.space_id is not None:
        return get_space(session, spec.space_id)
    name = str(spec.space_name)
    space = find_space(session, name)
    if space is not None:
        return space
    build = building_space(session, name)
    if build is None:
        raise ConceptEvoError(
            f"no space {name!r}: no build job for it is queued or running any more (it failed or was "
            f"cancelled); build the space (conceptevo build-space --name {name!r}), then retry this job"
        )
    raise Deferred(f"space {name!r} is being built by job {build.id} ({build.status})", patient=True)
