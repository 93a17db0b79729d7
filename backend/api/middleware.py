"""Pure-ASGI middleware: the write token check and the request body size limit.

Both answer before the application sees the request, with a small JSON body ``{"detail": ...}``.
"""

from __future__ import annotations

import hmac
import json
import logging
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


async def send_json_error(
    send: Send, status: int, detail: str, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a complete ``{"detail": detail}`` JSON response with ``status``."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
    """Refuse request bodies larger than ``max_bytes`` with 413, whether sized or chunked.

    A declared ``Content-Length`` above the limit is refused at once; otherwise the body is read (at most
    ``max_bytes`` + one chunk) and replayed to the application, so a chunked body that grows past the limit is
    refused too, before any handler runs.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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
        while True:
            message = await receive()
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

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                if disconnect is not None:
                    return disconnect
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        logger.info("refused %s %s: body over %d bytes", scope["method"], scope["path"], self.max_bytes)
        await send_json_error(
            send, 413, f"request body too large (limit {self.max_bytes} bytes)", [(b"connection", b"close")]
        )
