"""Property-based tests of the whole API from its own OpenAPI schema (schemathesis v4).

Every generated request (valid and invalid) must get a documented answer and never a server error: not the
catch-all 500, and not a 503 either (nothing else uses this module's database, so it is never busy); responses
must match their declared schemas. Each operation's test checks its own case count (no state shared between tests,
so any one of them runs alone).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store.config import open_store
from tests.fixtures.synthetic import build_synthetic_store

MAX_EXAMPLES = 20
#: Each operation must get at least this many generated requests (its test fails at teardown otherwise).
MIN_CASES_PER_OPERATION = 10


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
#: Removals (``DELETE`` of a run, dataset or space) would empty the world the other operations read: they run
#: against a world of their own (:func:`test_removals_conform`).
REMOVALS = r"^/api/(runs|datasets|spaces)/\{[a-z_]+\}$"
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(method="DELETE", path_regex=REMOVALS)
REMOVALS_APP = _build_app()
removals = schemathesis.openapi.from_asgi("/openapi.json", REMOVALS_APP).include(
    method="DELETE", path_regex=REMOVALS
)


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """This module's application (overrides the session one)."""
    return APP


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Iterator[list[int]]:
    """The status codes of one operation's generated requests (a fresh list per test, i.e. per operation)."""
    statuses: list[int] = []
    yield statuses
    print(f"{request.node.name}: {len(statuses)} cases")  # noqa: T201 - shown with -s
    assert len(statuses) >= MIN_CASES_PER_OPERATION, f"only {len(statuses)} generated cases"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_conforms(case: schemathesis.Case, app: FastAPI, cases: list[int]) -> None:
    response = case.call()
    cases.append(response.status_code)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
    )
    # Rules a JSON schema cannot express (epoch_from < epoch_to, distinct classes) make some schema-valid job
    # bodies a 422; every other check runs on every operation.
    excluded = [positive_data_acceptance] if (case.method, case.path) == ("POST", "/api/jobs") else []
    case.validate_response(response, excluded_checks=excluded)
    assert app.state.internal_errors == 0


@removals.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_removals_conform(case: schemathesis.Case, cases: list[int]) -> None:
    test_api_conforms(case, REMOVALS_APP, cases)
