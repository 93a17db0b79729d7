"""Pure-ASGI middleware: the write token check, the request body size limit and time limit, and the refusal of
non-finite numbers in JSON bodies.

Each answers before the application sees the request, with a small JSON body ``{"detail": ...}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Methods that change state and therefore need the token when one is configured.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The request line and headers together may not exceed this many bytes (431). ``conceptevo serve`` also sets it
#: as h11's limit, so a bigger head is never buffered; this middleware catches one that arrived in a single read.
MAX_HEADER_BYTES = 32 * 1024


async def send_json_error(
    send: Send, status: int, detail: object, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a complete ``{"detail": detail}`` JSON response with ``status`` (``detail``: text, or a list of
    validation errors)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def replaying(body: bytes, disconnect: Message | None, receive: Receive) -> Receive:
    """A `receive` for the app behind a middleware that has read the whole body: it hands the body (or the
    client's disconnect) over once, then defers to the real `receive`."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return (
                disconnect
                if disconnect is not None
                else {"type": "http.request", "body": body, "more_body": False}
            )
        return await receive()

    return replay


class HeaderLimitMiddleware:
    """Refuse a request whose line and headers exceed ``max_bytes`` with 431 (and close the connection)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_bytes:
                logger.info("refused %s: request head of %d bytes", scope["method"], size)
                await send_json_error(
                    send,
                    431,
                    f"request headers too large (limit {self.max_bytes} bytes)",
                    [(b"connection", b"close")],
                )
                return
        await self.app(scope, receive, send)


class TokenMiddleware:
    """Refuse write requests (POST/PUT/PATCH/DELETE) without ``Authorization: Bearer <token>`` with 401.

    Reads stay open. With ``token=None`` the middleware passes everything through.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        if not hmac.compare_digest(given, self.expected):
            logger.info("refused %s %s: missing or wrong token", scope["method"], scope["path"])
            await send_json_error(
                send,
                401,
                "this server needs a token for writes: send 'Authorization: Bearer <CONCEPTEVO_TOKEN>'",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with 413, whether sized or chunked, and bodies that do not
    arrive in full within ``timeout_s`` seconds with 408 (a client trickling its body cannot hold a connection).

    A declared ``Content-Length`` above the limit is refused at once; otherwise the body is read (at most
    ``max_bytes`` + one chunk) and replayed to the application, so a chunked body that grows past the limit is
    refused too, before any handler runs.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_json_error(send, 400, "invalid Content-Length header")
                return
            if size > self.max_bytes:
                await self._refuse(scope, send)
                return
        elif not chunked:
            # No body announced (typical GET): nothing to count.
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        total = 0
        disconnect: Message | None = None
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                logger.info(
                    "refused %s %s: body too slow (over %g s)", scope["method"], scope["path"], self.timeout_s
                )
                await send_json_error(
                    send,
                    408,
                    f"request body not received within {self.timeout_s:g} seconds",
                    [(b"connection", b"close")],
                )
                return
            if message["type"] == "http.disconnect":
                disconnect = message
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._refuse(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        await self.app(scope, replaying(b"".join(chunks), disconnect, receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        logger.info("refused %s %s: body over %d bytes", scope["method"], scope["path"], self.max_bytes)
        await send_json_error(
            send, 413, f"request body too large (limit {self.max_bytes} bytes)", [(b"connection", b"close")]
        )


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


NON_FINITE_MESSAGE = (
    "JSON numbers must be finite: NaN, Infinity and numbers too large for a double (such as 1e999) are not "
    "allowed"
)


class FiniteJsonMiddleware:
    """Refuse JSON request bodies holding ``NaN``, ``Infinity`` or a number that overflows a double (``1e999``)
    with 422, in the shape of FastAPI's validation errors.

    Python's JSON parser accepts those, and they then break every later step: the validation error that echoes
    them cannot be rendered as JSON (a 500 with two tracebacks), and job parameters holding them cannot be stored.
    Bodies that are not valid JSON pass through to FastAPI's own error. Runs inside :class:`BodyLimitMiddleware`,
    so the body it reads is already bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        disconnect: Message | None = None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnect = message
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _non_finite(body) if disconnect is None and body else None
        if problem is not None:
            logger.info(
                "refused %s %s: non-finite number %s in its JSON body",
                scope["method"],
                scope["path"],
                problem,
            )
            error = {"type": "finite_number", "loc": ["body"], "msg": NON_FINITE_MESSAGE, "input": problem}
            await send_json_error(send, 422, [error])
            return
        await self.app(scope, replaying(body, disconnect, receive), send)


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI would parse this request's body as JSON: an ``application/json`` or ``application/*+json``
    content type, or none at all."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return True


def _non_finite(body: bytes) -> str | None:
    """The first non-finite number literal in a JSON ``body`` (as written), or None (also for invalid JSON)."""
    try:
        json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        return str(exc)[:40]
    except (ValueError, RecursionError):  # not JSON (or absurdly nested): FastAPI answers that itself
        return None
    return None
