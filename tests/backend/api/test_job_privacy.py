"""What job answers show to anyone who can read the API (issue 11, item 4): no absolute path of the server's disk
(paths relative to the data folder instead), no worker hostname or PID (an opaque, stable worker name instead)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from backend.store import queue

from .conftest import World

WORKER = "gpu-box-07.lab.example.org:31337:a1b2c3"


def _running(world: World, kind: str, params: dict, worker: str = WORKER) -> int:
    job, _ = queue.enqueue(world.store, kind, params, priority=999)
    claimed = queue.claim(world.store, worker, kinds=[kind])
    assert claimed is not None and claimed.id == job.id
    return job.id


def _hides_the_host(text: str) -> None:
    assert "gpu-box-07" not in text and "31337" not in text and "a1b2c3" not in text, text


def test_failed_job_shows_paths_relative_to_the_data_folder(client: TestClient, world: World) -> None:
    job_id = _running(world, "privacy_check", {"case": "paths"})
    inside = world.data_dir / "demo" / "runs" / "healthy" / "epoch_001.pt"
    error = (
        f"checkpoint {inside} is corrupt (truncated); also tried /home/alice/private/runs/x/epoch_001.pt and "
        f"{world.data_dir}/patches/s3"
    )
    assert queue.fail(world.store, job_id, WORKER, error, retry=False)
    body = client.get(f"/api/jobs/{job_id}").json()
    assert body["error"] == (
        "checkpoint demo/runs/healthy/epoch_001.pt is corrupt (truncated); also tried …/epoch_001.pt "
        "and patches/s3"
    )
    assert body["message"] == body["error"]
    listed = [j for j in client.get("/api/jobs?status=failed").json() if j["id"] == job_id]
    assert listed == [body]
    for text in (body["error"], body["message"]):
        assert str(world.data_dir) not in text and "/home/alice" not in text
    # the store (and so the CLI and the server log) keeps the whole text
    assert queue.get_job(world.store, job_id).error == error


def test_worker_ids_are_opaque_and_stable(client: TestClient, world: World) -> None:
    job_id = _running(world, "privacy_check", {"case": "worker"})
    assert queue.heartbeat(world.store, job_id, WORKER, progress=0.5, message="stimuli 2/4")
    first = client.get(f"/api/jobs/{job_id}").json()
    assert re.fullmatch(r"worker-[0-9a-f]{8}", first["worker_id"]), first["worker_id"]
    assert client.get(f"/api/jobs/{job_id}").json()["worker_id"] == first["worker_id"]
    _hides_the_host(str(first))
    # another worker gets another name; the same worker the same name on every job
    other = _running(world, "privacy_check", {"case": "other"}, worker="other-host:1:ffffff")
    assert client.get(f"/api/jobs/{other}").json()["worker_id"] != first["worker_id"]
    again = _running(world, "privacy_check", {"case": "again"})
    assert client.get(f"/api/jobs/{again}").json()["worker_id"] == first["worker_id"]
    # messages that name a worker (a release, a lost lease) name it the same opaque way
    assert queue.release(world.store, job_id, WORKER)
    released = client.get(f"/api/jobs/{job_id}").json()
    assert released["message"] == f"released by worker {first['worker_id']}"
    for ident in (job_id, other, again):
        queue.cancel(world.store, ident)
