"""``stimuli_shard`` jobs: the stimuli pass of one snapshot over one image range, stored as a partial top-k
(``backend.store.shards``), and :func:`merged_stimuli`, which merges a snapshot's stored ranges into exactly
the unsharded pass (``worker.engine.shards``). Different workers (GPUs, machines) run the shards in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from backend.store import Dataset, Run, finishing, get_snapshot
from backend.store.jobspec import StimuliShardParams
from backend.store.shards import (
    STIMULI_FIELDS,
    ShardKey,
    ShardPart,
    ensure_shard_table,
    stimuli_shards,
    write_stimuli_shard,
)
from worker.data.imagefolder import ImageFolderDataset
from worker.engine.shards import merge_stimuli, offset_stimuli, shard_ranges
from worker.engine.stimuli import Stimuli, compute_stimuli
from worker.jobs.common import dataset_of, job_params, layers_of, model_of
from worker.jobs.context import JobContext
from worker.pipeline import PRELOAD_LIMIT_BYTES


def range_batches(
    images: ImageFolderDataset, start: int, stop: int, batch_size: int
) -> Iterator[torch.Tensor]:
    """Float batches of images ``start … stop-1`` in dataset order, cut on multiples of ``batch_size`` from
    ``start`` (a multiple of it): the batches the same images get whatever the number of shards."""
    small = images.load_uint8(0).numel() * len(images) <= PRELOAD_LIMIT_BYTES
    decoded = images.preload() if small else None  # decoded once per worker (cached on the dataset)
    for first in range(start, stop, batch_size):
        last = min(first + batch_size, stop)
        if decoded is not None:
            yield images.to_float(decoded[first:last])
        else:
            yield images.to_float(torch.stack([images.load_uint8(i) for i in range(first, last)]))


def handle_stimuli_shard(ctx: JobContext) -> None:
    """One range's stimuli → its row in ``stimuli_shards``, written with the job's ``done``."""
    spec = job_params(ctx, StimuliShardParams)
    with ctx.store.session(readonly=True) as session:
        snapshot = get_snapshot(session, spec.snapshot_id)
        run = session.get(Run, snapshot.run_id)
        images = dataset_of(ctx, session.get(Dataset, run.dataset_id))
        model = model_of(ctx, run, snapshot)
        layers = layers_of(session, run, model, images)
    start, stop = shard_ranges(len(images), spec.n_shards, spec.batch_size, spec.k)[spec.shard]
    report = ctx.stage(0.0, 0.95)
    part = offset_stimuli(
        compute_stimuli(
            model,
            layers,
            range_batches(images, start, stop, spec.batch_size),
            k=spec.k,
            device=ctx.device,
            progress=lambda done: report(done / (stop - start), f"stimuli {done}/{stop - start} images"),
        ),
        start,
    )
    ensure_shard_table(ctx.store)
    key = ShardKey(spec.snapshot_id, spec.n_shards, spec.k, spec.batch_size)
    stored = ShardPart(spec.shard, start, stop, **{name: getattr(part, name) for name in STIMULI_FIELDS})
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"images": [start, stop]}) as session:
        write_stimuli_shard(session, key, stored)


def merged_stimuli(store, key: ShardKey) -> Stimuli | None:
    """The snapshot's stimuli merged from its stored ranges, or None while some range is missing.

    Args:
        store: the open store.
        key: which sharded pass.

    Returns:
        :class:`Stimuli` equal to one unsharded pass with the same batches, or None.
    """
    ensure_shard_table(store)
    with store.session(readonly=True) as session:
        parts = stimuli_shards(session, key)
        snapshot = get_snapshot(session, key.snapshot_id)
        n_images = int(session.get(Dataset, session.get(Run, snapshot.run_id).dataset_id).n_images)
    ranges = shard_ranges(n_images, key.n_shards, key.batch_size, key.k)
    if [(p.start, p.stop) for p in parts] != ranges:
        return None
    return merge_stimuli(
        [
            Stimuli(**{name: getattr(p, name) for name in STIMULI_FIELDS}, n_images=p.stop - p.start)
            for p in parts
        ]
    )
