"""``DELETE /api/runs/{id}``, ``/api/datasets/{id}``, ``/api/spaces/{id}`` (issue 12, item 7): the write token,
409 while a job uses the object or another depends on it, 404 after, and nothing of it left to read."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import open_store
from backend.store.jobspec import ImportanceParams, enqueue_job
from tests.fixtures.synthetic import build_synthetic_store

AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture
def api(tmp_path: Path):
    """A server with a write token on its own small world (2 runs × 2 epochs in one space, patch files)."""
    data = tmp_path / "data"
    store = open_store(str(tmp_path / "db.sqlite"))
    ids = build_synthetic_store(store, n_neurons=6, n_epochs=2, n_runs=2, data_dir=data, n_images=12)
    app = create_app(store, Settings(data_dir=data, frontend_dist=tmp_path / "no-dist", token="s3cret"))
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client, store, ids, data
    store.dispose()


def test_delete_needs_the_token(api) -> None:
    client, _, ids, _ = api
    for url in (
        f"/api/runs/{ids.run_ids[1]}",
        f"/api/spaces/{ids.space_id}",
        f"/api/datasets/{ids.dataset_id}",
    ):
        assert client.delete(url).status_code == 401, url
        assert client.delete(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
    assert client.get(f"/api/runs/{ids.run_ids[1]}").status_code == 200


def test_delete_refuses_then_removes_everything(api) -> None:
    client, store, ids, data = api
    space, run0, run1, dataset = ids.space_id, ids.run_ids[0], ids.run_ids[1], ids.dataset_id
    points = f"/api/spaces/{space}/snapshots/{ids.snapshot_ids[1][1]}/points"
    assert client.get(points).status_code == 200
    # dependants first: a dataset used by runs, a run that a space is built on
    refused = client.delete(f"/api/datasets/{dataset}", headers=AUTH)
    assert refused.status_code == 409 and "remove them first" in refused.json()["detail"]
    refused = client.delete(f"/api/runs/{run0}", headers=AUTH)
    assert refused.status_code == 409 and "remove the space first" in refused.json()["detail"]
    # a queued job that reads run-1
    job, _ = enqueue_job(store, ImportanceParams(run_id=run1, epoch_from=0, epoch_to=1, force=True))
    refused = client.delete(f"/api/runs/{run1}", headers=AUTH)
    assert refused.status_code == 409 and f"in use by job {job.id}" in refused.json()["detail"]
    client.post(f"/api/jobs/{job.id}/cancel", headers=AUTH)

    removed = client.delete(f"/api/runs/{run1}", headers=AUTH)
    assert removed.status_code == 200, removed.text
    body = removed.json()
    assert (body["kind"], body["id"], body["name"], body["rows"]["snapshots"]) == ("run", run1, "run-1", 2)
    assert body["files"] == 2 * 6  # 2 epochs × 6 neurons, one sprite file each
    assert client.get(f"/api/runs/{run1}").status_code == 404
    assert client.get(points).status_code == 404
    assert [r["id"] for r in client.get("/api/runs").json()] == [run0]

    removed = client.delete(f"/api/spaces/{space}", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["rows"]["spaces"] == 1
    assert client.get(f"/api/spaces/{space}").status_code == 404 and client.get("/api/spaces").json() == []
    assert client.delete(f"/api/spaces/{space}", headers=AUTH).status_code == 404
    assert client.delete(f"/api/runs/{run0}", headers=AUTH).status_code == 200
    assert client.delete(f"/api/datasets/{dataset}", headers=AUTH).json()["rows"] == {
        "images": 12,
        "datasets": 1,
    }
    assert client.get("/api/datasets").json() == []
    assert not list(data.rglob("*.png"))
