"""Jobs: ask the worker to compute something, follow its progress, cancel or retry it.

``POST /api/jobs`` validates the kind and its parameters (and that the ids they name exist); an identical job
already queued or running is returned with 200 instead of a new one with 201.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.store import queue
from backend.store.errors import ConflictError, NotFoundError
from backend.store.models import Dataset, Run, Snapshot, Space

from .deps import MAX_ID, DbDep, JobId
from .schemas import ErrorOut, JobOut

router = APIRouter(tags=["jobs"])

DbInt = Annotated[int, Field(ge=1, le=MAX_ID)]
EpochInt = Annotated[int, Field(ge=0, le=1_000_000)]
ClassInt = Annotated[int, Field(ge=0, le=1_000_000)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DemoParams(_Params):
    """Generate the demo dataset and train the demo runs, then register them and queue the space and importance.

    Both fields are always stored (defaults filled in), as ``conceptevo demo`` queues them, so that the same
    request from the page and from the CLI is the same job.
    """

    size: Literal["default", "small"] = Field(
        "default", description="default: 4,000 + 1,000 images; small: 288 + 96 (a quick look)."
    )
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = Field(
        0, description="Seed of the images and the training."
    )


class BuildSpaceParams(_Params):
    """Build a unified semantic space on a base snapshot."""

    base_snapshot_id: DbInt = Field(description="The snapshot whose neurons define the space.")
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\w .:@+-]+$")] | None = None
    k: Annotated[int, Field(ge=1, le=100)] | None = Field(None, description="Stimuli per neuron (paper: 10).")
    dim: Annotated[int, Field(ge=2, le=512)] | None = Field(
        None, description="Embedding dimension (paper: 30)."
    )
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    epochs: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, description="Neuron-embedding epochs E (paper: 10,000)."
    )
    compute_runs: Annotated[list[DbInt], Field(min_length=1, max_length=1000)] | None = Field(
        None, description="Once the space is built, place every epoch of these runs in it."
    )


class AddSnapshotParams(_Params):
    """Compute one run × epoch in a space (stimuli, vectors, positions, patches, metrics)."""

    space_id: DbInt
    snapshot_id: DbInt


class ImportanceParams(_Params):
    """Importance of the evolutions ``epoch_from → epoch_to`` of a run, for some classes (default: all)."""

    run_id: DbInt
    epoch_from: EpochInt
    epoch_to: EpochInt
    classes: Annotated[list[ClassInt], Field(min_length=1, max_length=10_000)] | None = None

    @model_validator(mode="after")
    def _order(self) -> ImportanceParams:
        if self.epoch_from >= self.epoch_to:
            raise ValueError("epoch_from must be smaller than epoch_to")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self


class RevertEvalParams(ImportanceParams):
    """Reversion check (paper Sec 4.4) for the evolutions ``epoch_from → epoch_to`` of a run."""


JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JobKind = Literal["demo", "build_space", "add_snapshot", "importance", "revert_eval"]
Priority = Annotated[int, Field(ge=-1000, le=1000, description="Higher runs first.")]


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


JobCreate = Annotated[
    DemoJob | BuildSpaceJob | AddSnapshotJob | ImportanceJob | RevertEvalJob, Field(discriminator="kind")
]


def _check_references(session: Session, kind: str, p: dict[str, Any]) -> None:
    """Refuse parameters naming rows that do not exist (404) or a space name already taken (409)."""
    if kind == "build_space":
        if session.get(Snapshot, p["base_snapshot_id"]) is None:
            raise NotFoundError(f"snapshot {p['base_snapshot_id']} not found")
        if "name" in p and session.scalar(select(Space.id).where(Space.name == p["name"])) is not None:
            raise ConflictError(f"a space named {p['name']!r} already exists")
        for run_id in p.get("compute_runs", []):
            if session.get(Run, run_id) is None:
                raise NotFoundError(f"run {run_id} not found")
    elif kind == "add_snapshot":
        if session.get(Space, p["space_id"]) is None:
            raise NotFoundError(f"space {p['space_id']} not found")
        if session.get(Snapshot, p["snapshot_id"]) is None:
            raise NotFoundError(f"snapshot {p['snapshot_id']} not found")
    elif kind in ("importance", "revert_eval"):
        run = session.get(Run, p["run_id"])
        if run is None:
            raise NotFoundError(f"run {p['run_id']} not found")
        epochs = set(
            session.scalars(
                select(Snapshot.epoch).where(
                    Snapshot.run_id == run.id, Snapshot.epoch.in_([p["epoch_from"], p["epoch_to"]])
                )
            )
        )
        for field in ("epoch_from", "epoch_to"):
            if p[field] not in epochs:
                raise NotFoundError(f"run {run.id} has no snapshot at epoch {p[field]}")
        n_classes = run.num_classes
        if n_classes <= 0:
            names = session.scalar(select(Dataset.class_names).where(Dataset.id == run.dataset_id)) or []
            n_classes = len(names)
        bad = [c for c in p.get("classes", []) if c >= n_classes]
        if bad:
            raise NotFoundError(f"class {bad[0]} not found: run {run.id} has {n_classes} classes")


def _out(info: queue.JobInfo) -> JobOut:
    return JobOut.model_validate(info)


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=201,
    responses={
        200: {"model": JobOut, "description": "An identical job is already queued or running: that job."},
        201: {"description": "Job queued."},
        400: {"model": ErrorOut, "description": "The body is not valid JSON."},
        404: {
            "model": ErrorOut,
            "description": "The parameters name a run, snapshot, space or class that does not exist.",
        },
        409: {"model": ErrorOut, "description": "`build_space`: a space of that name exists."},
        422: {"description": "Unknown kind or invalid parameters."},
    },
    summary="Ask for a computation",
)
def create_job(body: JobCreate, response: Response, db: DbDep) -> JobOut:
    """Queue a job; an identical job (same kind and parameters) already queued or running is returned instead
    (status 200), with its priority raised to the requested one if higher."""
    params = body.params.model_dump(exclude_none=True)
    db.read(lambda s: _check_references(s, body.kind, params))
    info, created = db.call(lambda: queue.enqueue(db.store, body.kind, params, priority=body.priority))
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/api/jobs/{info.id}"
    return _out(info)


@router.get("/jobs", response_model=list[JobOut], summary="Jobs, newest first")
def list_jobs(
    db: DbDep,
    status: Annotated[list[JobStatus] | None, Query(description="Only these statuses (repeatable).")] = None,
    kind: Annotated[JobKind | None, Query(description="Only this kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[JobOut]:
    """Jobs with their progress, newest first."""
    infos = db.call(lambda: queue.list_jobs(db.store, status=status or None, limit=limit, kind=kind))
    return [_out(i) for i in infos]


@router.get("/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorOut}}, summary="One job")
def get_job(job_id: JobId, db: DbDep) -> JobOut:
    """A job: status, progress (0–1) and message for a live bar, error text, result summary."""
    return _out(db.call(lambda: queue.get_job(db.store, job_id)))


CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut, "description": "The job is already done or failed."},
}


@router.delete("/jobs/{job_id}", response_model=JobOut, responses=CANCEL_RESPONSES, summary="Cancel a job")
def delete_job(job_id: JobId, db: DbDep) -> JobOut:
    """Cancel a queued or running job (its worker stops at its next heartbeat). Cancelling twice is harmless."""
    return _out(db.call(lambda: queue.cancel(db.store, job_id)))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses=CANCEL_RESPONSES,
    summary="Cancel a job (POST form)",
)
def cancel_job(job_id: JobId, db: DbDep) -> JobOut:
    """Same as `DELETE /api/jobs/{job_id}`."""
    return _out(db.call(lambda: queue.cancel(db.store, job_id)))


@router.post(
    "/jobs/{job_id}/retry",
    response_model=JobOut,
    responses={
        404: {"model": ErrorOut},
        409: {"model": ErrorOut, "description": "Not failed/cancelled, or an identical job is active."},
    },
    summary="Queue a failed or cancelled job again",
)
def retry_job(job_id: JobId, db: DbDep) -> JobOut:
    """Put a failed or cancelled job back in the queue with its attempts reset."""
    return _out(db.call(lambda: queue.retry(db.store, job_id)))
