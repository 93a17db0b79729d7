"""The evaluation report of a space (issue 14): ``GET /api/spaces/{space_id}/report`` (its results and links to its
files) and ``GET /api/spaces/{space_id}/report/files/{name}`` (a plot, ``report.md`` or ``results.json``).

``GET /api/spaces/{space_id}/report/seeds`` serves the summary of several worlds' reports (``conceptevo
eval-seeds``) kept beside the space's report: per finding, mean ± std over the seeds and whether it holds for every
seed.

The report is written by the worker's ``eval`` job under ``<data dir>/reports/<space>/``; files are served by a
name that must match the report's file-name pattern and exist there — never by a path the client sends.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, FiniteFloat, ValidationError
from sqlalchemy.orm import Session

from backend.store import queries
from backend.store.errors import NotFoundError
from backend.store.evaluation import (
    REPORT_FILE,
    SEEDS_FILE,
    SEEDS_MARKDOWN,
    read_report,
    read_seeds,
    report_file,
)

from .deps import DataDirDep, DbDep, SpaceId
from .schemas import ErrorOut

if TYPE_CHECKING:  # a row the store returns
    from backend.store.models import Space

router = APIRouter(tags=["spaces"])

MEDIA_TYPES = {
    "svg": "image/svg+xml",
    "png": "image/png",
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
}


class ReportOut(BaseModel):
    """A space's evaluation report: ``ready`` false (and no results) until an ``eval`` job has written one."""

    space_id: int
    space_name: str
    ready: bool
    results: dict[str, Any] | None = Field(None, description="The report's results.json.")
    files: dict[str, str] = Field(default_factory=dict, description="File name → URL of the file.")
    seeds: bool = Field(
        False, description="A summary over several worlds exists: GET /api/spaces/{id}/report/seeds."
    )


#: What to run when a space has no summary over seeds (the 404's message).
SEEDS_HINT = (
    "build the world with several seeds, eval each and combine them with `conceptevo eval-seeds REPORT_DIR "
    "REPORT_DIR ... --name {name}` (README, Findings)"
)


class SeedFindingOut(BaseModel):
    """One finding over the worlds: each world's value and verdict, their mean ± std, and the overall verdict."""

    key: str = Field(description="e.g. reversion_order.")
    title: str
    paper: str = Field(description="One sentence on what the paper found.")
    measure: str = Field(description="What the values are.")
    short: str = Field(
        "", description="The measure in a few words (the page's line reads 'over N seeds: …')."
    )
    unit: Literal["auc", "change", "epochs"] = Field(
        "change",
        description="auc: a score in [0, 1]; change: a signed difference; epochs: signed whole epochs.",
    )
    values: list[FiniteFloat | None] = Field(description="One value per world (null: the world has none).")
    mean: FiniteFloat | None
    std: FiniteFloat | None = Field(
        description="Sample standard deviation over the worlds (null with fewer than 2)."
    )
    holds: list[bool] = Field(description="Whether the finding holds, per world.")
    holds_for_every_seed: bool


class SeedsOut(BaseModel):
    """The summary of several worlds' eval reports (e.g. the demo world over seeds 0, 1, 2)."""

    space_id: int
    space_name: str
    worlds: int = Field(ge=2, description="How many worlds' reports were combined.")
    labels: list[str] = Field(description="A short name per world (its seed).")
    findings: list[SeedFindingOut]
    files: dict[str, str] = Field(default_factory=dict, description="seeds.json / seeds.md → URL.")


@router.get(
    "/spaces/{space_id}/report",
    response_model=ReportOut,
    responses={404: {"model": ErrorOut, "description": "Unknown space."}},
    summary="The evaluation report of a space",
)
def get_report(space_id: SpaceId, db: DbDep, data_dir: DataDirDep) -> ReportOut:
    """The results of the space's last ``eval`` job (queue one with ``POST /api/jobs``, kind ``eval``), with the
    URLs of its plots and files; ``ready: false`` when none was written yet."""

    def q(session: Session) -> tuple[int, str, dict[str, Any] | None, SeedsOut | None]:
        space = queries.get_space(session, space_id)
        return space.id, space.name, read_report(space, data_dir), _seeds(space, data_dir)

    sid, name, results, seeds = db.read(q)
    listed = (results or {}).get("files", [])
    files = _file_urls(sid, [f for f in listed if isinstance(f, str) and REPORT_FILE.match(f)])
    return ReportOut(
        space_id=sid,
        space_name=name,
        ready=results is not None,
        results=results,
        files=files,
        seeds=seeds is not None,
    )


def _file_urls(space_id: int, names: list[str]) -> dict[str, str]:
    """File name → the URL that serves it from the space's report folder."""
    return {name: f"/api/spaces/{space_id}/report/files/{name}" for name in names}


def _seeds(space: Space, data_dir: Path) -> SeedsOut | None:
    """The space's summary over seeds as served, or None when there is none or it does not read as one."""
    data = read_seeds(space, data_dir)
    if data is None:
        return None
    files = _file_urls(
        space.id, [f for f in (SEEDS_FILE, SEEDS_MARKDOWN) if report_file(space, f, data_dir) is not None]
    )
    try:
        seeds = SeedsOut.model_validate(
            {**data, "space_id": space.id, "space_name": space.name, "files": files}
        )
    except ValidationError:
        return None
    n = seeds.worlds
    if len(seeds.labels) != n or any(len(f.values) != n or len(f.holds) != n for f in seeds.findings):
        return None
    return seeds


@router.get(
    "/spaces/{space_id}/report/seeds",
    response_model=SeedsOut,
    responses={404: {"model": ErrorOut, "description": "Unknown space, or no summary over seeds for it."}},
    summary="The space's findings over several seeds of its world",
)
def get_report_seeds(space_id: SpaceId, db: DbDep, data_dir: DataDirDep) -> SeedsOut:
    """Per finding of the paper: each world's value and verdict, mean ± std over the worlds and whether it holds
    for every seed — as ``conceptevo eval-seeds`` combined several worlds' eval reports into the space's report
    folder. 404 until it has been run."""

    def q(session: Session) -> tuple[str, SeedsOut | None]:
        space = queries.get_space(session, space_id)
        return space.name, _seeds(space, data_dir)

    name, seeds = db.read(q)
    if seeds is None:
        raise NotFoundError(
            f"space {space_id} has no findings over seeds yet; " + SEEDS_HINT.format(name=name)
        )
    return seeds


@router.get(
    "/spaces/{space_id}/report/files/{name}",
    response_class=FileResponse,
    responses={404: {"model": ErrorOut, "description": "Unknown space, or no such report file."}},
    summary="One file of a space's evaluation report",
)
def get_report_file(
    space_id: SpaceId,
    name: Annotated[str, PathParam(max_length=100, description="File name, e.g. reversion.svg.")],
    db: DbDep,
    data_dir: DataDirDep,
) -> FileResponse:
    """A plot (SVG/PNG), ``report.md`` or ``results.json`` of the space's report."""
    path = db.read(lambda session: report_file(queries.get_space(session, space_id), name, data_dir))
    if path is None:
        raise NotFoundError(f"space {space_id} has no report file {name!r}; run the eval job first")
    return FileResponse(
        path, media_type=MEDIA_TYPES[path.suffix.lstrip(".")], headers={"Cache-Control": "no-cache"}
    )
