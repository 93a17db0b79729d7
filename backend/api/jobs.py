"""Jobs: ask the worker to compute something, follow its progress, cancel or retry it.

``POST /api/jobs`` validates the kind and its parameters (and that the ids they name exist); an identical job
already queued or running is returned with 200 instead of a new one with 201.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from backend.store import queue
from backend.store.jobspec import (
    AddSnapshotParams,
    BuildSpaceParams,
    DemoParams,
    EvalParams,
    ImportanceParams,
    Int,
    RevertEvalParams,
    check_references,
    enqueue_job,
)

from .deps import DbDep, JobId
from .redact import Redactor, worker_name
from .schemas import ErrorOut, JobOut

router = APIRouter(tags=["jobs"])


JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JobKind = Literal["demo", "build_space", "add_snapshot", "importance", "revert_eval", "eval"]
Priority = Int(-1000, 1000, description="Higher runs first.")


class _Create(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    priority: Priority = 0


class DemoJob(_Create):
    """Generate the demo dataset and train the demo runs."""

    kind: Literal["demo"]
    params: DemoParams = Field(default_factory=DemoParams)


class BuildSpaceJob(_Create):
    """Build a unified semantic space."""

    kind: Literal["build_space"]
    params: BuildSpaceParams


class AddSnapshotJob(_Create):
    """Compute one snapshot in a space."""

    kind: Literal["add_snapshot"]
    params: AddSnapshotParams


class ImportanceJob(_Create):
    """Importance of a run's evolutions for some classes."""

    kind: Literal["importance"]
    params: ImportanceParams


class RevertEvalJob(_Create):
    """Reversion check of a run's evolutions."""

    kind: Literal["revert_eval"]
    params: RevertEvalParams


class EvalJob(_Create):
    """The evaluation report of a space (the paper's findings recomputed)."""

    kind: Literal["eval"]
    params: EvalParams


JobCreate = Annotated[
    DemoJob | BuildSpaceJob | AddSnapshotJob | ImportanceJob | RevertEvalJob | EvalJob,
    Field(discriminator="kind"),
]


def get_redactor(request: Request) -> Redactor:
    """How job answers show paths and workers: relative to this server's data folder (:mod:`.redact`)."""
    settings = request.app.state.settings
    return Redactor([request.app.state.data_dir, settings.data_dir])


RedactorDep = Annotated[Redactor, Depends(get_redactor)]


def _out(info: queue.JobInfo, redact: Redactor) -> JobOut:
    """The API form of a job: no absolute path, no worker host identity (the store keeps them)."""
    workers = [info.worker_id]
    return JobOut.model_validate(
        {
            **{field: getattr(info, field) for field in JobOut.model_fields},
            "worker_id": worker_name(info.worker_id),
            "message": redact.text(info.message, workers),
            "error": redact.text(info.error, workers),
            "result": redact.value(info.result),
        }
    )


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=201,
    responses={
        200: {"model": JobOut, "description": "An identical job is already queued or running: that job."},
        201: {"description": "Job queued."},
        400: {"model": ErrorOut, "description": "The body cannot be read as text (it is not UTF-8)."},
        404: {
            "model": ErrorOut,
            "description": "The parameters name a run, snapshot, space or class that does not exist, or an "
            "evolution that does not (`epoch_from` not earlier than `epoch_to`).",
        },
        409: {
            "model": ErrorOut,
            "description": "`build_space`: a space of that name exists (send `replace: true` to rebuild it) or "
            "another job builds it; `add_snapshot` / `importance`: the result exists already (send `force: true` "
            "to recompute it). Nothing is queued.",
        },
        422: {"description": "Not JSON, an unknown kind, or parameters the schema does not allow."},
    },
    summary="Ask for a computation",
)
def create_job(body: JobCreate, response: Response, db: DbDep, redact: RedactorDep) -> JobOut:
    """Queue a job; an identical job (same kind and parameters) already queued or running is returned instead
    (status 200), with its priority raised to the requested one if higher.

    Parameters are stored in their canonical form (every default filled in, id lists ascending and without
    repeats), the form the CLI queues too: the same request from either is the same job."""
    db.read(lambda s: check_references(s, body.params))
    info, created = db.call(lambda: enqueue_job(db.store, body.params, priority=body.priority))
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/api/jobs/{info.id}"
    return _out(info, redact)


@router.get("/jobs", response_model=list[JobOut], summary="Jobs, newest first")
def list_jobs(
    db: DbDep,
    redact: RedactorDep,
    status: Annotated[list[JobStatus] | None, Query(description="Only these statuses (repeatable).")] = None,
    kind: Annotated[JobKind | None, Query(description="Only this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobOut]:
    """Jobs with their progress, newest first."""
    infos = db.call(lambda: queue.list_jobs(db.store, status=status or None, limit=limit, kind=kind))
    return [_out(i, redact) for i in infos]


@router.get("/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorOut}}, summary="One job")
def get_job(job_id: JobId, db: DbDep, redact: RedactorDep) -> JobOut:
    """A job: status, progress (0–1) and message for a live bar, error text, result summary."""
    return _out(db.call(lambda: queue.get_job(db.store, job_id)), redact)


CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut, "description": "The job is already done or failed."},
}


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    responses={404: {"model": ErrorOut, "description": "No such job (or it was removed already)."}},
    summary="Remove a job",
)
def delete_job(job_id: JobId, db: DbDep, redact: RedactorDep) -> JobOut:
    """Remove the job, whatever its state, and answer it as it was removed; afterwards it is a 404. A queued or
    running job is cancelled first (its worker stops at its next heartbeat and writes nothing). To cancel a job
    but keep it listed, `POST /api/jobs/{job_id}/cancel`."""
    return _out(db.call(lambda: queue.remove(db.store, job_id)), redact)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses=CANCEL_RESPONSES,
    summary="Cancel a job",
)
def cancel_job(job_id: JobId, db: DbDep, redact: RedactorDep) -> JobOut:
    """Cancel a queued or running job (its worker stops at its next heartbeat); it stays listed, `cancelled`.
    Cancelling twice is harmless."""
    return _out(db.call(lambda: queue.cancel(db.store, job_id)), redact)


@router.post(
    "/jobs/{job_id}/retry",
    response_model=JobOut,
    responses={
        404: {"model": ErrorOut},
        409: {"model": ErrorOut, "description": "Not failed/cancelled, or an identical job is active."},
    },
    summary="Queue a failed or cancelled job again",
)
def retry_job(job_id: JobId, db: DbDep, redact: RedactorDep) -> JobOut:
    """Put a failed or cancelled job back in the queue with its attempts reset."""
    return _out(db.call(lambda: queue.retry(db.store, job_id)), redact)
