"""Small file helpers shared by the worker's commands and jobs."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and one rename, so that a reader sees the old
    file or the new one, never half of one (and a crash leaves the old one)."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
