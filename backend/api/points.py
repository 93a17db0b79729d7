"""The compact binary encoding of per-neuron columns: the points of a snapshot, its concept labels, ….

One layout for every columnar endpoint (all little-endian)::

    uint32            header length H (bytes)
    H bytes           UTF-8 JSON header, padded with spaces so that 4 + H is a multiple of 4:
                      {"n": n, "columns": [{"name": "neuron_id", "dtype": "int32"}, ...], <endpoint fields>}
    <dtype>[n]        first column
    <dtype>[n]        second column, …

Every dtype is 4 bytes wide, so because the columns start at a 4-byte aligned offset, a browser can view them
without copying (``new Int32Array(buf, 4 + H, n)``, ``new Float32Array(buf, 4 + H + 8 * n, n)``, ...).

- points (:data:`POINT_COLUMNS`): ``neuron_id int32, layer_idx int32, x float32, y float32``; the column block is
  exactly the store's packed ``points`` blob, so encoding costs one concatenation.
- concepts (:data:`CONCEPT_COLUMNS`): ``neuron_id int32, class_idx int32, share float32``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence

import numpy as np

#: A column: its name and its numpy dtype name (little-endian, 4 bytes wide).
Column = tuple[str, str]

#: Column names and dtypes of the points, in the order they follow the header.
POINT_COLUMNS: tuple[Column, ...] = (
    ("neuron_id", "int32"),
    ("layer_idx", "int32"),
    ("x", "float32"),
    ("y", "float32"),
)

#: Column names and dtypes of the concept labels (dominant stimulus class per neuron).
CONCEPT_COLUMNS: tuple[Column, ...] = (
    ("neuron_id", "int32"),
    ("class_idx", "int32"),
    ("share", "float32"),
)

#: Bytes per point across all columns.
BYTES_PER_POINT = 16


def binary_format_doc(columns: Sequence[Column], header_fields: Sequence[str]) -> str:
    """The Markdown description of the binary layout of one endpoint (for its OpenAPI description).

    Args:
        columns: the endpoint's columns in order.
        header_fields: the endpoint's own header keys, after ``n`` and ``columns``.

    Returns:
        One paragraph.
    """
    fields = "".join(f', "{name}"' for name in header_fields)
    cols = ", ".join(f"`{dtype}[n] {name}`" for name, dtype in columns)
    return (
        "Binary layout (little-endian): `uint32` header length H; H bytes of UTF-8 JSON "
        f'`{{"n", "columns": [{{"name", "dtype"}}...]{fields}}}` padded with spaces so '
        f"that 4 + H is a multiple of 4; then the columns one after the other: {cols}. "
        "Typed-array views can be taken directly at offset 4 + H."
    )


POINTS_FORMAT_DOC = binary_format_doc(POINT_COLUMNS, ("space_id", "snapshot_id", "epoch"))
CONCEPTS_FORMAT_DOC = binary_format_doc(
    CONCEPT_COLUMNS, ("space_id", "snapshot_id", "epoch", "k", "class_names")
)


class PointsBlobError(ValueError):
    """A stored points blob whose size does not match a whole number of points."""


def point_count(blob: bytes) -> int:
    """Number of points in a packed column blob; raises :class:`PointsBlobError` on a malformed size."""
    if len(blob) % BYTES_PER_POINT:
        raise PointsBlobError(f"points blob of {len(blob)} bytes is not a multiple of {BYTES_PER_POINT}")
    return len(blob) // BYTES_PER_POINT


def pack_columns(columns: Sequence[Column], arrays: Sequence[np.ndarray]) -> bytes:
    """The column block: each array cast to its column's little-endian dtype, one after the other.

    Args:
        columns: names and dtypes.
        arrays: one array per column, all of the same length.

    Returns:
        The concatenated bytes.
    """
    if len(columns) != len(arrays) or len({len(a) for a in arrays}) > 1:
        raise ValueError("pack_columns needs one array per column, all of the same length")
    return b"".join(
        np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
        for (_, dtype), a in zip(columns, arrays, strict=True)
    )


def encode_columns(block: bytes, *, n: int, columns: Sequence[Column], **fields: object) -> bytes:
    """The binary response body: length-prefixed, padded JSON header, then the column ``block``.

    Args:
        block: the packed columns (``n`` values each, see :func:`pack_columns`).
        n: the number of rows.
        columns: their names and dtypes, in ``block`` order.
        **fields: the endpoint's own header fields (JSON-able), after ``n`` and ``columns``.

    Returns:
        The body (see the module docstring).
    """
    header = json.dumps(
        {"n": n, "columns": [{"name": name, "dtype": dtype} for name, dtype in columns], **fields},
        separators=(",", ":"),
    ).encode()
    header += b" " * (-(4 + len(header)) % 4)
    return struct.pack("<I", len(header)) + header + block


def encode_points(blob: bytes, *, space_id: int, snapshot_id: int, epoch: int) -> bytes:
    """The binary response body for a packed points ``blob`` (see the module docstring)."""
    return encode_columns(
        blob,
        n=point_count(blob),
        columns=POINT_COLUMNS,
        space_id=space_id,
        snapshot_id=snapshot_id,
        epoch=epoch,
    )


def decode_columns(body: bytes) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """Inverse of :func:`encode_columns`: the header and the columns as numpy arrays (for tests and clients)."""
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


#: The points' decoder is the generic one (kept under its first name for clients and tests).
decode_points = decode_columns


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


def content_etag(prefix: str, block: bytes) -> str:
    """A strong ETag: a hash of ``prefix`` (what identifies the answer) and the column bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(prefix.encode())
    h.update(block)
    return f'"{h.hexdigest()}"'


def points_etag(blob: bytes, *, space_id: int, snapshot_id: int, epoch: int) -> str:
    """A strong ETag for the points of (space, snapshot): a hash of the ids and the column bytes."""
    return content_etag(f"{space_id}:{snapshot_id}:{epoch}:", blob)


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
