"""Partial top-k of sharded stimuli passes (``stimuli_shard`` jobs, ``worker.engine.shards``).

One row per (snapshot, n_shards, shard, k, batch_size): that image range's k best images per neuron (global
indices), their maxima and argmax locations, plus the neuron layout the merge needs. A shard job writes its
row in the transaction that marks it done (:func:`backend.store.queue.finishing`), so a killed shard leaves
nothing; a recomputed shard replaces its row. The table is new (no migration): it is created on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import JSON, DateTime, ForeignKey, Integer, LargeBinary, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from backend.store.blobs import pack_f32, pack_i32, unpack_f32, unpack_i32
from backend.store.config import Store
from backend.store.datafolder import ensure_table
from backend.store.errors import ConflictError
from backend.store.models import Base, utcnow


class StimuliShard(Base):
    """One image range's partial stimuli of one snapshot."""

    __tablename__ = "stimuli_shards"
    __table_args__ = (
        UniqueConstraint("snapshot_id", "n_shards", "shard", "k", "batch_size", name="uq_stimuli_shards_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"), index=True)
    n_shards: Mapped[int] = mapped_column(Integer)
    shard: Mapped[int] = mapped_column(Integer)
    k: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    n_neurons: Mapped[int] = mapped_column(Integer)
    indices: Mapped[bytes] = mapped_column(LargeBinary)  # int32 (n_neurons, k), global image indices
    maxima: Mapped[bytes] = mapped_column(LargeBinary)  # float32 (n_neurons, k)
    argmax_yx: Mapped[bytes] = mapped_column(LargeBinary)  # int32 (n_neurons, k, 2)
    layer_of: Mapped[bytes] = mapped_column(LargeBinary)  # int32 (n_neurons,)
    channel_of: Mapped[bytes] = mapped_column(LargeBinary)  # int32 (n_neurons,)
    layers: Mapped[list] = mapped_column(JSON)  # [[name, height, width], ...]
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


@dataclass(frozen=True)
class ShardKey:
    """Which sharded pass: a snapshot, split into ``n_shards`` ranges, ``k`` stimuli, ranges on ``batch_size``."""

    snapshot_id: int
    n_shards: int
    k: int
    batch_size: int


#: The fields a :class:`ShardPart` shares, by name, with the engine's ``Stimuli`` (this module imports no worker).
STIMULI_FIELDS = ("indices", "maxima", "argmax_yx", "layer_of", "channel_of", "layer_names", "map_sizes")


@dataclass(frozen=True)
class ShardPart:
    """One stored range, as arrays (the :data:`STIMULI_FIELDS` of its ``Stimuli``, indices global)."""

    shard: int
    start: int
    stop: int
    indices: np.ndarray
    maxima: np.ndarray
    argmax_yx: np.ndarray
    layer_of: np.ndarray
    channel_of: np.ndarray
    layer_names: list[str]
    map_sizes: list[tuple[int, int]]


def shard_ranges(n_images: int, n_shards: int, batch_size: int, k: int) -> list[tuple[int, int]]:
    """Split ``range(n_images)`` into ``n_shards`` contiguous ``(start, stop)`` ranges as equal as possible,
    with every boundary on a multiple of ``batch_size`` and at least ``k`` images in each.

    Args:
        n_images: images in the dataset.
        n_shards: ranges wanted.
        batch_size: the pass's batch size (boundaries are multiples of it).
        k: stimuli per neuron (a range needs at least ``k`` images).

    Returns:
        The ranges, in order, covering every image once.

    Raises:
        ConflictError: a non-positive argument, or more shards than whole batches / ``k``-image ranges.
    """
    if min(n_images, n_shards, batch_size, k) < 1:
        raise ConflictError(
            f"shards need positive sizes, got {n_images} images, {n_shards} shards, batch {batch_size}, k {k}"
        )
    n_batches = max(1, n_images // batch_size)  # whole batches; a last, partial one joins the last shard
    if n_shards > n_batches:
        raise ConflictError(
            f"{n_shards} shards of {n_images} images need at least one whole batch of {batch_size} each; "
            f"use at most {n_batches} shards or a smaller batch size"
        )
    cuts = [round(i * n_batches / n_shards) * batch_size for i in range(n_shards)] + [n_images]
    ranges = [(start, min(stop, n_images)) for start, stop in zip(cuts, cuts[1:], strict=False)]
    small = [r for r in ranges if r[1] - r[0] < k]
    if small:
        raise ConflictError(
            f"shard {small[0]} holds fewer than k={k} images; use fewer than {n_shards} shards"
        )
    return ranges


def ensure_shard_table(store: Store) -> None:
    """Create ``stimuli_shards`` if this database does not have it yet."""
    with store.engine.begin() as conn:
        ensure_table(conn, StimuliShard.__table__)


def write_stimuli_shard(session: Session, key: ShardKey, part: ShardPart) -> None:
    """Store (or replace) one range's partial stimuli, inside the caller's transaction."""
    n = int(part.indices.shape[0])
    session.execute(delete(StimuliShard).where(*_matches(key), StimuliShard.shard == part.shard))
    session.add(
        StimuliShard(
            snapshot_id=key.snapshot_id,
            n_shards=key.n_shards,
            shard=part.shard,
            k=key.k,
            batch_size=key.batch_size,
            start=part.start,
            stop=part.stop,
            n_neurons=n,
            indices=pack_i32(part.indices),
            maxima=pack_f32(part.maxima),
            argmax_yx=pack_i32(part.argmax_yx),
            layer_of=pack_i32(part.layer_of),
            channel_of=pack_i32(part.channel_of),
            layers=[
                [name, int(h), int(w)] for name, (h, w) in zip(part.layer_names, part.map_sizes, strict=True)
            ],
        )
    )


def stimuli_shards(session: Session, key: ShardKey) -> list[ShardPart]:
    """The stored ranges of ``key``, in shard order (possibly fewer than ``n_shards``: some not done yet)."""
    rows = session.scalars(select(StimuliShard).where(*_matches(key)).order_by(StimuliShard.shard)).all()
    return [
        ShardPart(
            shard=row.shard,
            start=row.start,
            stop=row.stop,
            indices=unpack_i32(row.indices, (row.n_neurons, row.k)).astype(np.int64),
            maxima=unpack_f32(row.maxima, (row.n_neurons, row.k)),
            argmax_yx=unpack_i32(row.argmax_yx, (row.n_neurons, row.k, 2)),
            layer_of=unpack_i32(row.layer_of),
            channel_of=unpack_i32(row.channel_of),
            layer_names=[str(name) for name, _h, _w in row.layers],
            map_sizes=[(int(h), int(w)) for _name, h, w in row.layers],
        )
        for row in rows
    ]


def stored_shard_numbers(session: Session, key: ShardKey) -> set[int]:
    """Which ranges of ``key`` are stored (without reading their arrays)."""
    return set(session.scalars(select(StimuliShard.shard).where(*_matches(key))).all())


def delete_stimuli_shards(session: Session, key: ShardKey) -> int:
    """Remove every stored range of ``key`` (once merged and published), inside the caller's transaction."""
    return int(session.execute(delete(StimuliShard).where(*_matches(key))).rowcount or 0)


def _matches(key: ShardKey) -> tuple:
    return (
        StimuliShard.snapshot_id == key.snapshot_id,
        StimuliShard.n_shards == key.n_shards,
        StimuliShard.k == key.k,
        StimuliShard.batch_size == key.batch_size,
    )
