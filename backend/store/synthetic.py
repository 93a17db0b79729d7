"""A deterministic synthetic ConceptEvo world, written through the store's write helpers.

For API tests (a small world with real patch image files) and benchmarks (VGG16 scale: 4,224 neurons per
snapshot, many epochs and runs, plus one very large snapshot). No torch: positions, vectors, stimuli and
scores are random but reproducible from ``seed``; timestamps are fixed (:data:`FIXED_TIME`) so answers are
byte-for-byte reproducible.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from backend.store import writes
from backend.store.blobs import pack_points
from backend.store.config import Store
from backend.store.models import Dataset, Importance, Job, NeuronState, Run, Space, SpaceSnapshot

log = logging.getLogger(__name__)

#: Every timestamp of the synthetic world.
FIXED_TIME = datetime(2024, 1, 1, 0, 0, 0)

#: VGG16's conv channel counts (13 layers, 4,224 neurons).
VGG16_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)

CLASS_NAMES = ("circle", "square", "triangle", "star")


@dataclass
class SyntheticWorld:
    """Ids of what :func:`build_synthetic_store` wrote."""

    dataset_id: int
    space_id: int
    run_ids: list[int]
    #: ``snapshot_ids[r][e]``: snapshot of run ``r`` at epoch ``e``.
    snapshot_ids: list[list[int]]
    #: ``neuron_ids[r]``: the neuron ids of run ``r`` in (layer, channel) order.
    neuron_ids: list[list[int]]
    importance_ids: list[int] = field(default_factory=list)
    big_run_id: int | None = None
    big_snapshot_id: int | None = None
    n_patches: int = 0


def layer_channels(n_neurons: int) -> list[int]:
    """Channel counts of the synthetic layers: VGG16's for 4,224 neurons, else ~3 roughly equal layers."""
    if n_neurons == sum(VGG16_CHANNELS):
        return list(VGG16_CHANNELS)
    if n_neurons < 1:
        raise ValueError("n_neurons must be ≥ 1")
    n_layers = min(3, n_neurons) if n_neurons < 1000 else max(3, n_neurons // 8192)
    base, extra = divmod(n_neurons, n_layers)
    return [base + (1 if i < extra else 0) for i in range(n_layers)]


def tiny_png(rgb: tuple[int, int, int], size: int = 4) -> bytes:
    """A valid ``size``×``size`` single-colour RGB PNG (no image library needed)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * size
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


def build_synthetic_store(
    store: Store,
    n_neurons: int = 24,
    n_epochs: int = 3,
    n_runs: int = 2,
    extra_big_snapshot: int | None = None,
    seed: int = 0,
    *,
    data_dir: Path | None = None,
    n_images: int = 40,
    n_classes: int = 3,
    k: int = 3,
    dim: int = 8,
    patch_epochs: list[int] | None = None,
) -> SyntheticWorld:
    """Fill an empty store with a synthetic world and return its ids.

    Args:
        store: an open, empty store.
        n_neurons: neurons per run (4,224 gives VGG16's layers).
        n_epochs: snapshots per run (epochs ``0 .. n_epochs-1``), all computed in the one space.
        n_runs: training runs on the same dataset and architecture.
        extra_big_snapshot: if given, one more run with that many neurons and a single snapshot (epoch 0),
            computed in the same space.
        seed: random seed; the same arguments give the same database content.
        data_dir: where to write the patch image files (tiny PNGs); ``None`` writes patch rows only.
        n_images, n_classes, k, dim: dataset size, classes, stimuli per neuron, embedding dimension.
        patch_epochs: epochs whose patches are written (default: all); ``[]`` writes none.
    """
    if n_classes > len(CLASS_NAMES):
        raise ValueError(f"at most {len(CLASS_NAMES)} classes")
    rng = np.random.default_rng(seed)
    epochs_with_patches = set(range(n_epochs) if patch_epochs is None else patch_epochs)
    channels = layer_channels(n_neurons)
    world: SyntheticWorld

    with store.session() as s:
        ds = writes.register_dataset(
            s,
            "synthetic",
            "synthetic",
            list(CLASS_NAMES[:n_classes]),
            [(f"img/{i:05d}.png", i % n_classes) for i in range(n_images)],
        )
        run_ids: list[int] = []
        snapshot_ids: list[list[int]] = []
        neuron_ids: list[list[int]] = []
        for r in range(n_runs):
            run = writes.register_run(
                s, f"run-{r}", "synthetic-cnn", f"ckpt/run-{r}", ds.id, n_classes, f"run {r}"
            )
            layers = writes.register_layers(s, run.id, [(f"features.{i}", c) for i, c in enumerate(channels)])
            run_ids.append(run.id)
            neuron_ids.append(_neurons_of(s, [la.id for la in layers]))
            snaps = []
            for e in range(n_epochs):
                acc = round(0.3 + 0.6 * (e + 1) / n_epochs - 0.05 * r, 4)
                snap = writes.upsert_snapshot(
                    s,
                    run.id,
                    e,
                    f"ckpt/run-{r}/epoch-{e}.pt",
                    train_loss=round(2.0 / (e + 1), 4),
                    train_top1=acc,
                    train_top5=round(min(1.0, acc + 0.2), 4),
                    val_loss=round(2.2 / (e + 1), 4),
                    val_top1=round(acc - 0.05, 4),
                    val_top5=None if e == 0 else round(min(1.0, acc + 0.15), 4),
                )
                snaps.append(snap.id)
            snapshot_ids.append(snaps)
        space = writes.write_space(
            s,
            "synthetic-space",
            snapshot_ids[0][-1],
            ds.id,
            {"k": k, "dim": dim, "negatives": 3, "lr": 0.05, "epochs": 5, "seed": seed},
            None,
            rng.normal(size=(n_images, dim)).astype(np.float32),
            np.ones(n_images, dtype=bool),
            {"objective": [1.0, 0.5], "rmse": 0.1},
        )
        world = SyntheticWorld(ds.id, space.id, run_ids, snapshot_ids, neuron_ids)

    layer_idx = [np.repeat(np.arange(len(channels), dtype=np.int32), channels) for _ in range(n_runs)]
    for r in range(n_runs):
        ids = np.asarray(neuron_ids[r], dtype=np.int64)
        vec = rng.normal(size=(len(ids), dim)).astype(np.float32)
        prev: np.ndarray | None = None
        for e in range(n_epochs):
            vec = (vec + 0.3 * rng.normal(size=vec.shape)).astype(np.float32)
            stim, maxima = _stimuli(rng, len(ids), k, n_images)
            movement = None if prev is None else float(np.linalg.norm(vec - prev, axis=1).mean())
            with store.session() as s:
                _bulk_snapshot_in_space(
                    s,
                    world.space_id,
                    snapshot_ids[r][e],
                    ids,
                    layer_idx[r],
                    stim,
                    maxima,
                    vec,
                    coverage=1.0,
                    diversity=round(float(1.5 - 0.1 * e - 0.2 * r), 4),
                    movement=movement,
                )
                if e in epochs_with_patches:
                    world.n_patches += _write_patches(s, snapshot_ids[r][e], ids, stim, data_dir)
            prev = vec
        with store.session() as s:
            for c in range(n_classes):
                imp = writes.write_importance(
                    s,
                    run_ids[r],
                    0,
                    n_epochs - 1,
                    c,
                    n_images // n_classes,
                    ids,
                    np.round(rng.random(len(ids)), 3),
                    np.round(rng.normal(size=len(ids)), 3),
                )
                world.importance_ids.append(imp.id)

    if extra_big_snapshot:
        with store.session() as s:
            run = writes.register_run(
                s, "big", "synthetic-wide", "ckpt/big", world.dataset_id, n_classes, "big"
            )
            layers = writes.register_layers(
                s, run.id, [(f"wide.{i}", c) for i, c in enumerate(layer_channels(extra_big_snapshot))]
            )
            big_ids = np.asarray(_neurons_of(s, [la.id for la in layers]), dtype=np.int64)
            snap = writes.upsert_snapshot(s, run.id, 0, "ckpt/big/epoch-0.pt", val_top1=0.5)
            world.big_run_id, world.big_snapshot_id = run.id, snap.id
        vec = rng.normal(size=(len(big_ids), dim)).astype(np.float32)
        stim, maxima = _stimuli(rng, len(big_ids), k, n_images)
        big_channels = layer_channels(extra_big_snapshot)
        big_layers = np.repeat(np.arange(len(big_channels), dtype=np.int32), big_channels)
        with store.session() as s:
            _bulk_snapshot_in_space(
                s, world.space_id, snap.id, big_ids, big_layers, stim, maxima, vec, 1.0, 1.0, None
            )

    with store.session() as s:
        for model, column in (
            (Dataset, Dataset.created_at),
            (Run, Run.created_at),
            (Space, Space.created_at),
            (Importance, Importance.created_at),
            (Job, Job.created_at),
        ):
            s.execute(update(model).values({column.key: FIXED_TIME}))
        s.execute(update(SpaceSnapshot).values(computed_at=FIXED_TIME))
    log.info(
        "synthetic world: %d runs × %d epochs × %d neurons%s",
        n_runs,
        n_epochs,
        n_neurons,
        f" + {extra_big_snapshot} big" if extra_big_snapshot else "",
    )
    return world


def _bulk_snapshot_in_space(
    session: Session,
    space_id: int,
    snapshot_id: int,
    ids: np.ndarray,
    layer_idx: np.ndarray,
    stim: np.ndarray,
    maxima: np.ndarray,
    vec: np.ndarray,
    coverage: float | None,
    diversity: float | None,
    movement: float | None,
) -> None:
    """What ``writes.write_snapshot_in_space`` stores (positions = 3 × the first two vector dims), written with
    vectorised packing and chunked core ``insert()`` executemany — fast enough for millions of states.
    ``ids`` must be the run's neurons in (layer, channel) order, ``layer_idx`` their layer indices."""
    xy = (vec[:, :2] * 3.0).astype("<f4")
    session.add(
        SpaceSnapshot(
            space_id=space_id,
            snapshot_id=snapshot_id,
            computed_at=FIXED_TIME,
            coverage=coverage,
            diversity=diversity,
            movement=movement,
            n_points=len(ids),
            points=pack_points(ids, layer_idx, xy[:, 0], xy[:, 1]),
        )
    )
    session.flush()
    stim_b = np.ascontiguousarray(stim.astype("<i4"))
    max_b = np.ascontiguousarray(maxima.astype("<f4"))
    vec_b = np.ascontiguousarray(vec.astype("<f4"))
    xs, ys = xy[:, 0].astype(float).tolist(), xy[:, 1].astype(float).tolist()
    id_list = ids.tolist()
    for lo in range(0, len(ids), 5000):
        hi = min(lo + 5000, len(ids))
        session.execute(
            insert(NeuronState),
            [
                {
                    "space_id": space_id,
                    "snapshot_id": snapshot_id,
                    "neuron_id": id_list[i],
                    "stimuli": stim_b[i].tobytes(),
                    "maxima": max_b[i].tobytes(),
                    "vector": vec_b[i].tobytes(),
                    "x": xs[i],
                    "y": ys[i],
                }
                for i in range(lo, hi)
            ],
        )


def _neurons_of(session: object, layer_ids: list[int]) -> list[int]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from backend.store.models import Layer, Neuron

    assert isinstance(session, Session)
    rows = session.execute(
        select(Neuron.id)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(Neuron.layer_id.in_(layer_ids))
        .order_by(Layer.idx, Neuron.channel)
    ).all()
    return [int(r[0]) for r in rows]


def _stimuli(rng: np.random.Generator, n: int, k: int, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` distinct image indices per neuron and their (descending) activation maxima."""
    stim = np.argsort(rng.random((n, n_images)), axis=1)[:, :k].astype(np.int32)
    maxima = -np.sort(-np.round(rng.random((n, k)) * 10, 3), axis=1).astype(np.float32)
    return stim, maxima


def _write_patches(
    session: object, snapshot_id: int, ids: np.ndarray, stim: np.ndarray, data_dir: Path | None
) -> int:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    rows = []
    for i, nid in enumerate(ids.tolist()):
        for rank, img in enumerate(stim[i].tolist()):
            rel = f"patches/{snapshot_id}/{nid}_{rank}.png"
            rows.append(
                {
                    "neuron_id": nid,
                    "rank": rank,
                    "image_idx": img,
                    "y0": rank,
                    "x0": 2 * rank,
                    "y1": rank + 16,
                    "x1": 2 * rank + 16,
                    "file": rel,
                }
            )
            if data_dir is not None:
                path = Path(data_dir) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tiny_png(((nid * 37) % 256, (rank * 80) % 256, snapshot_id % 256)))
    return writes.write_patches(session, snapshot_id, rows)
