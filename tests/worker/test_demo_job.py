"""``conceptevo demo`` on a fresh data dir queues the ``demo`` job at once; the job reports images, then each
run epoch by epoch with its accuracy, registers the world and queues the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import claim, enqueue, get_job, list_jobs, list_runs, open_store
from worker.demo import runs as demo_runs
from worker.demo.world import DEMO_RUN_NAMES, demo_world_ready
from worker.jobs import PRIORITY
from worker.jobs.demo import build_demo_world, epoch_message, handle_demo_world
from worker.runner import JobContext

REPO = Path(__file__).resolve().parents[2]

#: Demo runs cut down to seconds: few epochs on 36 training images.
TINY_RUNS = {"healthy": 2, "high-lr": 1, "overfit": 1}


def tiny_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the demo run configs (the same dict every module reads) by seconds-long versions."""
    for name, epochs in TINY_RUNS.items():
        config = replace(demo_runs.DEMO_RUNS[name], epochs=epochs, train_subset=36, eval_train_images=36)
        monkeypatch.setitem(demo_runs.DEMO_RUNS, name, config)


def cli_env(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CONCEPTEVO_DATA=str(data), CONCEPTEVO_DB=str(data / "conceptevo.db"), TQDM_DISABLE="1")
    return env


def test_demo_run_names_are_the_configured_runs() -> None:
    assert tuple(demo_runs.DEMO_RUNS) == DEMO_RUN_NAMES


def test_epoch_message() -> None:
    entry = {"epoch": 4, "train_top1": 0.4123, "val_top1": 0.389}
    assert epoch_message("training high-lr (2/3)", entry, 10) == (
        "training high-lr (2/3): epoch 4/10 — train top-1 0.41, val top-1 0.39"
    )
    assert epoch_message("x", {"epoch": 1, "train_top1": None, "val_top1": 1.0}) == (
        "x: epoch 1 — train top-1 n/a, val top-1 1.00"
    )


def test_demo_cli_on_an_empty_data_dir_queues_one_demo_job_within_seconds(tmp_path: Path) -> None:
    data = tmp_path / "data"
    started = time.perf_counter()
    first = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "worker.cli", "demo", "--no-serve", "--size", "small"],
        cwd=REPO,
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - started
    assert first.returncode == 0, first.stderr[-3000:]
    assert seconds < 15, f"conceptevo demo took {seconds:.1f} s"
    # Nothing heavy was loaded: the world is built by the job, not by the command.
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in first.stderr.splitlines() if "import time" in line
    }
    assert "torch" not in imported and "worker.training" not in imported
    assert "job 1 demo (size small) queued" in first.stdout
    assert not (data / "demo").exists()
    store = open_store(str(data / "conceptevo.db"))
    try:
        jobs = list_jobs(store)
        assert [(j.id, j.kind, j.status, j.params, j.priority) for j in jobs] == [
            (1, "demo", "queued", {"size": "small", "seed": 0}, PRIORITY["demo"])
        ]
        # The page asking for the same build is the same job (the API's DemoParams and the CLI agree).
        with TestClient(create_app(store, Settings(frontend_dist=tmp_path / "no-dist"))) as client:
            r = client.post("/api/jobs", json={"kind": "demo", "params": {"size": "small"}})
            assert (r.status_code, r.json()["id"], r.json()["params"]) == (
                200,
                1,
                {"size": "small", "seed": 0},
            )
        again = subprocess.run(
            [sys.executable, "-m", "worker.cli", "demo", "--no-serve", "--size", "small"],
            cwd=REPO,
            env=cli_env(data),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert "job 1 demo (size small) already queued" in again.stdout
        assert len(list_jobs(store)) == 1
    finally:
        store.dispose()


def test_demo_cli_prints_the_url_then_serves_beside_a_worker(tmp_path: Path, monkeypatch) -> None:
    """With serving on, the command queues the build and goes straight to the server and the worker."""
    import backend.serve
    from worker import cli

    events: list[str] = []

    class FakeWorker:
        def __init__(self, args: list[str]) -> None:
            events.append("worker " + " ".join(args[1:]))

        def terminate(self) -> None:
            events.append("worker stopped")

        def wait(self, timeout: float) -> int:
            return 0

    def fake_serve(host: str, port: int, open_browser: bool, insecure_no_token: bool = False) -> None:
        events.append(f"serve {host}:{port} open={open_browser}")

    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path))
    monkeypatch.setenv("CONCEPTEVO_DB", str(tmp_path / "conceptevo.db"))
    monkeypatch.setattr(subprocess, "Popen", FakeWorker)
    monkeypatch.setattr(backend.serve, "serve", fake_serve)
    monkeypatch.setattr(cli, "_store", lambda: store)
    store = open_store(str(tmp_path / "conceptevo.db"))
    try:
        result = CliRunner().invoke(cli.app, ["demo", "--size", "small", "--port", "8123"])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert (
            lines[0].startswith("the demo world is not built yet")
            and "job 1 demo (size small) queued" in lines[0]
        )
        assert lines[1].startswith("ConceptEvo: http://127.0.0.1:8123/")
        assert events == [
            "worker -m worker.cli worker --device cpu",
            "serve 127.0.0.1:8123 open=True",
            "worker stopped",
        ]
        assert [(j.kind, j.status) for j in list_jobs(store)] == [("demo", "queued")]
    finally:
        store.dispose()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[tuple[float, str]]]:
    """A demo world built from nothing (small images, tiny runs), with every progress report it made."""
    root = tmp_path_factory.mktemp("demo-build") / "demo"
    reports: list[tuple[float, str]] = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        tiny_runs(monkeypatch)
        build_demo_world(root, size="small", seed=0, progress=lambda f, m: reports.append((f, m)))
    return root, reports


