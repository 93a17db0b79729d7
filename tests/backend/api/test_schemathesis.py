"""Property-based tests of the whole API from its own OpenAPI schema (schemathesis v4).

Every generated request (valid and invalid) must get a documented answer: never a server error other than the
documented 503, never the catch-all 500; responses must match their declared schemas.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store.config import open_store
from backend.store.synthetic import build_synthetic_store

CASES: list[int] = []
MIN_CASES = 500


def _build_app() -> FastAPI:
    """A separate small world for this module (schemathesis needs the app when the module is collected)."""
    root = Path(tempfile.mkdtemp(prefix="conceptevo-schemathesis-"))
    atexit.register(shutil.rmtree, root, True)
    store = open_store(str(root / "db.sqlite"))
    atexit.register(store.dispose)
    build_synthetic_store(
        store, n_neurons=12, n_epochs=2, n_runs=2, extra_big_snapshot=20, data_dir=root / "data"
    )
    return create_app(store, Settings(data_dir=root / "data", frontend_dist=root / "no-dist"))


APP = _build_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """This module's application (overrides the session one)."""
    return APP


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_conforms(case: schemathesis.Case, app: FastAPI) -> None:
    response = case.call()
    CASES.append(response.status_code)
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
    )
    # Rules a JSON schema cannot express (epoch_from < epoch_to, distinct classes) make some schema-valid job
    # bodies a 422; every other check runs on every operation.
    excluded = [positive_data_acceptance] if (case.method, case.path) == ("POST", "/api/jobs") else []
    case.validate_response(response, excluded_checks=excluded)
    assert app.state.internal_errors == 0


def test_enough_cases_and_no_internal_errors(app: FastAPI) -> None:
    """Runs after the generated tests (file order): at least MIN_CASES requests, none reached the catch-all."""
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} generated cases"
    assert app.state.internal_errors == 0
    assert all(s < 500 or s == 503 for s in CASES)
    print(f"schemathesis cases: {len(CASES)}")  # noqa: T201 - shown with -s; the count goes in the report
