"""``conceptevo serve``: run the API (and the built front end) with uvicorn.

Binds the loopback interface by default. Binding anything else needs a token (``CONCEPTEVO_TOKEN``, which makes
every write request need ``Authorization: Bearer <token>``) or an explicit ``--insecure-no-token``
(:func:`check_exposure`; ``conceptevo demo`` applies the same rule).

Connections are bounded (:func:`server_limits`): request heads of at most
:data:`backend.api.middleware.MAX_HEADER_BYTES` (h11 buffers no more of an incomplete head: 400 and the connection
closed; a bigger head that arrived in one read gets the app's 431); a request head must arrive within
:data:`HEADER_TIMEOUT_S`; an idle keep-alive connection is closed after :data:`KEEP_ALIVE_S`; a body must arrive
within the app's ``body_timeout_s`` (408, see :class:`backend.api.middleware.BodyLimitMiddleware`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import webbrowser
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        value = default
    return value if value > 0 else default


#: A request head (line + headers) must be complete within this many seconds of the connection opening or of
#: the previous response on it (slow-header clients).
HEADER_TIMEOUT_S = _env_seconds("CONCEPTEVO_HEADER_TIMEOUT_S", 10.0)
#: An idle keep-alive connection is closed after this many seconds.
KEEP_ALIVE_S = _env_seconds("CONCEPTEVO_KEEP_ALIVE_S", 5.0)
#: On shutdown, responses still streaming (the page's ``/api/events``) are cut after this many seconds instead of
#: holding the server open until they end; browsers reconnect by themselves.
GRACEFUL_S = 3.0


class UnsafeBind(ValueError):
    """Serving on a non-loopback address without a token, and without ``--insecure-no-token``."""


def check_exposure(host: str, token: str | None, insecure_no_token: bool = False) -> str | None:
    """Refuse (:class:`UnsafeBind`, one line) to serve on a non-loopback ``host`` without a token unless
    ``insecure_no_token``; else the warning to log for ``host`` (None on loopback)."""
    if not is_loopback(host) and not token and not insecure_no_token:
        raise UnsafeBind(
            f"refusing to serve on {host} without a token: anyone who can reach it could queue and cancel jobs. "
            "Set CONCEPTEVO_TOKEN (writes then need 'Authorization: Bearer <token>'), serve on 127.0.0.1, "
            "or pass --insecure-no-token to accept the risk"
        )
    return exposure_warning(host, token)


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


def server_limits() -> dict[str, Any]:
    """uvicorn options that bound what one connection can hold: the h11 protocol (httptools has no header limit)
    with a head size limit and a head deadline, and the keep-alive timeout."""
    from backend.api.middleware import MAX_HEADER_BYTES

    return {
        "http": _bounded_h11_protocol(),
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": GRACEFUL_S,
    }


def _bounded_h11_protocol() -> type:
    """uvicorn's h11 protocol, closing a connection whose request head is not complete within
    :data:`HEADER_TIMEOUT_S` of the connection opening or of its previous response (uvicorn has no such limit)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        _head_timer: Any = None

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_too_slow)

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return  # a request is in progress (its body has its own deadline) or the connection is closing
            logger.info("closing a connection whose request head took over %g s", HEADER_TIMEOUT_S)
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass
            self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return BoundedH11Protocol


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    db: str | Path | None = None,
    open_browser: bool = False,
    insecure_no_token: bool = False,
) -> None:
    """Serve the API at ``http://host:port`` until interrupted.

    Args:
        host: interface to bind; loopback by default.
        port: TCP port.
        db: database URL or SQLite file path; default from ``CONCEPTEVO_DB`` / the data directory.
        open_browser: open the page in the default browser once the server is up.
        insecure_no_token: allow a non-loopback ``host`` without ``CONCEPTEVO_TOKEN``.

    Raises:
        UnsafeBind: ``host`` is not loopback, there is no token and ``insecure_no_token`` is false (before
            anything is opened or bound).
    """
    from backend.api.settings import Settings

    settings = Settings.from_env(db_url=str(db) if db is not None else None)
    warning = check_exposure(host, settings.token, insecure_no_token)
    import uvicorn

    from backend.api.app import create_app

    if warning:
        logger.warning(warning)
    app = create_app(settings=settings)
    url = page_url(host, port)
    logger.info("ConceptEvo API on %s (docs at %sdocs)", url, url)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False, **server_limits())
