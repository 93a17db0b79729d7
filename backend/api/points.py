"""The compact binary encoding of one snapshot's points in one space.

Layout (all little-endian)::

    uint32            header length H (bytes)
    H bytes           UTF-8 JSON header, padded with spaces so that 4 + H is a multiple of 4:
                      {"n": n, "columns": [{"name": "neuron_id", "dtype": "int32"}, ...],
                       "space_id": s, "snapshot_id": p, "epoch": e}
    int32[n]          neuron_id
    int32[n]          layer_idx
    float32[n]        x
    float32[n]        y

Because the columns start at a 4-byte aligned offset, a browser can view them without copying
(``new Int32Array(buf, 4 + H, n)``, ``new Float32Array(buf, 4 + H + 8 * n, n)``, ...).
The column block is exactly the store's packed ``points`` blob, so encoding costs one concatenation.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct

import numpy as np

#: Column names and dtypes, in the order they follow the header.
POINT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("neuron_id", "int32"),
    ("layer_idx", "int32"),
    ("x", "float32"),
    ("y", "float32"),
)

#: Bytes per point across all columns.
BYTES_PER_POINT = 16

POINTS_FORMAT_DOC = (
    "Binary layout (little-endian): `uint32` header length H; H bytes of UTF-8 JSON "
    '`{"n", "columns": [{"name", "dtype"}...], "space_id", "snapshot_id", "epoch"}` padded with spaces so '
    "that 4 + H is a multiple of 4; then the columns one after the other: `int32[n] neuron_id`, "
    "`int32[n] layer_idx`, `float32[n] x`, `float32[n] y`. "
    "Typed-array views can be taken directly at offset 4 + H."
)


class PointsBlobError(ValueError):
    """A stored points blob whose size does not match a whole number of points."""


def point_count(blob: bytes) -> int:
    """Number of points in a packed column blob; raises :class:`PointsBlobError` on a malformed size."""
    if len(blob) % BYTES_PER_POINT:
        raise PointsBlobError(f"points blob of {len(blob)} bytes is not a multiple of {BYTES_PER_POINT}")
    return len(blob) // BYTES_PER_POINT


def encode_points(blob: bytes, *, space_id: int, snapshot_id: int, epoch: int) -> bytes:
    """The binary response body for a packed column ``blob`` (see the module docstring)."""
    n = point_count(blob)
    header = json.dumps(
        {
            "n": n,
            "columns": [{"name": name, "dtype": dtype} for name, dtype in POINT_COLUMNS],
            "space_id": space_id,
            "snapshot_id": snapshot_id,
            "epoch": epoch,
        },
        separators=(",", ":"),
    ).encode()
    header += b" " * (-(4 + len(header)) % 4)
    return struct.pack("<I", len(header)) + header + blob


def decode_points(body: bytes) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """Inverse of :func:`encode_points`: the header and the columns as numpy arrays (for tests and clients)."""
    (h,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4 : 4 + h].decode())
    n = int(header["n"])
    offset = 4 + h
    columns: dict[str, np.ndarray] = {}
    for col in header["columns"]:
        dtype = np.dtype(col["dtype"]).newbyteorder("<")
        columns[col["name"]] = np.frombuffer(body, dtype=dtype, count=n, offset=offset)
        offset += n * dtype.itemsize
    if offset != len(body):
        raise PointsBlobError(f"body has {len(body) - offset} trailing bytes")
    return header, columns


def unpack_columns(blob: bytes) -> dict[str, np.ndarray]:
    """The four columns of a packed points blob as numpy arrays (views, no copy)."""
    n = point_count(blob)
    out: dict[str, np.ndarray] = {}
    for i, (name, dtype) in enumerate(POINT_COLUMNS):
        out[name] = np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=4 * n * i)
    return out


def finite_or_none(values: np.ndarray) -> list[float | None]:
    """A float column as a JSON-ready list, NaN/inf (undefined positions) as ``None``."""
    out: list[float | None] = values.tolist()
    if not np.isfinite(values).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def points_etag(blob: bytes, *, space_id: int, snapshot_id: int, epoch: int) -> str:
    """A strong ETag for the points of (space, snapshot): a hash of the ids and the column bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{space_id}:{snapshot_id}:{epoch}:".encode())
    h.update(blob)
    return f'"{h.hexdigest()}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value matches ``etag`` (handles lists, ``*`` and weak tags)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
