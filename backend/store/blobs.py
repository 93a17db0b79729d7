"""Compact binary encodings of arrays stored in BLOB columns: the ONE place that packs and unpacks them.

All blobs are little-endian and headerless: a float32 vector of n values is exactly 4·n bytes. Shapes that the
blob does not carry (e.g. ``dim`` of an ``n × dim`` matrix) live in the owning row (``Space.params["dim"]``).

The ``points`` blob of a (space, snapshot) is four packed columns of equal length ``n``, one after the other::

    neuron_id int32[n] | layer_idx int32[n] | x float32[n] | y float32[n]      (16·n bytes)

so a client can map it with four typed-array views without parsing.

The ``boxes`` blob of a neuron's patch set is ``int32[k, 5]``, one ``(image_idx, y0, x0, y1, x1)`` per stimulus
rank.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

_F32 = np.dtype("<f4")
_I32 = np.dtype("<i4")
_POINT_BYTES = 16


def pack_f32(values: npt.ArrayLike) -> bytes:
    """Pack any array-like of numbers as little-endian float32 bytes (C order, shape dropped)."""
    return np.ascontiguousarray(np.asarray(values, dtype=_F32)).tobytes()


def unpack_f32(blob: bytes, shape: tuple[int, ...] | None = None) -> npt.NDArray[np.float32]:
    """Unpack little-endian float32 bytes into a writable array, reshaped to ``shape`` if given."""
    if len(blob) % 4:
        raise ValueError(f"float32 blob of {len(blob)} bytes is not a multiple of 4")
    arr = np.frombuffer(blob, dtype=_F32).astype(np.float32)
    return arr.reshape(shape) if shape is not None else arr


def pack_i32(values: npt.ArrayLike) -> bytes:
    """Pack integers as little-endian int32 bytes; values outside the int32 range raise ``ValueError``."""
    arr = np.asarray(values)
    if arr.size and arr.dtype.kind in "iu":
        if int(arr.min()) < -(2**31) or int(arr.max()) >= 2**31:
            raise ValueError("integer value out of int32 range")
    elif arr.size and arr.dtype.kind not in "b":
        raise ValueError(f"expected integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr.astype(_I32)).tobytes()


def unpack_i32(blob: bytes, shape: tuple[int, ...] | None = None) -> npt.NDArray[np.int32]:
    """Unpack little-endian int32 bytes into a writable array, reshaped to ``shape`` if given."""
    if len(blob) % 4:
        raise ValueError(f"int32 blob of {len(blob)} bytes is not a multiple of 4")
    arr = np.frombuffer(blob, dtype=_I32).astype(np.int32)
    return arr.reshape(shape) if shape is not None else arr


BOX_FIELDS = ("image_idx", "y0", "x0", "y1", "x1")
"""The columns of a ``boxes`` blob, in order."""


def pack_boxes(boxes: npt.ArrayLike) -> bytes:
    """Pack a neuron's patch boxes, ``(k, 5)`` integers (see :data:`BOX_FIELDS`), as int32 bytes."""
    arr = np.asarray(boxes)
    if arr.ndim != 2 or arr.shape[1] != len(BOX_FIELDS) or not len(arr):
        raise ValueError(
            f"patch boxes must be (k ≥ 1, {len(BOX_FIELDS)}) {BOX_FIELDS}, got shape {arr.shape}"
        )
    return pack_i32(arr)


def unpack_boxes(blob: bytes) -> npt.NDArray[np.int32]:
    """The ``(k, 5)`` int32 boxes of a ``boxes`` blob."""
    if len(blob) % (4 * len(BOX_FIELDS)):
        raise ValueError(f"boxes blob of {len(blob)} bytes is not a multiple of {4 * len(BOX_FIELDS)}")
    return unpack_i32(blob, (-1, len(BOX_FIELDS)))


def pack_u8(values: npt.ArrayLike) -> bytes:
    """Pack a boolean or 0/1 mask as one uint8 per element."""
    return np.ascontiguousarray(np.asarray(values).astype(np.uint8)).tobytes()


def unpack_u8(blob: bytes) -> npt.NDArray[np.uint8]:
    """Unpack a uint8 mask (writable copy)."""
    return np.frombuffer(blob, dtype=np.uint8).copy()


class Points(NamedTuple):
    """The unpacked ``points`` blob of one (space, snapshot): four columns of equal length."""

    neuron_id: npt.NDArray[np.int32]
    layer_idx: npt.NDArray[np.int32]
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32]


def pack_points(
    neuron_id: npt.ArrayLike, layer_idx: npt.ArrayLike, x: npt.ArrayLike, y: npt.ArrayLike
) -> bytes:
    """Pack the four point columns (see module docstring); all must have the same length."""
    cols = [np.asarray(c).reshape(-1) for c in (neuron_id, layer_idx, x, y)]
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise ValueError(f"point columns differ in length: {[len(c) for c in cols]}")
    return pack_i32(cols[0]) + pack_i32(cols[1]) + pack_f32(cols[2]) + pack_f32(cols[3])


def unpack_points(blob: bytes) -> Points:
    """Inverse of :func:`pack_points`."""
    if len(blob) % _POINT_BYTES:
        raise ValueError(f"points blob of {len(blob)} bytes is not a multiple of {_POINT_BYTES}")
    n = len(blob) // _POINT_BYTES
    q = 4 * n
    return Points(
        neuron_id=unpack_i32(blob[:q]),
        layer_idx=unpack_i32(blob[q : 2 * q]),
        x=unpack_f32(blob[2 * q : 3 * q]),
        y=unpack_f32(blob[3 * q :]),
    )
