"""Serving the built single-page front end (``frontend/dist``) at ``/``.

The page routes on the client (``/map?space=1&run=2``, ``/compare``, ``/jobs``, …), so any GET that is not
an API path, the API docs, or a file of the build answers ``index.html``, and a reload or a shared link opens
the right view. Vite's hashed bundles under ``/assets/`` never change under one name: they are cached for a
year; ``index.html`` is revalidated on every load so that a new build is picked up at once.
"""

from __future__ import annotations

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .settings import IMMUTABLE_CACHE_CONTROL

#: First path segments that never fall back to the page: the API, its docs, and the hashed bundles (a
#: missing bundle must be a 404, not an HTML page the browser then fails to run as a script).
SERVER_PREFIXES = frozenset({"api", "assets", "docs", "redoc", "openapi.json"})

#: ``index.html`` is small and names the current bundles: always ask the server whether it changed.
INDEX_CACHE_CONTROL = "no-cache"


def is_client_route(path: str) -> bool:
    """Whether a path (relative to the mount, as StaticFiles sees it: ``map``, ``assets/x.js``) may be a
    client-side route, i.e. answered with ``index.html`` when no file has that name."""
    return path.split("/", 1)[0] not in SERVER_PREFIXES


class SinglePageApp(StaticFiles):
    """StaticFiles for a built single-page app: files as they are, ``index.html`` for client-side routes.

    Args:
        directory: the build (``frontend/dist``), holding ``index.html``.
    """

    def __init__(self, directory: str) -> None:
        super().__init__(directory=directory, html=False, check_dir=True)

    async def get_response(self, path: str, scope: Scope) -> Response:
        """A file of the build, ``index.html`` for the root and for client routes, a 404 otherwise."""
        if not is_client_route(path) and path.split("/", 1)[0] != "assets":
            # An API path nobody routed: the app's JSON 404, for every method (not StaticFiles' 405).
            raise HTTPException(status_code=404)
        if path in (".", "index.html"):
            return await self._index(scope)
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code == 404 and is_client_route(path) and scope["method"] in ("GET", "HEAD"):
                return await self._index(scope)
            raise
        if path.startswith("assets/"):
            response.headers["Cache-Control"] = IMMUTABLE_CACHE_CONTROL
        return response

    async def _index(self, scope: Scope) -> Response:
        """``index.html`` with status 200 (or 304 for a matching conditional request), never cached unchecked."""
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        full_path, stat_result = await anyio.to_thread.run_sync(self.lookup_path, "index.html")
        if stat_result is None:  # the build was removed while serving
            raise HTTPException(status_code=404)
        response = self.file_response(full_path, stat_result, scope)
        response.headers["Cache-Control"] = INDEX_CACHE_CONTROL
        return response