def test_build_reports_images_then_every_epoch_with_its_accuracy(built) -> None:
    root, reports = built
    assert demo_world_ready(root)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == pytest.approx(1.0)
    assert reports[0] == (0.0, "generating demo images")
    images = [(f, m) for f, m in reports if m.startswith("generating demo images (")]
    assert 50 <= len(images) <= 101  # about one report per percent, not one per image
    assert images[-1] == (pytest.approx(0.1), "generating demo images (384/384)")
    expected = []
    for i, name in enumerate(DEMO_RUN_NAMES, start=1):
        label = f"training {name} ({i}/3)"
        history = json.loads((root / "runs" / name / "history.json").read_text())
        assert len(history) == TINY_RUNS[name] + 1
        expected.append(f"{label}: loading images")
        expected += [
            f"{label}: epoch {e['epoch']}/{TINY_RUNS[name]} — train top-1 {e['train_top1']:.2f}, "
            f"val top-1 {e['val_top1']:.2f}"
            for e in history
        ]
    assert [m for _, m in reports[1 + len(images) :]] == expected


def test_a_second_build_reuses_everything_and_says_so(built, monkeypatch) -> None:
    root, _ = built
    tiny_runs(monkeypatch)
    reports: list[tuple[float, str]] = []
    build_demo_world(root, size="small", seed=0, progress=lambda f, m: reports.append((f, m)))
    messages = [m for _, m in reports]
    assert not any(m.startswith("generating demo images (") for m in messages)
    assert [m.split(":")[0] for m in messages if "already trained" in m] == [
        "healthy (1/3) already trained",
        "high-lr (2/3) already trained",
        "overfit (3/3) already trained",
    ]


def test_demo_job_registers_the_world_and_queues_the_rest(built, tmp_path, monkeypatch) -> None:
    root, _ = built
    tiny_runs(monkeypatch)
    data = tmp_path / "data"
    data.mkdir()
    (data / "demo").symlink_to(root, target_is_directory=True)
    monkeypatch.setenv("CONCEPTEVO_DATA", str(data))
    store = open_store(str(data / "conceptevo.db"))
    try:
        queued, _ = enqueue(store, "demo", {"size": "small", "seed": 0}, priority=PRIORITY["demo"])
        job = claim(store, "test-worker", kinds=["demo"])
        assert job is not None and job.id == queued.id
        ctx = JobContext(store, job, "test-worker", "cpu", {}, threading.Event())
        reports: list[tuple[float, str]] = []
        report = ctx.progress
        ctx.progress = lambda f, m="": (reports.append((f, m)), report(f, m))[-1]  # type: ignore[method-assign]
        handle_demo_world(ctx)
        assert reports[-1] == (0.96, "registering the demo world")
        done = get_job(store, job.id)
        assert (done.status, done.progress) == ("done", 1.0)
        assert len(done.result["registered"]) == 4
        with store.session(readonly=True) as s:
            run_ids = [r.id for r in list_runs(s)]
        assert len(run_ids) == 3
        follow = [j for j in list_jobs(store) if j.id != job.id]
        assert [(j.kind, j.params.get("compute_runs")) for j in follow if j.kind == "build_space"] == [
            ("build_space", run_ids)
        ]
        assert {j.status for j in follow} == {"queued"}
    finally:
        store.dispose()


def test_demo_job_refuses_bad_params(tmp_path) -> None:
    from worker.errors import ConceptEvoError
    from worker.jobs.demo import _params

    assert _params({}) == ("default", 0)
    assert _params({"size": "small", "seed": 3}) == ("small", 3)
    for bad in ({"size": "huge"}, {"seed": -1}, {"seed": True}, {"seed": "1"}):
        with pytest.raises(ConceptEvoError, match="demo job"):
            _params(bad)


def test_demo_cli_refuses_a_bad_size_or_seed(tmp_path: Path, monkeypatch, capsys) -> None:
    from worker import cli

    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path))
    for args in (["--size", "huge"], ["--seed", "-1"]):
        capsys.readouterr()
        assert cli.run(["demo", "--no-serve", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "conceptevo.db").exists()
