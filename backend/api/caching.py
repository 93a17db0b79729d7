"""HTTP caching of computed data that can change (issue 11, item 10): ``Cache-Control: no-cache`` with a strong
``ETag`` computed from the content, and 304 when the request's ``If-None-Match`` matches it.

A rebuilt space keeps its id and a recomputed snapshot rewrites its patch files at the same paths, so ids and
paths do not identify content: the content itself does. A browser keeps what it fetched and revalidates it; it
gets 304 (no body) while nothing changed and the new data as soon as something did.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from fastapi import Header, Response

from .points import etag_matches
from .settings import REVALIDATE_CACHE_CONTROL

#: The request header a revalidating cache sends.
IfNoneMatch = Annotated[str | None, Header(max_length=1024)]


def file_etag(path: Path, variant: str = "") -> str:
    """A strong ETag of a file's bytes (and ``variant``: what of the file an answer shows, e.g. one tile)."""
    return bytes_etag(path.read_bytes(), variant)


def bytes_etag(data: bytes, variant: str = "") -> str:
    """A strong ETag of ``data`` (e.g. one sprite's bytes in a patch pack) and ``variant``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(variant.encode())
    h.update(b"\0")
    h.update(data)
    return f'"{h.hexdigest()}"'


def cache_headers(etag: str) -> dict[str, str]:
    """The caching headers of an answer with this ETag."""
    return {"ETag": etag, "Cache-Control": REVALIDATE_CACHE_CONTROL}


def not_modified(if_none_match: str | None, etag: str) -> Response | None:
    """The 304 answer when ``If-None-Match`` matches ``etag``, else None (send the content)."""
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=cache_headers(etag))
    return None
