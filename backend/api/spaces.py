"""Spaces and the points of one snapshot in one space (binary or JSON, cacheable)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.store.models import Snapshot, Space, SpaceSnapshot

from .deps import DbDep, SnapshotId, SpaceId
from .points import (
    POINTS_FORMAT_DOC,
    encode_points,
    etag_matches,
    finite_or_none,
    points_etag,
    unpack_columns,
)
from .queries import get_or_404, points_blob
from .schemas import ErrorOut, PointsJsonOut, SpaceOut, SpaceSnapshotOut, SpaceSummaryOut
from .settings import IMMUTABLE_CACHE_CONTROL

router = APIRouter(tags=["spaces"])


def _summary(space: Space, base: Snapshot, n_snapshots: int) -> SpaceSummaryOut:
    return SpaceSummaryOut(
        id=space.id,
        name=space.name,
        base_snapshot_id=space.base_snapshot_id,
        base_run_id=base.run_id,
        base_epoch=base.epoch,
        dataset_id=space.dataset_id,
        params=dict(space.params or {}),
        created_at=space.created_at,
        n_snapshots=n_snapshots,
    )


@router.get("/spaces", response_model=list[SpaceSummaryOut], summary="All unified semantic spaces")
def list_spaces(db: DbDep) -> list[SpaceSummaryOut]:
    """Every space, by id, with its base snapshot, hyper-parameters and number of computed snapshots."""

    def q(session: Session) -> list[SpaceSummaryOut]:
        counts = dict(
            session.execute(
                select(SpaceSnapshot.space_id, func.count()).group_by(SpaceSnapshot.space_id)
            ).all()
        )
        rows = session.execute(
            select(Space, Snapshot).join(Snapshot, Snapshot.id == Space.base_snapshot_id).order_by(Space.id)
        ).all()
        return [_summary(space, base, counts.get(space.id, 0)) for space, base in rows]

    return db.read(q)


@router.get(
    "/spaces/{space_id}",
    response_model=SpaceOut,
    responses={404: {"model": ErrorOut}},
    summary="One space and its computed snapshots",
)
def get_space(space_id: SpaceId, db: DbDep) -> SpaceOut:
    """A space with its fitting statistics and every snapshot computed in it (by run, then epoch)."""

    def q(session: Session) -> SpaceOut:
        space = get_or_404(session, Space, space_id, "space")
        base = get_or_404(session, Snapshot, space.base_snapshot_id, "snapshot")
        rows = session.execute(
            select(
                SpaceSnapshot.snapshot_id,
                Snapshot.run_id,
                Snapshot.epoch,
                SpaceSnapshot.n_points,
                SpaceSnapshot.coverage,
                SpaceSnapshot.diversity,
                SpaceSnapshot.movement,
                SpaceSnapshot.computed_at,
            )
            .join(Snapshot, Snapshot.id == SpaceSnapshot.snapshot_id)
            .where(SpaceSnapshot.space_id == space_id)
            .order_by(Snapshot.run_id, Snapshot.epoch)
        ).all()
        snaps = [SpaceSnapshotOut(**row._asdict()) for row in rows]
        return SpaceOut(
            **_summary(space, base, len(snaps)).model_dump(), stats=dict(space.stats or {}), snapshots=snaps
        )

    return db.read(q)


POINTS_DESCRIPTION = f"""\
All neurons of one snapshot in one space: neuron id, layer index and 2-D position.

By default the body is compact binary (`application/octet-stream`). {POINTS_FORMAT_DOC}

`?format=json` gives the same columns as JSON arrays. Computed points never change: the answer carries a
strong `ETag` and `Cache-Control: {IMMUTABLE_CACHE_CONTROL}`; a request with a matching `If-None-Match` gets
304 with no body. A snapshot not (yet) computed in the space is a 404 (enqueue an `add_snapshot` job).
"""


@router.get(
    "/spaces/{space_id}/snapshots/{snapshot_id}/points",
    response_model=PointsJsonOut,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "description": "Binary columns (default) or JSON (`?format=json`).",
        },
        304: {"description": "Not modified (`If-None-Match` matched the ETag)."},
        404: {"model": ErrorOut, "description": "Unknown space or snapshot, or snapshot not computed there."},
    },
    summary="Points of one snapshot in one space",
    description=POINTS_DESCRIPTION,
)
def get_points(
    space_id: SpaceId,
    snapshot_id: SnapshotId,
    db: DbDep,
    format: Annotated[Literal["binary", "json"], Query(description="Body encoding.")] = "binary",
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """See the description; returns a raw response so the binary body is not re-encoded."""

    blob, epoch = db.read(lambda s: points_blob(s, space_id, snapshot_id))
    etag = points_etag(blob, space_id=space_id, snapshot_id=snapshot_id, epoch=epoch)
    if format == "json":
        etag = etag[:-1] + '-json"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE_CACHE_CONTROL, "Vary": "Accept-Encoding"}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    if format == "json":
        cols = unpack_columns(blob)
        payload = {
            "space_id": space_id,
            "snapshot_id": snapshot_id,
            "epoch": epoch,
            "n": len(cols["neuron_id"]),
            "neuron_id": cols["neuron_id"].tolist(),
            "layer_idx": cols["layer_idx"].tolist(),
            "x": finite_or_none(cols["x"]),
            "y": finite_or_none(cols["y"]),
        }
        return Response(
            json.dumps(payload, separators=(",", ":"), allow_nan=False),
            media_type="application/json",
            headers=headers,
        )
    body = encode_points(blob, space_id=space_id, snapshot_id=snapshot_id, epoch=epoch)
    return Response(body, media_type="application/octet-stream", headers=headers)
