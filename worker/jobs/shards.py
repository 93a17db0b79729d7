"""``stimuli_shard`` jobs: the stimuli pass of one snapshot over one image range, stored as a partial top-k
(``backend.store.shards``); :func:`sharded_stimuli`, with which an ``add_snapshot`` job asked for ``shards``
queues the ranges and waits for them; and :func:`merged_stimuli`, which merges a snapshot's stored ranges into
exactly the unsharded pass (``worker.engine.shards``). Different workers (GPUs, machines) run the shards in
parallel.
"""

from __future__ import annotations

from backend.store import Dataset, Run, finishing, get_snapshot
from backend.store.jobspec import PRIORITY, StimuliShardParams, enqueue_job_in
from backend.store.queue import latest_job_in, wake_in
from backend.store.shards import (
    STIMULI_FIELDS,
    ShardKey,
    ShardPart,
    ensure_shard_table,
    shard_ranges,
    stimuli_shards,
    stored_shard_numbers,
    write_stimuli_shard,
)
from worker.engine.shards import merge_stimuli, offset_stimuli
from worker.engine.stimuli import Stimuli
from worker.errors import ConceptEvoError
from worker.jobs.common import dataset_of, job_params, layers_of, model_of
from worker.jobs.context import Deferred, JobContext
from worker.pipeline import snapshot_stimuli


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
    part = offset_stimuli(
        snapshot_stimuli(
            model,
            images,
            layers,
            spec.k,
            spec.batch_size,
            ctx.device,
            progress=ctx.stage(0.0, 0.95),
            images=(start, stop),
        ),
        start,
    )
    ensure_shard_table(ctx.store)
    key = ShardKey(spec.snapshot_id, spec.n_shards, spec.k, spec.batch_size)
    stored = ShardPart(spec.shard, start, stop, **{name: getattr(part, name) for name in STIMULI_FIELDS})
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"images": [start, stop]}) as session:
        write_stimuli_shard(session, key, stored)
        # the placements waiting for these ranges need not sit out their backoff once the last one is in
        if len(stored_shard_numbers(session, key)) == key.n_shards:
            wake_in(session, "add_snapshot", {"snapshot_id": key.snapshot_id, "shards": key.n_shards})


def sharded_stimuli(ctx: JobContext, key: ShardKey) -> Stimuli:
    """The stimuli of ``key``'s snapshot merged from its ranges, queueing the ``stimuli_shard`` jobs of the
    ranges not stored yet (an identical job already queued or running is not queued twice).

    Args:
        ctx: the waiting job's context (an ``add_snapshot`` job).
        key: which sharded pass.

    Returns:
        Exactly the stimuli of one unsharded pass with the same batches.

    Raises:
        Deferred: some ranges are not stored yet; their jobs are queued or running (a patient wait).
        ConceptEvoError: a range's job failed or was cancelled while this job waited for it (retrying this
            job queues the range again).
    """
    merged = merged_stimuli(ctx.store, key)
    if merged is not None:
        return merged
    pending: list[int] = []
    with ctx.store.session() as session:
        stored = stored_shard_numbers(session, key)
        for shard in sorted(set(range(key.n_shards)) - stored):
            spec = StimuliShardParams(
                snapshot_id=key.snapshot_id,
                n_shards=key.n_shards,
                shard=shard,
                k=key.k,
                batch_size=key.batch_size,
            )
            last = latest_job_in(session, spec.kind, spec.canonical())
            # A failure older than this request (or than its retry, which resets the deferrals) is queued again.
            waited_for = ctx.job.deferrals > 0 and last is not None and last.created_at >= ctx.job.created_at
            if waited_for and last.status in ("failed", "cancelled"):
                raise ConceptEvoError(
                    f"stimuli shard {shard + 1} of {key.n_shards} of snapshot {key.snapshot_id} (job {last.id}) "
                    f"{last.status}: {last.error or 'no error text'}; retry this job to run the shard again"
                )
            found = enqueue_job_in(session, spec, PRIORITY["stimuli_shard"])
            if found is not None:
                pending.append(found[0].id)
    raise Deferred(
        f"waiting for {key.n_shards - len(stored)} of {key.n_shards} stimuli shards "
        f"(jobs {', '.join(map(str, pending))})",
        patient=True,
    )


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
