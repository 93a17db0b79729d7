"""``GET /api/health``: liveness, package version and the database's schema version."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.store.errors import StoreError
from backend.store.models import SchemaInfo

from .deps import DbDep
from .schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness and versions")
def health(request: Request, db: DbDep) -> HealthOut:
    """Answers 200 when the database can be read; 503 when it is busy or unusable."""

    def schema_version(session: Session) -> int:
        version = session.scalar(select(SchemaInfo.schema_version).where(SchemaInfo.id == 1))
        if version is None:
            raise StoreError("the database has no schema_info row")
        return int(version)

    return HealthOut(status="ok", version=request.app.state.version, schema_version=db.read(schema_version))
