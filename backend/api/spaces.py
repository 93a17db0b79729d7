"""Spaces, and the points and concept labels of one snapshot in one space (binary or JSON, cacheable)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from backend.store import queries
from backend.store.errors import NotFoundError
from backend.store.queries import SnapshotConcepts

from .caching import IfNoneMatch
from .convert import computed
from .deps import DataDirDep, DbDep, SnapshotId, SpaceId
from .points import (
    CONCEPT_COLUMNS,
    CONCEPTS_FORMAT_DOC,
    POINTS_FORMAT_DOC,
    content_etag,
    encode_columns,
    encode_points,
    etag_matches,
    finite_or_none,
    pack_columns,
    points_etag,
    unpack_columns,
)
from .removal import REMOVE_RESPONSES, remove_object
from .schemas import (
    ConceptsJsonOut,
    ErrorOut,
    PlacementFitOut,
    PointsJsonOut,
    RemovedOut,
    SpaceOut,
    SpaceSnapshotOut,
    SpaceSummaryOut,
)
from .settings import REVALIDATE_CACHE_CONTROL

if TYPE_CHECKING:  # rows the store returns
    from backend.store.models import Snapshot, Space

router = APIRouter(tags=["spaces"])


def _placement(stats: dict[str, Any]) -> PlacementFitOut | None:
    """The held-out placement fit a space recorded in its stats (None for spaces built before issue 13)."""
    choice = stats.get("damping")
    if not isinstance(choice, dict):
        return None
    return PlacementFitOut(
        damping=choice["damping"],
        heldout_r2=choice["heldout_r2"],
        heldout_cosine=choice["heldout_cosine"],
        base_r2=stats.get("r2"),
    )


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

    return db.read(lambda s: [_summary(*row) for row in queries.space_summaries(s)])


@router.get(
    "/spaces/{space_id}",
    response_model=SpaceOut,
    responses={404: {"model": ErrorOut}},
    summary="One space and its computed snapshots",
)
def get_space(space_id: SpaceId, db: DbDep) -> SpaceOut:
    """A space with its fitting statistics and every snapshot computed in it (by run, then epoch)."""

    def q(session: Session) -> SpaceOut:
        space = queries.get_space(session, space_id)
        base = queries.get_snapshot(session, space.base_snapshot_id)
        snaps = [
            SpaceSnapshotOut(
                snapshot_id=ss.snapshot_id,
                run_id=snap.run_id,
                epoch=snap.epoch,
                n_points=ss.n_points,
                coverage=ss.coverage,
                diversity=ss.diversity,
                movement=ss.movement,
                computed_at=ss.computed_at,
                stability_cosine=ss.stability_cosine,
                stability_displacement=ss.stability_displacement,
                unstable=ss.stable is False,
                tied_per_layer=ss.tied_per_layer,
            )
            for ss, snap in queries.list_space_snapshots(session, space_id)
        ]
        stats = dict(space.stats or {})
        return SpaceOut(
            **_summary(space, base, len(snaps)).model_dump(),
            stats=stats,
            placement=_placement(stats),
            snapshots=snaps,
        )

    return db.read(q)


def _columns_response(
    etag: str,
    if_none_match: str | None,
    format: str,
    json_payload: Callable[[], dict[str, object]],
    binary_body: Callable[[], bytes],
) -> Response:
    """The answer of a columnar endpoint: 304 when ``If-None-Match`` matches, else JSON or binary.

    The columns change when their space is rebuilt (same id), so both forms are ``no-cache`` with a strong ETag
    of their content (:mod:`.caching`); the JSON form has its own ETag.

    Args:
        etag: the strong ETag of the binary form.
        if_none_match: the request's ``If-None-Match`` header.
        format: ``binary`` or ``json``.
        json_payload: builds the JSON twin (called only when it is sent).
        binary_body: builds the binary body (called only when it is sent).
    """
    if format == "json":
        etag = etag[:-1] + '-json"'
    headers = {"ETag": etag, "Cache-Control": REVALIDATE_CACHE_CONTROL, "Vary": "Accept-Encoding"}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    if format == "json":
        return Response(
            json.dumps(json_payload(), separators=(",", ":"), allow_nan=False),
            media_type="application/json",
            headers=headers,
        )
    return Response(binary_body(), media_type="application/octet-stream", headers=headers)


#: The documented answers of a columnar endpoint (points, concepts).
COLUMNAR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "Binary columns (default) or JSON (`?format=json`).",
    },
    304: {"description": "Not modified (`If-None-Match` matched the ETag)."},
    404: {"model": ErrorOut, "description": "Unknown space or snapshot, or snapshot not computed there."},
}


FormatQuery = Annotated[Literal["binary", "json"], Query(description="Body encoding.")]

POINTS_DESCRIPTION = f"""\
All neurons of one snapshot in one space: neuron id, layer index and 2-D position.

By default the body is compact binary (`application/octet-stream`). {POINTS_FORMAT_DOC}

