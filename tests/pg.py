"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary folder, loopback, a free port.

PostgreSQL refuses to run as root, so under root the server runs as the system user ``postgres`` (created by
Debian's package; created here with ``useradd --system`` if missing) through ``runuser``. Authentication is
``trust`` on 127.0.0.1 only; durability is switched off (``fsync=off``…) since the data is thrown away.

:func:`start_server` is what the session fixture ``pg_server`` (``tests/conftest.py``) calls; it raises
:class:`Unavailable` with the reason when PostgreSQL or psycopg is not installed, and the fixture skips with it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.datadir import free_port

PG_USER = "conceptevo"
"""The database superuser initdb creates (any name: authentication is trust on loopback)."""

INSTALL_HINT = "run `make setup` as root (apt-get install postgresql) and `pip install -e '.[dev]'`"


class Unavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why and how to fix it."""


def pg_bindir() -> Path | None:
    """Folder of ``initdb``/``pg_ctl``: on PATH, else Debian's ``/usr/lib/postgresql/<v>/bin`` (newest)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _system_user() -> str | None:
    """The unprivileged account to run the server as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
            capture_output=True,
        )
    return "postgres"


@dataclass
class PgServer:
    """A running server; :meth:`new_database` gives each test its own empty database."""

    folder: Path
    port: int
    bindir: Path
    user: str | None

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database with a fresh name; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.folder)

    def stop(self) -> None:
        """Stop the server at once and delete its folder."""
        self._run("pg_ctl", "stop", "-D", str(self.folder / "data"), "-m", "immediate", "-w")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> PgServer:
    """Initialise and start a server in a new temporary folder; raises :class:`Unavailable` if it cannot."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable(f"psycopg (v3) is not installed; {INSTALL_HINT}") from None
    bindir = pg_bindir()
    if bindir is None:
        raise Unavailable(f"PostgreSQL's initdb was not found; {INSTALL_HINT}")
    try:
        user = _system_user()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise Unavailable(
            f"cannot create the system user PostgreSQL runs as ({exc}); {INSTALL_HINT}"
        ) from None
    if user is not None and shutil.which("runuser") is None:
        raise Unavailable(
            "running as root, but `runuser` (util-linux) is missing to start PostgreSQL as postgres"
        )
    folder = Path(tempfile.mkdtemp(prefix="conceptevo-pg-"))
    if user is not None:
        shutil.chown(folder, user)
    server = PgServer(folder, free_port(), bindir, user)
    init = server._run(
        "initdb", "-D", str(folder / "data"), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync"
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"initdb failed: {(init.stderr or init.stdout).strip()[-500:]}")
    options = (
        f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} -c max_connections=300 "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    started = server._run(
        "pg_ctl", "start", "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w"
    )
    if started.returncode != 0:
        log = (folder / "log").read_text(errors="replace")[-800:] if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"PostgreSQL did not start: {started.stderr.strip()[-300:]} {log}")
    _wait_ready(server)
    return server


def _wait_ready(server: PgServer, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(host="127.0.0.1", port=server.port, user=PG_USER, dbname="postgres").close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise Unavailable(f"PostgreSQL on port {server.port} did not accept connections") from None
            time.sleep(0.1)
