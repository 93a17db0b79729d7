"""The real ``conceptevo serve`` (uvicorn on 127.0.0.1), probed with raw sockets (issue 11.5, 11.6).

* a non-loopback bind without ``CONCEPTEVO_TOKEN`` is refused (one line, exit 2) unless ``--insecure-no-token``;
* huge headers are refused, slow bodies and slow headers are cut off, idle keep-alive connections are closed.

Every wait is bounded: a few connections, seconds each.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.datadir import REPO, free_port, stop, wait_for

BODY_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 2.0
KEEP_ALIVE_S = 2.0


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONCEPTEVO_TOKEN"}
    env.update(
        CONCEPTEVO_DATA=str(root),
        CONCEPTEVO_DB=str(root / "conceptevo.db"),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _start(root: Path, *args: str, **env: str) -> tuple[subprocess.Popen, Path]:
    log = root / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            cwd=REPO,
            env=_env(root, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return proc, log


def _health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return r.status
    except (OSError, urllib.error.URLError):
        return None


def _wait_up(proc: subprocess.Popen, port: int, log: Path) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        return _health(port) == 200

    wait_for(up, 60, "the server to answer /api/health")


# ----------------------------------------------------------------------------------------- item 5
@pytest.mark.parametrize("command", [["serve"], ["demo", "--size", "small"]])
def test_non_loopback_bind_without_token_is_refused(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", *command, "--host", "0.0.0.0", "--port", str(port)],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, (proc.stdout[-500:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "CONCEPTEVO_TOKEN" in lines[0] and "--insecure-no-token" in lines[0]
    # refused before doing anything: no job queued, nothing listening
    assert "queued" not in proc.stdout
    assert _health(port) is None


def test_non_loopback_bind_starts_with_a_token_or_when_explicitly_insecure(tmp_path: Path) -> None:
    port = free_port()
    proc, log = _start(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(port), CONCEPTEVO_TOKEN="s3cret")
    try:
        _wait_up(proc, port, log)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/jobs", data=b'{"kind": "demo"}', method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
    finally:
        stop(proc)
    port = free_port()
    proc, log = _start(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(port), "--insecure-no-token")
    try:
        _wait_up(proc, port, log)
    finally:
        stop(proc)
    assert "WITHOUT a token" in log.read_text()


# ----------------------------------------------------------------------------------------- item 6
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("limits")
    port = free_port()
    proc, log = _start(
        root,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        CONCEPTEVO_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        CONCEPTEVO_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        CONCEPTEVO_KEEP_ALIVE_S=str(KEEP_ALIVE_S),
    )
    try:
        _wait_up(proc, port, log)
        yield port
        assert _health(port) == 200, "the server must still answer after the abuse"
        assert "Traceback" not in log.read_text()
    finally:
        stop(proc)


def _connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _read_until_closed(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``deadline`` passes (False)."""
    got = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return got, False
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


def test_huge_headers_are_rejected(server: int) -> None:
    for size in (64 * 1024, 4 * 1024 * 1024):
        sock = _connect(server, 10)
        started = time.monotonic()
        try:
            head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
            try:
                sock.sendall(head + b"a" * size + b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading: fine
            got, closed = _read_until_closed(sock, started + 10)
        finally:
            sock.close()
        status = got.split(b"\r\n", 1)[0]
        assert b" 200 " not in status, (size, status)
        assert closed or status.split(b" ")[1:2] in ([b"400"], [b"431"]), (size, got[:200])
        assert time.monotonic() - started < 10


def test_slow_bodies_are_cut_off(server: int) -> None:
    socks = [_connect(server, 10) for _ in range(20)]
    started = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(
                b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"'
            )
        results = [_read_until_closed(sock, started + BODY_TIMEOUT_S + 6) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    for got, closed in results:
        assert closed, f"a connection sending 2 of 100 body bytes was still held after {BODY_TIMEOUT_S + 6} s"
        assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    assert time.monotonic() - started < BODY_TIMEOUT_S + 6


def test_slow_request_heads_are_cut_off(server: int) -> None:
    sock = _connect(server, 10)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        while time.monotonic() - started < HEADER_TIMEOUT_S + 6:
            try:
                sock.sendall(b"X-A: b\r\n")  # never finishes the head
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            got, closed = _read_until_closed(sock, time.monotonic() + 0.5)
            if closed:
                break
    finally:
        sock.close()
    assert closed, f"a request head trickling in was still held after {HEADER_TIMEOUT_S + 6} s"


def test_idle_keep_alive_connections_are_closed(server: int) -> None:
    sock = _connect(server, 10)
    try:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        answered = time.monotonic()
        _rest, closed = _read_until_closed(sock, answered + KEEP_ALIVE_S + 4)
        assert closed
        assert time.monotonic() - answered >= KEEP_ALIVE_S - 0.5
    finally:
        sock.close()
    # and a connection that never sends anything is closed too
    sock = _connect(server, 10)
    try:
        _got, closed = _read_until_closed(sock, time.monotonic() + HEADER_TIMEOUT_S + 4)
        assert closed
    finally:
        sock.close()
