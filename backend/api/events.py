"""``GET /api/events``: server-sent events for the page while runs train and jobs run (issue 16).

The server polls the store about once a second per open stream (three small indexed queries) and sends what
changed: ``snapshot`` (an epoch placed in a space), ``job`` (a job's status or progress moved), ``alert`` (an
alarm raised or refreshed) and ``live`` (the set of runs still training changed). Every event carries an
``id:`` cursor; a reconnecting ``EventSource`` sends it back as ``Last-Event-ID`` and misses nothing. Rows are
read back over a short overlap window and de-duplicated, so a transaction that commits a little after the time
it stamped is still seen. A stream closes after ``timeout`` seconds (the browser reconnects by itself), which
keeps idle connections from piling up and lets the server shut down promptly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from backend.store import alerts, utcnow

from .alerts import alert_out
from .db import Db
from .deps import DbDep

router = APIRouter(tags=["live"])

#: Rows stamped up to this long before the cursor are read again (commit delay tolerated).
OVERLAP = timedelta(seconds=30)
#: Seconds between polls of the store, and between keep-alive comments.
POLL_S = 1.0
PING_S = 15.0


@dataclass
class _Feed:
    """One stream's memory: what it has already sent, and its cursor."""

    cursor: datetime
    placed: set[tuple[int, int]] = field(default_factory=set)
    jobs: dict[int, tuple[str, float, str]] = field(default_factory=dict)
    alerts: dict[int, datetime] = field(default_factory=dict)
    live: frozenset[int] | None = None


def _parse_cursor(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return None  # a foreign or damaged id: start from now, as a fresh client


def _changes(session: Session, feed: _Feed, announce: bool) -> list[tuple[str, dict[str, Any]]]:
    """What changed since the feed's cursor, as ``(event, data)``; ``announce=False`` only records the state."""
    since = feed.cursor - OVERLAP
    out: list[tuple[str, dict[str, Any]]] = []
    newest = feed.cursor
    for p in alerts.placed_since(session, since):
        key = (p.space_id, p.snapshot_id)
        if key in feed.placed:
            continue
        feed.placed.add(key)
        newest = max(newest, p.computed_at)
        if announce or p.computed_at > feed.cursor:
            out.append(
                (
                    "snapshot",
                    {
                        "space_id": p.space_id,
                        "snapshot_id": p.snapshot_id,
                        "run_id": p.run_id,
                        "epoch": p.epoch,
                    },
                )
            )
    for j in alerts.jobs_touched_since(session, since):
        state = (j.status, round(j.progress, 2), j.message)
        if feed.jobs.get(j.id) != state:
            known = j.id in feed.jobs
            feed.jobs[j.id] = state
            if announce or known:
                out.append(
                    (
                        "job",
                        {
                            "id": j.id,
                            "kind": j.kind,
                            "status": j.status,
                            "progress": j.progress,
                            "message": j.message,
                        },
                    )
                )
    for a in alerts.alerts_changed_since(session, since):
        if feed.alerts.get(a.id) == a.updated_at:
            continue
        feed.alerts[a.id] = a.updated_at
        newest = max(newest, a.updated_at)
        if announce or a.updated_at > feed.cursor:
            out.append(("alert", alert_out(a).model_dump(mode="json")))
    live = frozenset(alerts.live_runs(session))
    if live != feed.live:
        feed.live = live
        out.append(("live", {"runs": sorted(live)}))
    feed.cursor = max(newest, utcnow() - OVERLAP)
    return out


def _format(event: str, data: dict[str, Any], cursor: datetime) -> str:
    return f"id: {cursor.isoformat()}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(request: Request, db: Db, start: datetime | None, timeout: float) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # The first poll only records the state, announcing what is newer than the cursor: a resuming client gets
    # what it missed, a fresh one only what happens from now on (and the live runs).
    feed = _Feed(cursor=start or utcnow())
    first = True
    yield "retry: 2000\n\n"
    last_ping = loop.time()
    while loop.time() < deadline:
        if await request.is_disconnected():
            return
        events = await asyncio.to_thread(db.read, partial(_changes, feed=feed, announce=not first))
        first = False
        for event, data in events:
            yield _format(event, data, feed.cursor)
        if not events and loop.time() - last_ping >= PING_S:
            last_ping = loop.time()
            yield ": ping\n\n"
        await asyncio.sleep(POLL_S)


@router.get(
    "/events",
    summary="Server-sent events: new epochs, job progress, alerts, live runs",
    response_class=StreamingResponse,
    # Left out of the OpenAPI document: a stream that stays open is no request/response operation for clients
    # generated from it (nor for the schema fuzzers); the README documents it.
    include_in_schema=False,
)
async def events(
    request: Request,
    db: DbDep,
    timeout: Annotated[
        float, Query(ge=1, le=3600, description="Seconds before the server closes the stream.")
    ] = 300,
    since: Annotated[
        str | None, Query(max_length=64, description="Resume after this cursor (an event's `id`).")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """A `text/event-stream` of `snapshot`, `job`, `alert` and `live` events (JSON data, `id:` cursors).

    Without a cursor the stream starts from now; with `Last-Event-ID` (sent by a reconnecting `EventSource`) or
    `since`, it first replays what changed after that cursor."""
    start = _parse_cursor(last_event_id or since)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _stream(request, db, start, timeout), media_type="text/event-stream", headers=headers
    )
