"""Patch images by id: ``GET /api/patches/{snapshot_id}/{neuron_id}/{rank}``.

The file path comes from the ``patches`` row (written by the worker), never from the request, and is served only
if it resolves inside the data directory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from backend.store.errors import NotFoundError
from backend.store.models import Patch

from .deps import DataDirDep, DbDep, NeuronId, SnapshotId
from .media import MEDIA_TYPES, safe_media_path
from .schemas import ErrorOut
from .settings import IMMUTABLE_CACHE_CONTROL

router = APIRouter(tags=["patches"])

Rank = Annotated[int, Path(ge=0, le=10_000, description="Stimulus rank (0 = strongest).")]


@router.get(
    "/patches/{snapshot_id}/{neuron_id}/{rank}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in sorted(set(MEDIA_TYPES.values()))
            },
            "description": "The patch image, cacheable for a year.",
        },
        404: {"model": ErrorOut, "description": "No such patch, or its file is missing."},
    },
    summary="One example patch image",
)
def get_patch(
    snapshot_id: SnapshotId, neuron_id: NeuronId, rank: Rank, db: DbDep, data_dir: DataDirDep
) -> FileResponse:
    """The image crop of the neuron's `rank`-th stimulus at the snapshot (immutable, long cache lifetime)."""
    row = db.read(lambda s: s.get(Patch, (snapshot_id, neuron_id, rank)))
    if row is None:
        raise NotFoundError(f"no patch {rank} for neuron {neuron_id} at snapshot {snapshot_id}")
    path = safe_media_path(data_dir, row.file)
    if path is None:
        raise NotFoundError(
            f"the image of patch {rank} of neuron {neuron_id} at snapshot {snapshot_id} is missing"
        )
    return FileResponse(
        path, media_type=MEDIA_TYPES[path.suffix.lower()], headers={"Cache-Control": IMMUTABLE_CACHE_CONTROL}
    )
