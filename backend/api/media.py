"""Path safety for media files: a file path read from the database is served only if it lies in the data dir."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath, PureWindowsPath

logger = logging.getLogger(__name__)

#: Media types of the patch image formats the worker may write.
MEDIA_TYPES = {
    ".png": "image/png",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}


def safe_media_path(data_dir: Path, relative: str | None) -> Path | None:
    """The absolute path of ``relative`` under ``data_dir`` if it is a regular file inside it, else ``None``.

    Refuses empty names, NUL bytes, absolute paths (POSIX or Windows style), and anything that resolves
    (following ``..`` and symbolic links) outside the resolved ``data_dir``; also refuses unknown file types.
    """
    if not relative or "\x00" in relative:
        return None
    if (
        PurePosixPath(relative).is_absolute()
        or PureWindowsPath(relative).is_absolute()
        or relative.startswith("\\")
    ):
        logger.warning("refused absolute media path from the database: %r", relative)
        return None
    root = data_dir.resolve()
    try:
        full = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not full.is_relative_to(root):
        logger.warning("refused media path outside the data directory: %r", relative)
        return None
    if full.suffix.lower() not in MEDIA_TYPES or not full.is_file():
        return None
    return full
