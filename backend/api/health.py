"""``GET /api/health``: liveness, package version and the database's schema version."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend.store import queries

from .deps import DbDep
from .schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness and versions")
def health(request: Request, db: DbDep) -> HealthOut:
    """Answers 200 when the database can be read; 503 when it is busy or unusable."""
    return HealthOut(
        status="ok", version=request.app.state.version, schema_version=db.read(queries.schema_version)
    )
