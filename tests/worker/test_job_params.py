"""One spec for job parameters (issue 11, item 12): the CLI, the API and the worker read them through the models
of ``backend.store.jobspec``, so the same request from the CLI and from the page is one job."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import list_jobs, open_store
from backend.store.jobspec import BuildSpaceParams
from tests.fixtures.synthetic import build_synthetic_store
from worker.cli import app as cli
from worker.errors import ConceptEvoError
from worker.jobs.common import job_params
from worker.pipeline import SpaceParams
from worker.runner import JobContext


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A synthetic store (runs ``run-0``, ``run-1`` with epochs 0–2, space ``synthetic-space``) that both the CLI
    (through ``$CONCEPTEVO_DB``) and an API client use."""
    db = tmp_path / "conceptevo.db"
    monkeypatch.setenv("CONCEPTEVO_DB", str(db))
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path))
    store = open_store(str(db))
    build_synthetic_store(store, n_neurons=6, n_epochs=3, n_runs=2)
    with TestClient(
        create_app(store, Settings(data_dir=tmp_path, frontend_dist=tmp_path / "no-dist"))
    ) as client:
        yield store, client
    store.dispose()


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_same_request_from_cli_and_api_is_one_job(world) -> None:
    store, client = world
    _cli("importance", "run-0", "--from", "0", "--to", "1", "--classes", "2,0", "--images", "32")
    _cli("build-space", "--base", "run-0@1", "--name", "again", "--compute", "run-1", "--compute", "run-0")
    _cli("compute", "run-1", "--space", "synthetic-space", "--epochs", "1", "--force")  # computed: --force
    before = {(job.kind, job.id) for job in list_jobs(store)}
    assert len(before) == 3
    same = [
        {
            "kind": "importance",
            "params": {"run_id": 1, "epoch_from": 0, "epoch_to": 1, "classes": [2, 0], "images": 32},
        },
        {
            "kind": "build_space",
            "params": {"base_snapshot_id": 2, "name": "again", "compute_runs": [1, 2, 1]},
        },
        {"kind": "add_snapshot", "params": {"space_id": 1, "snapshot_id": 5, "force": True}},
    ]
    for body in same:
        r = client.post("/api/jobs", json=body)
        assert r.status_code == 200, (body, r.status_code, r.json())
        assert (body["kind"], r.json()["id"]) in before
    assert {(job.kind, job.id) for job in list_jobs(store)} == before
    ((importance,),) = [[job for job in list_jobs(store) if job.kind == "importance"]]
    assert importance.params == {
        "run_id": 1,
        "epoch_from": 0,
        "epoch_to": 1,
        "classes": [0, 2],
        "images": 32,
        "seed": 0,
    }


def test_cli_sends_every_parameter_the_worker_accepts(world) -> None:
    store, _ = world
    _cli("build-space", "--base", "run-1@2", "--lr", "0.1", "--negatives", "4", "--batch-size", "16")
    _cli("importance", "run-1", "--from", "0", "--to", "1", "--seed", "7", "--revert", "--reps", "2")
    params = {job.kind: job.params for job in list_jobs(store)}
    assert (
        params["build_space"]["lr"],
        params["build_space"]["negatives"],
        params["build_space"]["batch_size"],
    ) == (
        0.1,
        4,
        16,
    )
    assert (params["importance"]["seed"], params["revert_eval"]["seed"], params["revert_eval"]["reps"]) == (
        7,
        7,
        2,
    )
    bad = CliRunner().invoke(cli, ["build-space", "--base", "run-1@2", "--k", "0"])
    assert isinstance(bad.exception, ConceptEvoError) and "build_space job: k" in str(bad.exception)


def test_worker_reads_params_through_the_spec() -> None:
    def ctx(kind: str, params: dict) -> JobContext:
        job = SimpleNamespace(id=1, kind=kind, params=params)
        return JobContext(store=None, job=job, worker_id="w", device="cpu", cache={}, stop=threading.Event())

    # a job queued before the spec filled in defaults reads with them
    spec = job_params(ctx("build_space", {"base_snapshot_id": 3, "compute_runs": [2, 1]}), BuildSpaceParams)
    assert (spec.k, spec.epochs, spec.compute_runs) == (10, 2000, [1, 2])
    for params, message in (
        ({"base_snapshot_id": 3, "kk": 5}, "build_space job: unknown parameter 'kk'"),
        ({}, "build_space job: parameter 'base_snapshot_id' is missing"),
        ({"base_snapshot_id": "3"}, "build_space job: base_snapshot_id: Input should be a valid integer"),
    ):
        with pytest.raises(ConceptEvoError, match=message):
            job_params(ctx("build_space", params), BuildSpaceParams)
    with pytest.raises(ConceptEvoError, match="importance job: epoch_from must be earlier than epoch_to"):
        job_params(ctx("importance", {"run_id": 1, "epoch_from": 2, "epoch_to": 2}), BuildSpaceParams)


def test_spec_defaults_are_the_pipelines() -> None:
    """The spec fills in every ``build_space`` default; they must be the pipeline's own."""
    defaults = {f.name: f.default for f in dataclasses.fields(SpaceParams) if f.name != "layers"}
    spec = BuildSpaceParams(base_snapshot_id=1)
    assert {name: getattr(spec, name) for name in defaults} == defaults
