"""The FastAPI application: routers under ``/api``, error handlers, middleware and the front end at ``/``.

``create_app()`` opens the store from the environment; tests pass their own ``store`` and ``settings``.
The module imports neither torch nor ``worker`` (DESIGN.md §2), so the server starts in well under a second.
"""

from __future__ import annotations

import logging
import math
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.store.errors import ConflictError, NotFoundError, StoreError

from . import (
    alerts,
    datasets,
    events,
    health,
    importance,
    jobs,
    metrics,
    neurons,
    patches,
    reports,
    runs,
    spaces,
)
from .db import DatabaseBusy, Db, is_busy_error
from .frontend import SinglePageApp
from .middleware import BodyLimitMiddleware, FiniteJsonMiddleware, HeaderLimitMiddleware, TokenMiddleware
from .schemas import ErrorOut
from .settings import Settings

if TYPE_CHECKING:
    from backend.store.config import Store

logger = logging.getLogger(__name__)

try:
    VERSION = metadata.version("conceptevo")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0.0.0+unknown"

#: Error responses every API route may give; documented in OpenAPI so clients (and schemathesis) know them.
COMMON_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Write without the configured token (`CONCEPTEVO_TOKEN`)."},
    413: {"model": ErrorOut, "description": "Request body larger than the server's limit."},
    408: {"model": ErrorOut, "description": "Request body not received in full within the time limit."},
    431: {"model": ErrorOut, "description": "Request line and headers larger than the server's limit."},
    503: {"model": ErrorOut, "description": "The database is busy (retried) or unavailable; retry later."},
}

PLACEHOLDER_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ConceptEvo</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>ConceptEvo</h1>
<p>The API is running. The web front end has not been built yet
(<code>make frontend</code> builds it into <code>frontend/dist</code>).</p>
<p>API documentation: <a href="/docs">/docs</a> &middot; health: <a href="/api/health">/api/health</a></p>
</body></html>
"""

API_DESCRIPTION = """\
Read the precomputed ConceptEvo world (datasets, runs, snapshots, spaces, neuron positions, patches, importance,
metrics) and ask the worker for more (jobs).

Errors are JSON `{"detail": ...}`: unknown ids → 404, bad parameters → 422, oversize bodies → 413,
a busy database → 503 (after retries). When the server has a token (`CONCEPTEVO_TOKEN`), every write
(POST/PUT/PATCH/DELETE) needs `Authorization: Bearer <token>`.
"""


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _json_safe(value: object) -> object:
    """``value`` with every non-finite float replaced by its text (``"nan"``, ``"inf"``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _install_error_handlers(app: FastAPI) -> None:
    """Map store and database exceptions to clean JSON answers; nothing leaks a traceback."""

    async def on_not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc))

    async def on_conflict(request: Request, exc: Exception) -> JSONResponse:
        return _error(409, str(exc))

    async def on_busy(request: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "1"})

    async def on_store_error(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("store error on %s %s: %s", request.method, request.url.path, exc)
        return _error(503, f"the store cannot serve this request: {exc}", {"Retry-After": "5"})

    async def on_db_error(request: Request, exc: Exception) -> JSONResponse:
        if is_busy_error(exc):
            return _error(503, "the database is busy; try again in a moment", {"Retry-After": "1"})
        logger.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(503, "the database cannot serve this request right now", {"Retry-After": "5"})

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            # Starlette lists only the first matching route's methods; list every method of this path.
            methods = sorted(
                {
                    m
                    for route in request.app.router.routes
                    if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
                    for m in route.methods
                }
            )
            return _error(405, "method not allowed", {"Allow": ", ".join(methods)})
        return await http_exception_handler(request, exc)

    async def on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own handler, with values JSON cannot carry (NaN, ±Infinity from a query string) echoed as text.
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.internal_errors += 1
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal server error (logged on the server)")

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(NotFoundError, on_not_found)
    app.add_exception_handler(ConflictError, on_conflict)
    app.add_exception_handler(DatabaseBusy, on_busy)
    app.add_exception_handler(StoreError, on_store_error)
    app.add_exception_handler(DBAPIError, on_db_error)
    app.add_exception_handler(Exception, on_unexpected)


def _mount_frontend(app: FastAPI, dist: Path) -> None:
    """Serve the built front end at ``/`` when it exists (client-side routes answer its ``index.html``, see
    :mod:`.frontend`), a placeholder page pointing to ``/docs`` otherwise."""
    if (dist / "index.html").is_file():
        app.mount("/", SinglePageApp(directory=str(dist)), name="frontend")
        return

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def placeholder() -> HTMLResponse:
        return HTMLResponse(PLACEHOLDER_HTML)


def _resolve_data_dir(settings: Settings) -> Path:
    if settings.data_dir is not None:
        return Path(settings.data_dir).resolve()
    from backend.store.config import data_dir

    return Path(data_dir()).resolve()


def create_app(store: Store | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the application.

    Args:
        store: an open store; ``None`` opens the one configured by ``settings.db_url`` / the environment.
        settings: server settings; ``None`` reads them from the environment (:meth:`Settings.from_env`).
    """
    settings = settings or Settings.from_env()
    if store is None:
        from backend.store.config import open_store

        store = open_store(settings.db_url)

    app = FastAPI(
        title="ConceptEvo API",
        version=VERSION,
        description=API_DESCRIPTION,
        openapi_tags=[
            {"name": "health", "description": "Liveness, version and schema version."},
            {"name": "datasets", "description": "Image datasets."},
            {"name": "runs", "description": "Training runs, their snapshots (epochs) and layers."},
            {"name": "spaces", "description": "Unified semantic spaces and the points of each snapshot."},
            {"name": "neurons", "description": "One neuron: stimuli, patches, trajectory, neighbours."},
            {"name": "patches", "description": "Example patch images, by id."},
            {"name": "importance", "description": "Concept evolutions ranked by importance for a class."},
            {"name": "metrics", "description": "Training-health signals per epoch."},
            {"name": "jobs", "description": "Ask the worker to compute something; follow its progress."},
            {"name": "live", "description": "Runs watched while they train: events, alerts, live runs."},
        ],
    )
    app.state.settings = settings
    app.state.store = store
    app.state.db = Db(store, settings)
    app.state.data_dir = _resolve_data_dir(settings)
    app.state.internal_errors = 0
    app.state.version = VERSION

    _install_error_handlers(app)
    routers = (health, datasets, runs, spaces, neurons, patches, importance, metrics, jobs, alerts, events)
    routers += (reports,)
    for module in routers:
        app.include_router(module.router, prefix="/api", responses=COMMON_RESPONSES)

    # Middleware: the last added runs first. Header size, token check, body limit (size and time), finite JSON
    # numbers, then (optional) CORS.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag"],
        )
    app.add_middleware(FiniteJsonMiddleware)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(TokenMiddleware, token=settings.token)
    app.add_middleware(HeaderLimitMiddleware)

    _mount_frontend(app, Path(settings.frontend_dist))
    return app
