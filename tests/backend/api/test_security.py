"""Token enforcement, body limits, CORS, busy database → 503, and the server-exposure warning."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from backend.api.db import DatabaseBusy, Db, is_busy_error
from backend.api.settings import Settings
from backend.serve import exposure_warning, is_loopback, page_url
from backend.store.config import open_store

from .conftest import World

JOB = {"kind": "add_snapshot", "params": {"space_id": 1, "snapshot_id": 2, "force": True}}  # computed: force


def test_token_required_for_every_write(make_client: Callable[..., TestClient], world: World) -> None:
    c = make_client(token="s3cret")
    # reads stay open
    assert c.get("/api/runs").status_code == 200
    writes = [
        ("POST", "/api/jobs"),
        ("DELETE", "/api/jobs/1"),
        ("POST", "/api/jobs/1/cancel"),
        ("POST", "/api/jobs/1/retry"),
        ("PUT", "/api/runs/1"),
        ("PATCH", "/api/runs/1"),
        ("POST", "/api/runs"),
    ]
    for method, url in writes:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "s3cret"},
            {"Authorization": "Basic s3cret"},
        ):
            r = c.request(method, url, json=JOB, headers=headers)
            assert r.status_code == 401, (method, url, headers)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["detail"].startswith("this server needs a token")
    ok = c.post("/api/jobs", json=JOB, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code in (200, 201)
    job_id = ok.json()["id"]
    assert (
        c.delete(f"/api/jobs/{job_id}", headers={"Authorization": "Bearer s3cret"}).json()["status"]
        == "cancelled"
    )


def test_no_token_configured_allows_writes(client: TestClient) -> None:
    r = client.post("/api/jobs", json=JOB)
    assert r.status_code in (200, 201)
    assert client.delete(f"/api/jobs/{r.json()['id']}").status_code == 200


def test_oversize_bodies_413(make_client: Callable[..., TestClient]) -> None:
    c = make_client(max_body_bytes=1000)
    big = b'{"kind": "demo", "params": {}, "pad": "' + b"x" * 2000 + b'"}'
    r = c.post("/api/jobs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"detail": "request body too large (limit 1000 bytes)"}

    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b"x" * 100

    r = c.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    # small chunked bodies still go through to validation
    r = c.post("/api/jobs", content=iter([b'{"kind": "nope"}']), headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert c.post("/api/jobs", content=b"{", headers={"content-length": "abc"}).status_code in (400, 422)


def test_default_limit_is_one_mib(client: TestClient) -> None:
    """Exactly 1 MiB passes the limit (and fails validation); one byte more is refused — sized or chunked."""
    mib = 1 << 20
    json_type = {"content-type": "application/json"}
    for size, expected in ((mib, 422), (mib + 1, 413)):
        body = b"x" * size
        assert client.post("/api/jobs", content=body, headers=json_type).status_code == expected, size
        chunked = iter([body[: size // 2], body[size // 2 :]])
        assert client.post("/api/jobs", content=chunked, headers=json_type).status_code == expected, size


def test_cors_off_by_default(client: TestClient, make_client: Callable[..., TestClient]) -> None:
    r = client.get("/api/runs", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/api/jobs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in pre.headers
    c = make_client(cors_origins=("http://localhost:5173",))
    r = c.get("/api/runs", headers={"Origin": "http://localhost:5173"})
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_bad_parameters_422(client: TestClient) -> None:
    for url in (
        "/api/runs/abc",
        "/api/runs/-1",
        "/api/runs/0",
        "/api/runs/2147483648",
        "/api/importance/ranking?run_id=1&epoch_from=x&epoch_to=2&class_idx=0",
        "/api/importance/1?limit=0",
        "/api/jobs?status=sleeping",
        "/api/jobs?limit=100000",
    ):
        r = client.get(url)
        assert r.status_code == 422, url
        assert isinstance(r.json()["detail"], list)


def test_busy_database_gives_503(world: World) -> None:
    """A writer holding the SQLite write lock: the API retries, then answers 503 (not 500)."""
    store = open_store(str(world.db_path))

    @event.listens_for(store.engine, "connect")
    def short_timeout(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 20")

    from backend.api.app import create_app

    app = create_app(store, Settings(data_dir=world.data_dir, busy_retries=2, busy_backoff_s=0.01))
    locker = sqlite3.connect(world.db_path, isolation_level=None)
    try:
        with TestClient(app, raise_server_exceptions=True) as c:
            store.dispose()  # fresh connections get the short timeout
            locker.execute("BEGIN IMMEDIATE")
            r = c.post("/api/jobs", json={"kind": "demo", "params": {}})
            assert r.status_code == 503
            assert r.json() == {"detail": "the database is busy; try again in a moment"}
            assert r.headers["retry-after"] == "1"
            # readers are not blocked by the writer (WAL)
            assert c.get("/api/runs/1").status_code == 200
            locker.execute("ROLLBACK")
            r = c.post("/api/jobs", json={"kind": "demo", "params": {}})
            assert r.status_code in (200, 201)
            assert c.delete(f"/api/jobs/{r.json()['id']}").status_code == 200
        assert app.state.internal_errors == 0
    finally:
        locker.close()
        store.dispose()


def test_retry_policy_unit() -> None:
    calls: list[int] = []
    settings = Settings(busy_retries=3, busy_backoff_s=0.001)
    db = Db(store=None, settings=settings)  # type: ignore[arg-type]

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return "ok"

    assert db.call(flaky) == "ok" and len(calls) == 3

    def always() -> None:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    with pytest.raises(DatabaseBusy):
        db.call(always)
    other = OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))
    assert not is_busy_error(other)
    with pytest.raises(OperationalError):
        db.call(lambda: (_ for _ in ()).throw(other))


def test_exposure_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("::1")
        and is_loopback("localhost")
        and is_loopback("127.0.0.2")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    assert exposure_warning("127.0.0.1", None) is None
    assert "WITHOUT a token" in (exposure_warning("0.0.0.0", None) or "")
    assert "writes need the token" in (exposure_warning("0.0.0.0", "t") or "")


def test_concurrent_readers_with_writer_threads(client: TestClient, world: World) -> None:
    """Readers in threads while another connection commits writes: no errors (WAL)."""
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        con = sqlite3.connect(world.db_path, isolation_level=None, timeout=10)
        try:
            for i in range(40):
                con.execute("BEGIN IMMEDIATE")
                con.execute(
                    "INSERT INTO jobs (kind, params, dedupe_key, status, priority, attempts, max_attempts, progress, "
                    "message, created_at) VALUES ('demo', '{}', ?, 'cancelled', 0, 0, 3, 0, '', '2024-01-01')",
                    (f"w{i}",),
                )
                con.execute("COMMIT")
        finally:
            con.close()
            stop.set()

    def reader() -> None:
        while not stop.is_set():
            for url in ("/api/spaces/1/snapshots/2/points", "/api/runs/1", "/api/jobs?limit=5"):
                r = client.get(url)
                if r.status_code != 200:
                    errors.append(f"{url}: {r.status_code} {r.text[:100]}")

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    logging.getLogger(__name__).info("concurrent readers ok")


def test_page_url_of_a_bind_address() -> None:
    assert page_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert page_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert page_url("::", 8000) == "http://127.0.0.1:8000/"
    assert page_url("::1", 8000) == "http://[::1]:8000/"
    assert page_url("localhost", 9) == "http://localhost:9/"
