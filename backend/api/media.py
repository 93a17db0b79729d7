"""Media files: a file path read from the database is served only if it lies in the data dir, and an image only
if its header says it is one of the expected formats and not larger than :data:`MAX_IMAGE_PIXELS` — checked before
anything is decoded, so a decompression bomb is never expanded. Unreadable files are logged once each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from PIL import Image

logger = logging.getLogger(__name__)

#: Media types of the patch image formats the worker may write.
MEDIA_TYPES = {
    ".png": "image/png",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}

#: Media type of each image format (as PIL names it) that may be served, whatever the file's suffix.
FORMAT_MEDIA_TYPES = {"PNG": "image/png", "WEBP": "image/webp", "JPEG": "image/jpeg", "GIF": "image/gif"}

#: Images with more pixels than this are never decoded or served (a sprite of 64-px tiles is 64 × 64k px at most).
MAX_IMAGE_PIXELS = 1 << 22

_warned: set[str] = set()
_warned_lock = threading.Lock()


class UnreadableMedia(Exception):
    """The file cannot be served: not an image of an expected format, too large, truncated or unreadable."""


def warn_once(key: str, message: str, *args: object) -> None:
    """Log ``message`` as a warning the first time ``key`` is seen (per process; bounded memory)."""
    with _warned_lock:
        if key in _warned:
            return
        if len(_warned) >= 4096:
            _warned.clear()
        _warned.add(key)
    logger.warning(message, *args)


def open_image(path: Path | BinaryIO) -> Image.Image:
    """Open ``path`` (a file, or bytes read from one) lazily (its header only): an image of an expected format
    within the pixel limit, else :class:`UnreadableMedia`. The caller decodes it (``load``/``crop``) inside
    ``with`` and handles :data:`DECODE_ERRORS`."""
    try:
        image = Image.open(path, formats=list(FORMAT_MEDIA_TYPES))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableMedia(f"not a readable image ({type(exc).__name__})") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise UnreadableMedia(f"{width} × {height} px is over the {MAX_IMAGE_PIXELS} pixel limit")
    return image


#: What decoding a (header-checked) image may raise when its data is bad.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def safe_media_path(
    data_dir: Path, relative: str | None, suffixes: Collection[str] = MEDIA_TYPES
) -> Path | None:
    """The absolute path of ``relative`` under ``data_dir`` if it is a regular file inside it, else ``None``.

    Refuses empty names, NUL bytes, absolute paths (POSIX or Windows style), and anything that resolves
    (following ``..`` and symbolic links) outside the resolved ``data_dir``; also refuses file types other than
    ``suffixes`` (by default the image types; a patch pack passes its own).
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
        if not full.is_relative_to(root):
            logger.warning("refused media path outside the data directory: %r", relative)
            return None
        if full.suffix.lower() not in suffixes or not full.is_file():
            return None
    except (OSError, RuntimeError, ValueError) as exc:  # e.g. a name longer than the file system allows
        warn_once(relative, "media path %r cannot be used: %s", relative[:300], type(exc).__name__)
        return None
    return full


#: The longest byte range of a pack served as one sprite (a 64 × 64k-pixel JPEG is far smaller).
MAX_RANGE_BYTES = 32 << 20


def read_byte_range(path: Path, offset: int, length: int) -> bytes:
    """``length`` bytes of ``path`` from ``offset`` (one sprite of a patch pack), else :class:`UnreadableMedia`:
    a range that is negative, longer than :data:`MAX_RANGE_BYTES` or past the end of the file."""
    if offset < 0 or not 0 < length <= MAX_RANGE_BYTES:
        raise UnreadableMedia(f"byte range {offset}+{length} is not a sprite's")
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read(length)
    except OSError as exc:
        raise UnreadableMedia(f"cannot be read ({type(exc).__name__})") from None
    if len(data) != length:
        raise UnreadableMedia(f"ends before byte {offset + length} (truncated pack)")
    return data
