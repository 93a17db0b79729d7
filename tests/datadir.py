"""A ``conceptevo`` data directory for tests that run the real CLI, worker and server as processes.

Shared by the worker integration tests and the browser tests: each works in its own ``$CONCEPTEVO_DATA``
(with ``demo`` a symlink to the session's tiny demo world, read-only) and its own ``$CONCEPTEVO_DB``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.store import open_store

REPO = Path(__file__).resolve().parents[1]


@dataclass
class DataDir:
    """One test's ``$CONCEPTEVO_DATA`` + ``$CONCEPTEVO_DB``, and ways to run ``conceptevo`` against them."""

    root: Path
    lease_s: float = 60.0
    logs: list[Path] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.root / "conceptevo.db"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CONCEPTEVO_DATA=str(self.root),
            CONCEPTEVO_DB=str(self.db),
            CONCEPTEVO_LEASE_S=str(self.lease_s),
            CONCEPTEVO_HEARTBEAT_S=str(min(3.0, self.lease_s / 8)),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
            TQDM_DISABLE="1",
        )
        return env

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """Start ``conceptevo ARGS`` in the background, its output going to the log file ``<name>N.log``."""
        log = self.root / f"{name}{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "worker.cli", *args],
                cwd=REPO,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def worker(self, *args: str) -> subprocess.Popen:
        """Start ``conceptevo worker --device cpu ARGS`` in the background (see :meth:`start`)."""
        return self.start("worker", "worker", "--device", "cpu", *args)

    def serve(self, port: int) -> subprocess.Popen:
        """Start ``conceptevo serve`` on loopback at ``port`` in the background (see :meth:`start`)."""
        return self.start("serve", "serve", "--host", "127.0.0.1", "--port", str(port))

    def store(self):
        return open_store(str(self.db))


def make_data_dir(
    root: Path, world: Path, db_from: Path | None = None, patches_from: Path | None = None
) -> DataDir:
    """A fresh data dir whose ``demo`` is the shared world; optionally a copy of another test's database."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo").symlink_to(world, target_is_directory=True)
    data = DataDir(root)
    if db_from is not None:
        copy_database(db_from, data.db)
    if patches_from is not None and (patches_from / "patches").is_dir():
        shutil.copytree(patches_from / "patches", root / "patches")
    return data


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database in WAL mode (the WAL's pages included)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def wait_for(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_exit(proc: subprocess.Popen, timeout: float, log: Path | None = None) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        tail = log.read_text()[-3000:] if log is not None else ""
        raise AssertionError(f"process {proc.pid} still running after {timeout:.0f} s:\n{tail}") from None


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """End a background process started by a test: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
