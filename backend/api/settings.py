"""Server settings: where the database and data live, the write token, request limits, CORS.

Every field has a safe default; :meth:`Settings.from_env` reads the ``CONCEPTEVO_*`` environment variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Repository root (``backend/api/settings.py`` → three levels up).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Where ``npm run build`` puts the front end.
DEFAULT_FRONTEND_DIST = REPO_ROOT / "frontend" / "dist"

#: Request bodies above this many bytes are refused with 413.
DEFAULT_MAX_BODY_BYTES = 1 << 20

#: A request body not received in full within this many seconds is refused with 408 (slow-body clients).
DEFAULT_BODY_TIMEOUT_S = 10.0

#: Cache policy of computed data (points, concept labels, patch images). None of it is immutable — a rebuilt space
#: keeps its id, a recomputed snapshot rewrites its patch files at the same paths — so a cache may keep it but must
#: revalidate it (``If-None-Match`` with the strong ``ETag`` → 304 while it did not change).
REVALIDATE_CACHE_CONTROL = "no-cache"

#: Cache lifetime of what is immutable by construction: the front end's content-hashed build assets. One year.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of one API application instance.

    Attributes:
        db_url: SQLAlchemy URL of the store; ``None`` lets the store pick its configured default.
        data_dir: directory that patch files are relative to; ``None`` asks the store (``CONCEPTEVO_DATA``).
        token: when set, every write request (POST/PUT/PATCH/DELETE) needs ``Authorization: Bearer <token>``.
        max_body_bytes: request bodies larger than this are refused with 413 (also chunked ones).
        body_timeout_s: a request body must arrive in full within this many seconds, else 408.
        frontend_dist: built front end served at ``/`` when the directory holds an ``index.html``.
        cors_origins: allowed CORS origins; empty (the default) means no CORS headers at all.
        busy_retries: how many times a read/write hitting a locked database is retried before 503.
        busy_backoff_s: first retry delay; doubled on each retry.
        neighbours_max_k: upper bound of ``k`` for nearest-neighbour queries.
    """

    db_url: str | None = None
    data_dir: Path | None = None
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    frontend_dist: Path = DEFAULT_FRONTEND_DIST
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    busy_retries: int = 4
    busy_backoff_s: float = 0.05
    neighbours_max_k: int = 100

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the environment (``CONCEPTEVO_DB``, ``CONCEPTEVO_DATA``, ``CONCEPTEVO_TOKEN``,
        ``CONCEPTEVO_CORS_ORIGINS`` comma-separated, ``CONCEPTEVO_MAX_BODY_BYTES``, ``CONCEPTEVO_BODY_TIMEOUT_S``), then
        ``overrides``."""
        env = os.environ
        values: dict[str, object] = {
            "db_url": env.get("CONCEPTEVO_DB") or None,
            "data_dir": Path(env["CONCEPTEVO_DATA"]) if env.get("CONCEPTEVO_DATA") else None,
            "token": env.get("CONCEPTEVO_TOKEN") or None,
            "cors_origins": tuple(
                o.strip() for o in env.get("CONCEPTEVO_CORS_ORIGINS", "").split(",") if o.strip()
            ),
        }
        if env.get("CONCEPTEVO_MAX_BODY_BYTES"):
            values["max_body_bytes"] = int(env["CONCEPTEVO_MAX_BODY_BYTES"])
        if env.get("CONCEPTEVO_BODY_TIMEOUT_S"):
            values["body_timeout_s"] = float(env["CONCEPTEVO_BODY_TIMEOUT_S"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
