"""The built front end at ``/``: files as they are, ``index.html`` for client-side routes, JSON 404s for the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.api.settings import Settings

from .conftest import World

INDEX = '<!doctype html><html><body><script type="module" src="/assets/index-3f9a.js"></script></body></html>'
BUNDLE = "console.log('conceptevo');"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A tiny build: ``index.html``, one hashed bundle and one plain file."""
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-3f9a.js").write_text(BUNDLE)
    (root / "favicon.svg").write_text("<svg/>")
    return root


@pytest.fixture
def site(world: World, dist: Path) -> Iterator[TestClient]:
    with TestClient(create_app(world.store, Settings(data_dir=world.data_dir, frontend_dist=dist))) as c:
        yield c


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/index.html",
        "/map?space=1&run=2",
        "/compare",
        "/importance",
        "/health",
        "/jobs",
        "/findings",
        "/map/deep/link",
        "/favicon.ico",
    ],
)
def test_client_routes_answer_index_html_uncached(site: TestClient, url: str) -> None:
    r = site.get(url)
    assert (r.status_code, r.text) == (200, INDEX)
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"


def test_index_revalidates_with_304(site: TestClient) -> None:
    etag = site.get("/jobs").headers["etag"]
    again = site.get("/compare", headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")


def test_files_of_the_build_and_immutable_assets(site: TestClient) -> None:
    bundle = site.get("/assets/index-3f9a.js")
    assert (bundle.status_code, bundle.text) == (200, BUNDLE)
    assert bundle.headers["cache-control"] == "public, max-age=31536000, immutable"
    icon = site.get("/favicon.svg")
    assert (icon.status_code, icon.text) == (200, "<svg/>")
    assert "immutable" not in icon.headers.get("cache-control", "")


def test_missing_assets_and_api_paths_are_404_not_the_page(site: TestClient) -> None:
    for url in ("/assets/index-0000.js", "/assets", "/assets/"):
        r = site.get(url)
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found"}), url
    for url in ("/api/nope", "/api", "/api/spaces/1/nope", "/docs/nope", "/openapi.json/x"):
        r = site.get(url)
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found"}), url
    assert site.post("/api/nope").status_code == 404
    assert site.get("/api/spaces/9").json() == {"detail": "space 9 not found"}


def test_api_and_docs_still_win_over_the_page(site: TestClient) -> None:
    assert site.get("/api/health").json()["status"] == "ok"
    assert site.get("/openapi.json").json()["info"]["title"] == "ConceptEvo API"
    docs = site.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert site.get("/redoc").status_code == 200
    assert site.post("/map").status_code == 405


def test_placeholder_without_a_build(world: World, tmp_path: Path) -> None:
    (tmp_path / "empty-dist").mkdir()
    with TestClient(create_app(world.store, Settings(frontend_dist=tmp_path / "empty-dist"))) as c:
        page = c.get("/")
        assert page.status_code == 200 and 'href="/docs"' in page.text
        assert c.get("/map").status_code == 404
