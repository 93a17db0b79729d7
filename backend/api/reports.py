"""The evaluation report of a space (issue 14): ``GET /api/spaces/{space_id}/report`` (its results and links to its
files) and ``GET /api/spaces/{space_id}/report/files/{name}`` (a plot, ``report.md`` or ``results.json``).

The report is written by the worker's ``eval`` job under ``<data dir>/reports/<space>/``; files are served by a
name that must match the report's file-name pattern and exist there — never by a path the client sends.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from backend.store import queries
from backend.store.errors import NotFoundError
from backend.store.evaluation import REPORT_FILE, read_report, report_file

from .deps import DataDirDep, DbDep, SpaceId
from .schemas import ErrorOut

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


@router.get(
    "/spaces/{space_id}/report",
    response_model=ReportOut,
    responses={404: {"model": ErrorOut, "description": "Unknown space."}},
    summary="The evaluation report of a space",
)
def get_report(space_id: SpaceId, db: DbDep, data_dir: DataDirDep) -> ReportOut:
    """The results of the space's last ``eval`` job (queue one with ``POST /api/jobs``, kind ``eval``), with the
    URLs of its plots and files; ``ready: false`` when none was written yet."""

    def q(session: Session) -> tuple[int, str, dict[str, Any] | None]:
        space = queries.get_space(session, space_id)
        return space.id, space.name, read_report(space, data_dir)

    sid, name, results = db.read(q)
    files = {
        f: f"/api/spaces/{sid}/report/files/{f}"
        for f in (results or {}).get("files", [])
        if isinstance(f, str) and REPORT_FILE.match(f)
    }
    return ReportOut(space_id=sid, space_name=name, ready=results is not None, results=results, files=files)


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
