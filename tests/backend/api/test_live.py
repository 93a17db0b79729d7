"""``GET /api/alerts``, ``GET /api/live`` and the ``GET /api/events`` stream (issue 16), on a small synthetic world
of this module's own (the stream test removes and re-adds a placement, which the shared world must not see)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import SpaceSnapshot, open_store, utcnow
from backend.store.alerts import beat, record_alert
from tests.fixtures.synthetic import build_synthetic_store


@pytest.fixture(scope="module")
def live_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, object, object]]:
    root = tmp_path_factory.mktemp("live-world")
    store = open_store(str(root / "db.sqlite"))
    ids = build_synthetic_store(store, n_neurons=8, n_epochs=2, n_runs=2, data_dir=root / "data")
    app = create_app(store, Settings(data_dir=root / "data", frontend_dist=root / "no-dist"))
    with TestClient(app) as client:
        yield client, store, ids
    store.dispose()


def _run_ids(store) -> list[int]:
    from backend.store import list_runs

    with store.session(readonly=True) as s:
        return [run.id for run in list_runs(s)]


def test_alerts_and_live_runs(live_world) -> None:
    client, store, _ids = live_world
    run_a, run_b = _run_ids(store)[:2]
    with store.session() as s:
        space_id = s.scalars(select(SpaceSnapshot.space_id)).first()
        _, created = record_alert(s, run_b, space_id, "diversity", "band", 2, "Diversity fell.", run_a, 4)
        assert created
        _, created = record_alert(
            s, run_b, space_id, "diversity", "band", 1, "Diversity fell earlier.", run_a, 4
        )
        assert not created  # one alert per (run, space, metric, rule), refreshed
        beat(s, run_b, "tracker")
    alerts = client.get("/api/alerts").json()
    assert [(a["run_id"], a["start_epoch"], a["lead"], a["reason"]) for a in alerts] == [
        (run_b, 1, 3, "Diversity fell earlier.")
    ]
    assert client.get(f"/api/alerts?run_id={run_a}").json() == []
    assert client.get("/api/alerts?run_id=999999").status_code == 404
    assert [r["run_id"] for r in client.get("/api/live").json()["runs"]] == [run_b]
    with store.session() as s:
        beat(s, run_b, "tracker", ended=True)
    assert client.get("/api/live").json()["runs"] == []


def _events(client: TestClient, url: str, out: list[tuple[str, dict]], ready: threading.Event) -> None:
    with client.stream("GET", url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("retry:"):
                ready.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                out.append((event, json.loads(line[6:])))


def test_event_stream_reports_new_epochs_alerts_and_live_runs(live_world) -> None:
    client, store, _ids = live_world
    run_a = _run_ids(store)[0]
    with store.session() as s:  # take one placement away; it comes back while the page listens
        row = s.scalars(select(SpaceSnapshot)).first()
        key = (row.space_id, row.snapshot_id)
        s.execute(
            delete(SpaceSnapshot).where(SpaceSnapshot.space_id == key[0], SpaceSnapshot.snapshot_id == key[1])
        )
    seen: list[tuple[str, dict]] = []
    ready = threading.Event()
    listener = threading.Thread(target=_events, args=(client, "/api/events?timeout=4", seen, ready))
    listener.start()
    assert ready.wait(10)
    time.sleep(1.2)  # past the first poll, which only records the state
    with store.session() as s:
        s.add(
            SpaceSnapshot(space_id=key[0], snapshot_id=key[1], points=b"", n_points=0, computed_at=utcnow())
        )
        record_alert(s, run_a, key[0], "diversity", "drop", 1, "Diversity dropped fast.")
        beat(s, run_a, "watch")
    listener.join(timeout=15)
    kinds = [event for event, _ in seen]
    assert ("snapshot", key) in [(e, (d.get("space_id"), d.get("snapshot_id"))) for e, d in seen], seen
    assert kinds.count("snapshot") == 1, seen  # the others were placed before the stream began
    assert any(e == "alert" and d["reason"] == "Diversity dropped fast." for e, d in seen), seen
    assert ("live", {"runs": [run_a]}) in seen, seen

    resumed: list[tuple[str, dict]] = []
    since = (utcnow().replace(microsecond=0)).isoformat()
    _events(client, f"/api/events?timeout=1&since={since}", resumed, threading.Event())
    assert [e for e, _ in resumed if e == "snapshot"] == []  # nothing placed after the cursor
