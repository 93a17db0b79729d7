"""Patch images by id: ``GET /api/patches/{snapshot_id}/{neuron_id}/{rank}`` and ``…/sprite``.

The file path comes from the ``patches`` row (written by the worker), never from the request, and is served only
if it resolves inside the data directory. The worker writes one *sprite* per (snapshot, neuron): its k patches
side by side as square tiles (tile ``rank`` = the stimulus of that rank). ``…/sprite`` serves that file as is
(one request for a whole gallery row); ``…/{rank}`` serves the one tile, cut from it. A square file is one patch.
"""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import FileResponse
from PIL import Image

from backend.store.errors import NotFoundError
from backend.store.models import Patch

from .deps import DataDirDep, DbDep, NeuronId, SnapshotId
from .media import MEDIA_TYPES, safe_media_path
from .schemas import ErrorOut
from .settings import IMMUTABLE_CACHE_CONTROL

router = APIRouter(tags=["patches"])

Rank = Annotated[int, Path(ge=0, le=10_000, description="Stimulus rank (0 = strongest).")]


_IMAGE_RESPONSES = {
    200: {
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(MEDIA_TYPES.values()))
        },
        "description": "The image, cacheable for a year.",
    },
    404: {"model": ErrorOut, "description": "No such patch, or its file is missing."},
}


def _patch_file(db, data_dir, snapshot_id: int, neuron_id: int, rank: int):
    row = db.read(lambda s: s.get(Patch, (snapshot_id, neuron_id, rank)))
    if row is None:
        raise NotFoundError(f"no patch {rank} for neuron {neuron_id} at snapshot {snapshot_id}")
    path = safe_media_path(data_dir, row.file)
    if path is None:
        raise NotFoundError(
            f"the image of patch {rank} of neuron {neuron_id} at snapshot {snapshot_id} is missing"
        )
    return path


@router.get(
    "/patches/{snapshot_id}/{neuron_id}/sprite",
    response_class=FileResponse,
    responses=_IMAGE_RESPONSES,
    summary="All of a neuron's patches at a snapshot, as one image of square tiles",
)
def get_sprite(snapshot_id: SnapshotId, neuron_id: NeuronId, db: DbDep, data_dir: DataDirDep) -> FileResponse:
    """The neuron's k patches side by side (tile i = stimulus of rank i), immutable, long cache lifetime."""
    path = _patch_file(db, data_dir, snapshot_id, neuron_id, 0)
    return FileResponse(
        path, media_type=MEDIA_TYPES[path.suffix.lower()], headers={"Cache-Control": IMMUTABLE_CACHE_CONTROL}
    )


@router.get(
    "/patches/{snapshot_id}/{neuron_id}/{rank}",
    response_class=FileResponse,
    responses=_IMAGE_RESPONSES,
    summary="One example patch image",
)
def get_patch(
    snapshot_id: SnapshotId, neuron_id: NeuronId, rank: Rank, db: DbDep, data_dir: DataDirDep
) -> Response:
    """The image crop of the neuron's `rank`-th stimulus at the snapshot (immutable, long cache lifetime)."""
    path = _patch_file(db, data_dir, snapshot_id, neuron_id, rank)
    headers = {"Cache-Control": IMMUTABLE_CACHE_CONTROL}
    with Image.open(path) as image:
        width, height = image.size
        if width <= height:  # a file of its own
            return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lower()], headers=headers)
        if (rank + 1) * height > width:
            raise NotFoundError(
                f"the sprite of neuron {neuron_id} at snapshot {snapshot_id} has no tile {rank}"
            )
        tile = image.crop((rank * height, 0, (rank + 1) * height, height))
        buffer = io.BytesIO()
        tile.save(buffer, format="WEBP", lossless=True)
    return Response(buffer.getvalue(), media_type="image/webp", headers=headers)