`?format=json` gives the same columns as JSON arrays. The answer carries a strong `ETag` of its content and
`Cache-Control: {REVALIDATE_CACHE_CONTROL}` (a rebuilt space keeps its id, so a cache must revalidate); a request
with a matching `If-None-Match` gets 304 with no body. A snapshot not (yet) computed in the space is a 404
(enqueue an `add_snapshot` job).
"""


@router.get(
    "/spaces/{space_id}/snapshots/{snapshot_id}/points",
    response_model=PointsJsonOut,
    responses=COLUMNAR_RESPONSES,
    summary="Points of one snapshot in one space",
    description=POINTS_DESCRIPTION,
)
def get_points(
    space_id: SpaceId,
    snapshot_id: SnapshotId,
    db: DbDep,
    format: FormatQuery = "binary",
    if_none_match: IfNoneMatch = None,
) -> Response:
    """See the description; returns a raw response so the binary body is not re-encoded."""

    blob, epoch = db.read(computed(lambda s: queries.points_blob(s, space_id, snapshot_id)))

    def as_json() -> dict[str, object]:
        cols = unpack_columns(blob)
        return {
            "space_id": space_id,
            "snapshot_id": snapshot_id,
            "epoch": epoch,
            "n": len(cols["neuron_id"]),
            "neuron_id": cols["neuron_id"].tolist(),
            "layer_idx": cols["layer_idx"].tolist(),
            "x": finite_or_none(cols["x"]),
            "y": finite_or_none(cols["y"]),
        }

    return _columns_response(
        points_etag(blob, space_id=space_id, snapshot_id=snapshot_id, epoch=epoch),
        if_none_match,
        format,
        as_json,
        lambda: encode_points(blob, space_id=space_id, snapshot_id=snapshot_id, epoch=epoch),
    )


CONCEPTS_DESCRIPTION = f"""\
Concept labels for the map: for every neuron of one snapshot in one space, in the same order as its points,
the class most of the neuron's k stimuli belong to (`class_idx`, ties → the lower index, -1 when it has no
stimuli) and that class's share of its stimuli (`share`, 0–1). Class names are those of the space's dataset.

By default the body is compact binary (`application/octet-stream`), laid out like the points.
{CONCEPTS_FORMAT_DOC}

`?format=json` gives the same fields as JSON. Like the points, the answer is revalidated (strong `ETag`,
`Cache-Control: {REVALIDATE_CACHE_CONTROL}`, 304 on a matching `If-None-Match`). A snapshot not (yet) computed
in the space is a 404 (enqueue an `add_snapshot` job).
"""


@router.get(
    "/spaces/{space_id}/snapshots/{snapshot_id}/concepts",
    response_model=ConceptsJsonOut,
    responses=COLUMNAR_RESPONSES,
    summary="Dominant stimulus class of each neuron of one snapshot in one space",
    description=CONCEPTS_DESCRIPTION,
)
def get_concepts(
    space_id: SpaceId,
    snapshot_id: SnapshotId,
    db: DbDep,
    format: FormatQuery = "binary",
    if_none_match: IfNoneMatch = None,
) -> Response:
    """See the description; returns a raw response so the binary body is not re-encoded."""

    def q(session: Session) -> SnapshotConcepts:
        found = queries.snapshot_concepts(session, space_id, snapshot_id)
        if found is None:
            missing = queries.not_computed(session, space_id, snapshot_id)
            raise missing or NotFoundError(f"snapshot {snapshot_id} has no concepts in space {space_id}")
        return found

    c = db.read(computed(q))
    block = pack_columns(CONCEPT_COLUMNS, (c.neuron_id, c.class_idx, c.share))
    fields = {
        "space_id": space_id,
        "snapshot_id": snapshot_id,
        "epoch": c.epoch,
        "k": c.k,
        "class_names": c.class_names,
    }
    identity = json.dumps(fields, separators=(",", ":"))  # class names and k are part of the answer too
    return _columns_response(
        content_etag(f"concepts:{identity}:", block),
        if_none_match,
        format,
        lambda: {
            **fields,
            "n": len(c.neuron_id),
            "neuron_id": c.neuron_id.tolist(),
            "class_idx": c.class_idx.tolist(),
            "share": c.share.tolist(),
        },
        lambda: encode_columns(block, n=len(c.neuron_id), columns=CONCEPT_COLUMNS, **fields),
    )


@router.delete(
    "/spaces/{space_id}",
    response_model=RemovedOut,
    responses=REMOVE_RESPONSES,
    summary="Remove a space and its computed snapshots",
)
def delete_space(space_id: SpaceId, db: DbDep, data_dir: DataDirDep) -> RemovedOut:
    """Remove the space, every snapshot computed in it (neuron states, points) and the patches (rows and files)
    of snapshots no other space computes, in one transaction. Refused (409) while a queued or running job
    computes in it or rebuilds it."""
    return remove_object(db, data_dir, "space", space_id)
