"""Jobs: validated creation, dedupe (200 with the existing job), list, get, cancel, retry, progress fields."""

from __future__ import annotations

from fastapi.testclient import TestClient

from backend.api.redact import worker_name
from backend.store import queue

from .conftest import World

FIELDS = {
    "id", "kind", "params", "status", "priority", "attempts", "max_attempts", "progress", "message",
    "worker_id", "created_at", "started_at", "heartbeat_at", "finished_at", "error", "result",
}  # fmt: skip


def test_create_dedupe_get_list_cancel(client: TestClient) -> None:
    body = {"kind": "importance", "params": {"run_id": 1, "epoch_from": 0, "epoch_to": 1, "classes": [2, 0]}}
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 201
    job = r.json()
    assert set(job) == FIELDS
    assert {k: job[k] for k in FIELDS - {"id", "created_at"}} == {
        "kind": "importance",
        # the canonical form (backend.store.jobspec): classes ascending, defaults filled in
        "params": {"run_id": 1, "epoch_from": 0, "epoch_to": 1, "classes": [0, 2], "images": 128, "seed": 0},
        "status": "queued",
        "priority": 0,
        "attempts": 0,
        "max_attempts": 3,
        "progress": 0.0,
        "message": "queued",
        "worker_id": None,
        "started_at": None,
        "heartbeat_at": None,
        "finished_at": None,
        "error": None,
        "result": None,
    }
    assert r.headers["location"] == f"/api/jobs/{job['id']}"
    again = client.post("/api/jobs", json={**body, "priority": 5})
    assert again.status_code == 200
    assert again.json()["id"] == job["id"] and again.json()["priority"] == 5
    assert client.get(f"/api/jobs/{job['id']}").json() == again.json()
    listed = client.get("/api/jobs?status=queued&kind=importance").json()
    assert job["id"] in [j["id"] for j in listed]
    assert all(j["status"] == "queued" and j["kind"] == "importance" for j in listed)
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job['id']}/cancel").json()["status"] == "cancelled"  # idempotent
    # after cancellation an identical request is a new job
    fresh = client.post("/api/jobs", json=body)
    assert fresh.status_code == 201 and fresh.json()["id"] != job["id"]
    assert client.post(f"/api/jobs/{job['id']}/retry").status_code == 409  # identical job active
    assert client.post(f"/api/jobs/{fresh.json()['id']}/cancel").status_code == 200
    retried = client.post(f"/api/jobs/{job['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    client.delete(f"/api/jobs/{job['id']}")


def test_progress_and_done_job(client: TestClient, world: World) -> None:
    r = client.post(
        "/api/jobs", json={"kind": "build_space", "params": {"base_snapshot_id": 3, "name": "other", "k": 5}}
    )
    assert r.status_code == 201
    job_id = r.json()["id"]
    claimed = None
    while claimed is None or claimed.id != job_id:  # other tests' jobs may be older: take them too
        claimed = queue.claim(world.store, "test-worker", kinds=["build_space"])
        assert claimed is not None
        if claimed.id != job_id:
            queue.cancel(world.store, claimed.id)
    assert queue.heartbeat(world.store, job_id, "test-worker", progress=0.25, message="stimuli 1/4")
    running = client.get(f"/api/jobs/{job_id}").json()
    assert (
        running["status"],
        running["progress"],
        running["message"],
        running["worker_id"],
        running["attempts"],
    ) == (
        "running",
        0.25,
        "stimuli 1/4",
        worker_name("test-worker"),  # opaque in answers: no host or PID (issue 11, item 4)
        1,
    )
    queue.finish(world.store, job_id, "test-worker", result={"neurons": 24})
    done = client.get(f"/api/jobs/{job_id}").json()
    assert (done["status"], done["progress"], done["result"]) == ("done", 1.0, {"neurons": 24})
    r = client.post(f"/api/jobs/{job_id}/cancel")
    assert (r.status_code, r.json()) == (
        409,
        {"detail": f"job {job_id} cannot be cancelled: it is already done"},
    )
    # DELETE removes it, whatever its state (issue 11, item 7: after a DELETE the job is gone)
    assert client.delete(f"/api/jobs/{job_id}").json()["status"] == "done"
    assert client.get(f"/api/jobs/{job_id}").status_code == 404


def test_validation(client: TestClient) -> None:
    bad = [
        {"kind": "mine_bitcoin", "params": {}},
        {"kind": "demo", "params": {"x": 1}},
        {"kind": "add_snapshot", "params": {"space_id": 1}},
        {"kind": "add_snapshot", "params": {"space_id": "one", "snapshot_id": 2}},
        {"kind": "importance", "params": {"run_id": 1, "epoch_from": 0, "epoch_to": 2, "classes": []}},
        {"kind": "build_space", "params": {"base_snapshot_id": 3, "name": "../../etc"}},
        {"kind": "demo", "params": {}, "priority": 10**9},
        {"kind": "demo", "params": {}, "extra": True},
        {"kind": "demo", "params": []},
    ]
    for body in bad:
        r = client.post("/api/jobs", json=body)
        assert r.status_code == 422, body
    refs = [
        ({"kind": "add_snapshot", "params": {"space_id": 9, "snapshot_id": 2}}, "space 9 not found"),
        ({"kind": "add_snapshot", "params": {"space_id": 1, "snapshot_id": 99}}, "snapshot 99 not found"),
        ({"kind": "build_space", "params": {"base_snapshot_id": 99}}, "snapshot 99 not found"),
        ({"kind": "importance", "params": {"run_id": 7, "epoch_from": 0, "epoch_to": 1}}, "run 7 not found"),
        ({"kind": "importance", "params": {"run_id": 1, "epoch_from": 0, "epoch_to": 5}},
         "run 1 has no snapshot at epoch 5"),
        ({"kind": "revert_eval", "params": {"run_id": 1, "epoch_from": 0, "epoch_to": 1, "classes": [3]}},
         "class 3 not found: run 1 has 3 classes"),
    ]  # fmt: skip
    for body, message in refs:
        r = client.post("/api/jobs", json=body)
        assert (r.status_code, r.json()) == (404, {"detail": message}), body
    taken = {"kind": "build_space", "params": {"base_snapshot_id": 3, "name": "synthetic-space"}}
    assert client.post("/api/jobs", json=taken).json() == {
        "detail": "a space named 'synthetic-space' already exists; rebuild it with --replace (API: "
        "\"replace\": true) or remove it first (conceptevo rm space 'synthetic-space')"
    }
    assert client.post("/api/jobs", json=taken).status_code == 409
    assert client.post("/api/jobs", json={"kind": "demo", "priority": True}).status_code == 422
    assert (
        client.post(
            "/api/jobs", json={"kind": "add_snapshot", "params": {"space_id": "1", "snapshot_id": 2}}
        ).status_code
        == 422
    )
    assert client.get("/api/jobs/999999").json() == {"detail": "job 999999 not found"}
    assert client.delete("/api/jobs/999999").status_code == 404


def test_demo_params_are_the_workers_with_defaults_filled_in(client: TestClient) -> None:
    """``size`` and ``seed`` reach the job always spelled out, as ``conceptevo demo`` queues them."""
    created = client.post("/api/jobs", json={"kind": "demo"})
    assert created.status_code == 201
    job = created.json()
    assert (job["kind"], job["params"], job["priority"]) == ("demo", {"size": "default", "seed": 0}, 0)
    same = client.post("/api/jobs", json={"kind": "demo", "params": {"size": "default", "seed": 0}})
    assert (same.status_code, same.json()["id"]) == (200, job["id"])
    small = client.post("/api/jobs", json={"kind": "demo", "params": {"size": "small", "seed": 7}})
    assert small.status_code == 201 and small.json()["params"] == {"size": "small", "seed": 7}
    for params in ({"size": "huge"}, {"seed": -1}, {"seed": "1"}, {"size": "small", "seed": 1.5}):
        assert client.post("/api/jobs", json={"kind": "demo", "params": params}).status_code == 422, params
    for job_id in (job["id"], small.json()["id"]):
        assert client.delete(f"/api/jobs/{job_id}").status_code == 200
