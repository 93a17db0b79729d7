"""The repository itself: lint-clean, a valid compose file, a CLI whose every command documents an example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")


def test_ruff_check_and_format_are_clean() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run([str(RUFF), *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, f"ruff {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_compose_file_runs_postgres_api_and_workers() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "api", "worker"}
    for name in ("api", "worker"):
        assert services[name]["environment"]["CONCEPTEVO_DB"].startswith("postgresql+psycopg://")
        assert services[name]["depends_on"]["db"]["condition"] == "service_healthy"
    # loopback unless the user changes it (interpolated by a real Compose in tests/backend/test_compose.py)
    assert services["api"]["ports"] == ["${CONCEPTEVO_PUBLISH:-127.0.0.1}:${CONCEPTEVO_PORT:-8000}:8000"]


def test_every_command_has_help_with_an_example() -> None:
    from typer.main import get_command

    from worker.cli import app

    group = get_command(app)
    for name, command in group.commands.items():
        assert "Example: conceptevo" in (command.help or ""), f"`conceptevo {name} --help` shows no example"
