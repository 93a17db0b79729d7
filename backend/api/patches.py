"""Patch images by id: ``GET /api/patches/{snapshot_id}/{neuron_id}/{rank}`` and ``…/sprite``.

The file path comes from the neuron's ``patch_sets`` row (written by the worker), never from the request, and is
served only if it resolves inside the data directory. The worker writes one *sprite* per (snapshot, neuron): its k patches
side by side as square tiles (tile ``rank`` = the stimulus of that rank). ``…/sprite`` serves that file as is
(one request for a whole gallery row); ``…/{rank}`` serves the one tile, cut from it. A square file is one patch.
A file that is not an image of an expected format, is over the pixel limit or cannot be decoded is a 404
(logged once per file); nothing is decoded before its header passed :func:`.media.open_image`.

Since schema v5 a sprite is usually a byte range of a *pack* file holding many neurons' sprites (the row names
the range); only those bytes are read, hashed for the ETag and served. Rows without a range name a whole file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from backend.store import PATCH_PACK_SUFFIX, queries
from backend.store.errors import NotFoundError

from .caching import IfNoneMatch, bytes_etag, cache_headers, file_etag, not_modified
from .deps import DataDirDep, DbDep, NeuronId, SnapshotId
from .media import (
    DECODE_ERRORS,
    FORMAT_MEDIA_TYPES,
    MEDIA_TYPES,
    UnreadableMedia,
    open_image,
    read_byte_range,
    safe_media_path,
    warn_once,
)
from .schemas import ErrorOut

router = APIRouter(tags=["patches"])

Rank = Annotated[int, PathParam(ge=0, le=10_000, description="Stimulus rank (0 = strongest).")]


_IMAGE_RESPONSES = {
    200: {
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(MEDIA_TYPES.values()))
        },
        "description": "The image; `no-cache` with a strong `ETag` of its content (a recomputed snapshot rewrites "
        "it in place).",
    },
    304: {"description": "Not modified (`If-None-Match` matched the ETag)."},
    404: {"model": ErrorOut, "description": "No such patch, or its file is missing."},
}


@dataclass(frozen=True)
class _Sprite:
    """Where a neuron's sprite is: a whole file (``data`` None) or a byte range of a pack, read into ``data``."""

    path: Path
    data: bytes | None

    def etag(self, variant: str = "") -> str:
        return file_etag(self.path, variant) if self.data is None else bytes_etag(self.data, variant)

    def open(self):
        return open_image(self.path if self.data is None else io.BytesIO(self.data))

    def response(self, media_type: str, headers: dict[str, str]) -> Response:
        """The sprite as stored: its bytes, or the whole file streamed."""
        if self.data is not None:
            return Response(self.data, media_type=media_type, headers=headers)
        return FileResponse(self.path, media_type=media_type, headers=headers)


def _sprite(db, data_dir, snapshot_id: int, neuron_id: int, rank: int) -> _Sprite:
    """The sprite holding patch ``rank`` of the neuron, or a 404 naming what is missing or unreadable."""
    row = db.read(lambda s: queries.get_patch(s, snapshot_id, neuron_id, rank))
    packed = row.byte_offset is not None and row.byte_length is not None
    path = safe_media_path(data_dir, row.file, (PATCH_PACK_SUFFIX,) if packed else MEDIA_TYPES)
    if path is None:
        raise NotFoundError(
            f"the image of patch {rank} of neuron {neuron_id} at snapshot {snapshot_id} is missing"
        )
    if not packed:
        return _Sprite(path, None)
    try:
        return _Sprite(path, read_byte_range(path, int(row.byte_offset), int(row.byte_length)))
    except UnreadableMedia as exc:
        raise _unreadable(path, snapshot_id, neuron_id, rank, exc) from None


def _unreadable(path, snapshot_id: int, neuron_id: int, rank: int, why: object) -> NotFoundError:
    warn_once(str(path), "patch image %s cannot be served: %s", path, why)
    return NotFoundError(
        f"the image of patch {rank} of neuron {neuron_id} at snapshot {snapshot_id} cannot be read"
    )


@router.get(
    "/patches/{snapshot_id}/{neuron_id}/sprite",
    response_class=FileResponse,
    responses=_IMAGE_RESPONSES,
    summary="All of a neuron's patches at a snapshot, as one image of square tiles",
)
def get_sprite(
    snapshot_id: SnapshotId,
    neuron_id: NeuronId,
    db: DbDep,
    data_dir: DataDirDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The neuron's k patches side by side (tile i = stimulus of rank i); revalidated by its ETag."""
    sprite = _sprite(db, data_dir, snapshot_id, neuron_id, 0)
    try:
        etag = sprite.etag()
    except OSError as exc:
        raise _unreadable(sprite.path, snapshot_id, neuron_id, 0, exc) from None
    if (unchanged := not_modified(if_none_match, etag)) is not None:
        return unchanged
    try:
        with sprite.open() as image:  # the header only: served as stored, never decoded here
            media_type = FORMAT_MEDIA_TYPES[str(image.format)]
    except UnreadableMedia as exc:
        raise _unreadable(sprite.path, snapshot_id, neuron_id, 0, exc) from None
    return sprite.response(media_type, cache_headers(etag))


@router.get(
    "/patches/{snapshot_id}/{neuron_id}/{rank}",
    response_class=FileResponse,
    responses=_IMAGE_RESPONSES,
    summary="One example patch image",
)
def get_patch(
    snapshot_id: SnapshotId,
    neuron_id: NeuronId,
    rank: Rank,
    db: DbDep,
    data_dir: DataDirDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The image crop of the neuron's `rank`-th stimulus at the snapshot; revalidated by its ETag."""
    sprite = _sprite(db, data_dir, snapshot_id, neuron_id, rank)
    try:
        etag = sprite.etag(f"tile {rank}")
    except OSError as exc:
        raise _unreadable(sprite.path, snapshot_id, neuron_id, rank, exc) from None
    if (unchanged := not_modified(if_none_match, etag)) is not None:
        return unchanged
    headers = cache_headers(etag)
    try:
        with sprite.open() as image:
            width, height = image.size
            if width <= height:  # a file of its own
                return sprite.response(FORMAT_MEDIA_TYPES[str(image.format)], headers)
            if (rank + 1) * height > width:
                raise NotFoundError(
                    f"the sprite of neuron {neuron_id} at snapshot {snapshot_id} has no tile {rank}"
                )
            try:
                tile = image.crop((rank * height, 0, (rank + 1) * height, height))
                tile.load()
            except DECODE_ERRORS as exc:
                raise UnreadableMedia(f"cannot be decoded ({type(exc).__name__}: {exc})") from None
            buffer = io.BytesIO()
            tile.save(buffer, format="WEBP", lossless=True)
    except UnreadableMedia as exc:
        raise _unreadable(sprite.path, snapshot_id, neuron_id, rank, exc) from None
    return Response(buffer.getvalue(), media_type="image/webp", headers=headers)
