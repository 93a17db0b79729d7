"""What job answers may tell anyone who can read the API (reads need no token): no absolute path of the server's
disk and no worker host identity.

- A path under the data folder is shown relative to it (``demo/runs/healthy/epoch_001.pt``); any other absolute
  path by its last part only (``…/epoch_001.pt``).
- A worker id (``host:pid:random`` by default) is shown as ``worker-`` + the first 8 hex digits of its BLAKE2b
  hash: opaque, yet the same worker has the same name in every answer, on every server.

The store keeps the whole text: ``conceptevo jobs list`` and the worker's log show it to the operator.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: A worker id as :func:`backend.store.queue.default_worker_id` makes them: ``host:pid:6 hex digits``.
_DEFAULT_WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*:\d+:[0-9a-f]{6}\b")
#: An absolute POSIX path (not part of a word, a relative path or a URL) or a Windows drive path.
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w./~:-])(?:/|[A-Za-z]:[\\/])[^\s'\"`,;()\[\]{}<>|*?]*[^\s'\"`,;()\[\]{}<>|*?.:]"
)


def worker_name(worker_id: str | None) -> str | None:
    """The opaque, stable name shown for a worker id (None stays None)."""
    if worker_id is None:
        return None
    return "worker-" + hashlib.blake2b(worker_id.encode(), digest_size=4).hexdigest()


class Redactor:
    """Rewrites the text of job answers (see the module docstring) for one data folder."""

    def __init__(self, data_dirs: Iterable[Path | str | None]) -> None:
        roots = {str(Path(d)).rstrip("/\\") for d in data_dirs if d}
        # the longest first, so that a folder inside another one is cut at its own root
        self._roots = sorted((r for r in roots if r), key=len, reverse=True)

    def _path(self, match: re.Match[str]) -> str:
        path = match.group(0)
        if path.startswith("/api/"):  # this API's own URLs, in hints
            return path
        for root in self._roots:
            if path == root:
                return "."
            if path.startswith(root) and path[len(root)] in "/\\":
                return path[len(root) + 1 :]
        name = re.split(r"[\\/]", path.rstrip("/\\"))[-1]
        return f"…/{name}" if name else "…"

    def text(self, value: str | None, worker_ids: Iterable[str | None] = ()) -> str | None:
        """``value`` with paths and worker ids rewritten (None stays None)."""
        if not value:
            return value
        for ident in worker_ids:
            if ident:
                value = value.replace(ident, worker_name(ident) or "")
        value = _DEFAULT_WORKER_ID.sub(lambda m: worker_name(m.group(0)) or "", value)
        return _ABSOLUTE_PATH.sub(self._path, value)

    def value(self, value: Any) -> Any:
        """Every string inside a JSON value rewritten (a job's result)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value
