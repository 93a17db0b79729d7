"""Job parameters through the one spec (``backend.store.jobspec``): canonical form, every worker parameter, and the
validation the OpenAPI schema announces (issue 11, items 7 and 12)."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _cancel(client: TestClient, *job_ids: int) -> None:
    for job_id in job_ids:
        assert client.delete(f"/api/jobs/{job_id}").status_code == 200


def test_params_are_stored_canonical_and_deduplicated(client: TestClient) -> None:
    """Item 12: classes sorted and deduplicated, defaults filled in; the same request spelled differently is the
    same job (one row)."""
    first = client.post(
        "/api/jobs",
        json={
            "kind": "importance",
            "params": {"run_id": 2, "epoch_from": 0, "epoch_to": 1, "classes": [2, 0, 2]},
        },
    )
    assert first.status_code == 201, first.text
    assert first.json()["params"] == {
        "run_id": 2,
        "epoch_from": 0,
        "epoch_to": 1,
        "classes": [0, 2],
        "images": 128,
        "seed": 0,
    }
    for spelled in (
        {"classes": [0, 2]},
        {"classes": [2, 0], "images": 128},
        {"classes": [0, 0, 2], "seed": 0},
    ):
        again = client.post(
            "/api/jobs",
            json={"kind": "importance", "params": {"run_id": 2, "epoch_from": 0, "epoch_to": 1, **spelled}},
        )
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"]), spelled
    _cancel(client, first.json()["id"])


def test_api_sends_every_parameter_the_worker_accepts(client: TestClient) -> None:
    """Item 12: lr, negatives, batch_size (build_space), images and seed (importance), reps (revert_eval)."""
    space = client.post(
        "/api/jobs",
        json={
            "kind": "build_space",
            "params": {"base_snapshot_id": 2, "name": "tuned", "lr": 0.1, "negatives": 5, "batch_size": 32},
        },
    )
    assert space.status_code == 201, space.text
    assert space.json()["params"] == {
        "base_snapshot_id": 2,
        "name": "tuned",
        "k": 10,
        "dim": 30,
        "epochs": 2000,
        "lr": 0.1,
        "negatives": 5,
        "seed": 0,
        "batch_size": 32,
    }
    evolution = {"run_id": 1, "epoch_from": 0, "epoch_to": 1, "classes": [1], "images": 16, "seed": 3}
    importance = client.post("/api/jobs", json={"kind": "importance", "params": evolution})
    assert importance.status_code == 201, importance.text
    assert importance.json()["params"] == evolution
    revert = client.post("/api/jobs", json={"kind": "revert_eval", "params": {**evolution, "reps": 2}})
    assert revert.status_code == 201, revert.text
    assert revert.json()["params"] == {**evolution, "reps": 2}
    _cancel(client, space.json()["id"], importance.json()["id"], revert.json()["id"])


def test_compute_runs_repeated_a_thousand_times_is_one_run(client: TestClient) -> None:
    """Item 7: the same run 1,000 times in ``compute_runs`` is that run once."""
    r = client.post(
        "/api/jobs",
        json={"kind": "build_space", "params": {"base_snapshot_id": 1, "compute_runs": [2, 1] * 500}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["params"]["compute_runs"] == [1, 2]
    _cancel(client, r.json()["id"])


def test_an_evolution_that_goes_nowhere_is_a_documented_404(client: TestClient) -> None:
    """Item 7: ``epoch_from >= epoch_to`` passes the schema, so its answer is one the schema announces (404: no
    such evolution), not an unannounced 422."""
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/api/jobs"]["post"]["responses"]
    assert "epoch_from" in responses["404"]["description"]
    for kind in ("importance", "revert_eval"):
        for start, end in ((1, 1), (2, 1)):
            r = client.post(
                "/api/jobs",
                json={"kind": kind, "params": {"run_id": 1, "epoch_from": start, "epoch_to": end}},
            )
            assert (r.status_code, r.json()) == (
                404,
                {
                    "detail": f"run 1 has no evolution from epoch {start} to epoch {end}: epoch_from must be earlier "
                    "than epoch_to"
                },
            )


def test_invalid_json_gets_the_status_the_schema_announces(client: TestClient) -> None:
    """Item 7: the schema said 400 for a body that is not JSON, the server answered 422. Now each malformed body
    gets the status the schema gives for it: 422 for text that is not JSON, 400 for bytes that are not text."""
    documented = client.get("/openapi.json").json()["paths"]["/api/jobs"]["post"]["responses"]
    for body, status, words in ((b'{"kind": "demo",', 422, "Not JSON"), (b"\x06\xff", 400, "not UTF-8")):
        r = client.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == status, (body, r.status_code, r.text)
        assert words in documented[str(status)]["description"]


def test_integral_numbers_are_integers(client: TestClient) -> None:
    """Item 7: JSON Schema's ``integer`` includes ``2.0``; the server takes it as 2 (and still refuses 2.5, "2")."""
    r = client.post(
        "/api/jobs",
        json={
            "kind": "add_snapshot",
            "params": {"space_id": 1.0, "snapshot_id": 2.0, "force": True},
            "priority": 3.0,
        },
    )
    assert r.status_code == 201, r.text
    assert (r.json()["params"], r.json()["priority"]) == ({"space_id": 1, "snapshot_id": 2, "force": True}, 3)
    for params in (
        {"space_id": 1.5, "snapshot_id": 2},
        {"space_id": "1", "snapshot_id": 2},
        {"space_id": True, "snapshot_id": 2},
    ):
        assert client.post("/api/jobs", json={"kind": "add_snapshot", "params": params}).status_code == 422, (
            params
        )
    _cancel(client, r.json()["id"])


def test_delete_removes_the_job(client: TestClient, world) -> None:
    """Item 7: after a successful ``DELETE /api/jobs/{id}`` the job is gone (404), as the method says; cancelling
    (``POST …/cancel``, what the page uses) keeps it listed."""
    from backend.store import queue

    body = {
        "kind": "add_snapshot",
        "params": {"space_id": 1, "snapshot_id": 3, "force": True},
    }  # computed: force
    job = client.post("/api/jobs", json=body).json()
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"
    removed = client.delete(f"/api/jobs/{job['id']}")
    assert (removed.status_code, removed.json()["id"], removed.json()["status"]) == (
        200,
        job["id"],
        "cancelled",
    )
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 404
    assert job["id"] not in [j["id"] for j in client.get("/api/jobs").json()]
    # an active job is cancelled as it goes: its worker loses it at its next heartbeat
    active = client.post("/api/jobs", json=body).json()
    claimed = queue.claim(world.store, "w", kinds=["add_snapshot"])
    assert claimed is not None and claimed.id == active["id"]
    assert client.delete(f"/api/jobs/{active['id']}").json()["status"] == "cancelled"
    assert not queue.heartbeat(world.store, active["id"], "w")
    assert client.get(f"/api/jobs/{active['id']}").status_code == 404
