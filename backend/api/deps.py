"""``Annotated`` dependencies shared by the routers: the database runner, settings, the data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi import Path as PathParam

from .db import Db
from .settings import Settings


def get_db(request: Request) -> Db:
    """The app's :class:`~backend.api.db.Db` (store + retry policy)."""
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    """The app's :class:`~backend.api.settings.Settings`."""
    return request.app.state.settings


def get_data_dir(request: Request) -> Path:
    """The resolved data directory that patch files live under."""
    return request.app.state.data_dir


DbDep = Annotated[Db, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DataDirDep = Annotated[Path, Depends(get_data_dir)]


#: Ids are positive 32-bit integers; anything else is a 422 before the database is asked.
MAX_ID = 2**31 - 1

DatasetId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Dataset id.")]
RunId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Run id.")]
SnapshotId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Snapshot id (a run × epoch).")]
SpaceId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Space id.")]
NeuronId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Neuron id (stable across snapshots).")]
JobId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Job id.")]
ImportanceId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Importance computation id.")]
