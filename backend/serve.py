"""``conceptevo serve``: run the API (and the built front end) with uvicorn.

Binds the loopback interface by default; binding anything else logs a warning recommending a token
(``CONCEPTEVO_TOKEN``), which makes every write request need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import webbrowser
from pathlib import Path

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only the local machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning to log for binding ``host``, or ``None`` for a loopback address."""
    if is_loopback(host):
        return None
    if token:
        return (
            f"serving on {host}, reachable from other machines; writes need the token (CONCEPTEVO_TOKEN), "
            "reads are open to anyone who can reach this address"
        )
    return (
        f"serving on {host}, reachable from other machines, WITHOUT a token: anyone who can reach it can queue "
        "and cancel jobs. Set CONCEPTEVO_TOKEN to require 'Authorization: Bearer <token>' for writes."
    )


def page_url(host: str, port: int) -> str:
    """The URL to open for a server bound to ``host:port`` (a wildcard bind is reached on loopback)."""
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if ":" in url_host and not url_host.startswith("["):
        url_host = f"[{url_host}]"  # an IPv6 literal
    return f"http://{url_host}:{port}/"


def serve(
    host: str = "127.0.0.1", port: int = 8000, db: str | Path | None = None, open_browser: bool = False
) -> None:
    """Serve the API at ``http://host:port`` until interrupted.

    Args:
        host: interface to bind; loopback by default.
        port: TCP port.
        db: database URL or SQLite file path; default from ``CONCEPTEVO_DB`` / the data directory.
        open_browser: open the page in the default browser once the server is up.
    """
    import uvicorn

    from backend.api.app import create_app
    from backend.api.settings import Settings

    settings = Settings.from_env(db_url=str(db) if db is not None else None)
    warning = exposure_warning(host, settings.token)
    if warning:
        logger.warning(warning)
    app = create_app(settings=settings)
    url = page_url(host, port)
    logger.info("ConceptEvo API on %s (docs at %sdocs)", url, url)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
