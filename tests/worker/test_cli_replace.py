"""Issue 12, items 5–7 at the door: ``compute`` right after ``build-space`` waits for the space; an existing space
needs ``--replace``; results that exist queue nothing without ``--force``; ``rm`` removes or refuses in one line.
The CLI (in-process, ``worker.cli.run``) and the API (``POST /api/jobs``) share one store and agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import list_jobs, open_store, queue
from backend.store.models import Job
from tests.fixtures.synthetic import build_synthetic_store
from worker import runner
from worker.cli import run as cli_run
from worker.jobs.space_ref import space_for_job


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs ``run-0``, ``run-1`` (epochs 0–2, all computed in ``synthetic-space``, importance 0 → 2 for every
    class), used by the CLI through ``$CONCEPTEVO_DB`` and by an API client."""
    db = tmp_path / "conceptevo.db"
    monkeypatch.setenv("CONCEPTEVO_DB", str(db))
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path))
    store = open_store(str(db))
    build_synthetic_store(store, n_neurons=6, n_epochs=3, n_runs=2, data_dir=tmp_path)
    app = create_app(store, Settings(data_dir=tmp_path, frontend_dist=tmp_path / "no-dist"))
    with TestClient(app) as client:
        yield store, client
    store.dispose()


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``conceptevo ARGS`` in-process: ``(exit status, stdout, stderr)``."""
    capsys.readouterr()
    status = cli_run(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def one_line_error(status: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), (status, err)
    return lines[0]


def test_build_space_on_an_existing_name_needs_replace(world, capsys) -> None:
    store, client = world
    status, _, err = cli(capsys, "build-space", "--base", "run-0@1", "--name", "synthetic-space")
    assert "--replace" in one_line_error(status, err) and list_jobs(store) == []
    status, out, _ = cli(capsys, "build-space", "--base", "run-0@1", "--name", "synthetic-space", "--replace")
    assert status == 0 and "queued" in out
    (job,) = list_jobs(store)
    assert job.params["replace"] is True and job.params["name"] == "synthetic-space"
    # the API: the same refusal without "replace", the same job with it
    body = {"kind": "build_space", "params": {"base_snapshot_id": 2, "name": "synthetic-space"}}
    refused = client.post("/api/jobs", json=body)
    assert refused.status_code == 409 and "--replace" in refused.json()["detail"]
    body["params"]["replace"] = True
    assert (client.post("/api/jobs", json=body).status_code, len(list_jobs(store))) == (200, 1)
    # another build of that name with other parameters is refused while this one is active
    status, _, err = cli(capsys, "build-space", "--base", "run-0@2", "--name", "synthetic-space", "--replace")
    assert f"already being built by job {job.id}" in one_line_error(status, err)


def test_existing_results_queue_nothing_without_force(world, capsys) -> None:
    store, client = world
    status, out, _ = cli(capsys, "compute", "run-1", "--space", "synthetic-space", "--epochs", "0-1")
    assert status == 0 and out.count("already computed in space 'synthetic-space'; nothing queued") == 2
    status, out, _ = cli(capsys, "importance", "run-1", "--from", "0", "--to", "2")
    assert status == 0 and "already computed for every class; nothing queued" in out
    assert list_jobs(store) == []
    add = {"kind": "add_snapshot", "params": {"space_id": 1, "snapshot_id": 4}}
    assert client.post("/api/jobs", json=add).status_code == 409
    # --force (API: "force": true) queues them, as the same jobs
    assert cli(capsys, "compute", "run-1", "--space", "synthetic-space", "--epochs", "0", "--force")[0] == 0
    assert cli(capsys, "importance", "run-1", "--from", "0", "--to", "2", "--force")[0] == 0
    assert len(list_jobs(store)) == 2
    add["params"]["force"] = True
    assert client.post("/api/jobs", json=add).status_code == 200
    # an importance not computed yet for one of the classes asked is queued without --force
    status, out, _ = cli(capsys, "importance", "run-1", "--from", "1", "--to", "2", "--classes", "0")
    assert status == 0 and "queued" in out and len(list_jobs(store)) == 3


def test_compute_right_after_build_space_waits_for_the_space(world, capsys, monkeypatch) -> None:
    store, client = world
    assert cli(capsys, "build-space", "--base", "run-0@1", "--name", "fresh")[0] == 0
    (build,) = list_jobs(store)
    status, out, _ = cli(capsys, "compute", "run-1", "--space", "fresh", "--epochs", "2")
    assert status == 0, out
    assert (
        out.splitlines()[0]
        == f"space 'fresh' is not built yet: these jobs wait for its build job {build.id} (queued)"
    )
    (waiting,) = [job for job in list_jobs(store) if job.kind == "add_snapshot"]
    assert waiting.params == {"space_name": "fresh", "snapshot_id": 6}
    # the API takes the same request by name (same job), and refuses a name nothing builds
    same = {"kind": "add_snapshot", "params": {"space_name": "fresh", "snapshot_id": 6}}
    assert client.post("/api/jobs", json=same).json()["id"] == waiting.id
    missing = client.post(
        "/api/jobs", json={"kind": "add_snapshot", "params": {"space_name": "nope", "snapshot_id": 6}}
    )
    assert missing.status_code == 404 and "no job building it" in missing.json()["detail"]
    both = {"kind": "add_snapshot", "params": {"space_id": 1, "space_name": "fresh", "snapshot_id": 6}}
    assert client.post("/api/jobs", json=both).status_code == 422
    status, _, err = cli(capsys, "compute", "run-1", "--space", "nope")
    assert "no space 'nope'" in one_line_error(status, err)

    # The worker defers the job while the build job lives — patiently: the usual deferral limit does not apply …
    monkeypatch.setattr(runner, "MAX_DEFERRALS", 0)
    handlers = {"add_snapshot": _resolve_space_only}
    runner.run_worker(
        store, device="cpu", once=True, kinds=["add_snapshot"], handlers=handlers, install_signals=False
    )
    deferred = queue.get_job(store, waiting.id)
    assert (deferred.status, deferred.deferrals) == ("queued", 1)
    assert f"waiting: space 'fresh' is being built by job {build.id} (queued)" in deferred.message
    # … and fails at once, saying why, when no build job is left
    queue.cancel(store, build.id)
    with store.session() as s:
        s.execute(update(Job).where(Job.id == waiting.id).values(not_before=None))
    runner.run_worker(
        store, device="cpu", once=True, kinds=["add_snapshot"], handlers=handlers, install_signals=False
    )
    failed = queue.get_job(store, waiting.id)
    assert failed.status == "failed" and "no build job for it is queued or running any more" in failed.error


def _resolve_space_only(ctx: runner.JobContext) -> None:
    """The first step of the ``add_snapshot`` handler (which space), without the torch work after it."""
    from backend.store.jobspec import AddSnapshotParams

    with ctx.store.session(readonly=True) as session:
        space_for_job(session, AddSnapshotParams.model_validate(ctx.job.params))
    raise AssertionError("the space does not exist: space_for_job must defer or fail")


def test_rm_removes_or_refuses_in_one_line(world, capsys) -> None:
    store, _ = world
    status, _, err = cli(capsys, "rm", "run", "run-0")
    assert "is the base of space 'synthetic-space'" in one_line_error(status, err)
    status, _, err = cli(capsys, "rm", "table", "x")
    assert "rm run|dataset|space NAME" in one_line_error(status, err)
    status, _, err = cli(capsys, "rm", "space", "nope")
    assert "no space named 'nope'" in one_line_error(status, err)
    assert cli(capsys, "importance", "run-1", "--from", "0", "--to", "1")[0] == 0
    status, _, err = cli(capsys, "rm", "run", "run-1")
    assert "in use by job" in one_line_error(status, err)
    status, out, _ = cli(capsys, "rm", "space", "synthetic-space")
    assert status == 0 and out.startswith("removed space 'synthetic-space' (id 1): ")
    status, _, err = cli(capsys, "rm", "dataset", "synthetic")
    assert "used by run(s) 'run-0', 'run-1'" in one_line_error(status, err)
