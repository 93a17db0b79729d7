"""Job handlers ``build_space`` and ``add_snapshot``: thin glue between the store and :mod:`worker.pipeline`.

Params are read through their spec (``BuildSpaceParams``, ``AddSnapshotParams`` in
:mod:`backend.store.jobspec`), the models ``POST /api/jobs`` validates and the CLI builds, so identical requests
from any side are one job: ``build_space``: ``base_snapshot_id``, optional ``name`` (default ``<run>@<epoch>``)
and every :class:`~worker.pipeline.SpaceParams` field but the layers (k, dim, epochs, lr, negatives, seed,
batch_size); ``compute_runs`` (run ids): once built, queue ``add_snapshot`` for every epoch of those runs.
``add_snapshot``: ``space_id``, ``snapshot_id``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from backend.store import (
    Dataset,
    Run,
    data_dir,
    find_space,
    finishing,
    get_snapshot,
    next_computed_snapshot,
    previous_computed_snapshot,
    run_neurons,
    set_movement,
    set_snapshot_quality,
    snapshot_vectors,
    spaces_of_snapshots,
    write_space,
)
from backend.store.errors import StoreError
from backend.store.jobspec import AddSnapshotParams, BuildSpaceParams
from backend.store.removal import drop_replaced_space, unlink_patch_files
from backend.store.shards import ShardKey, delete_stimuli_shards
from backend.store.writes import (
    discard_stage,
    publish_staged_patches,
    publish_staged_snapshot,
    stage_key,
    stage_patches,
    stage_snapshot_in_space,
    superseded_patch_files,
)
from worker.engine.health import movement
from worker.errors import ConceptEvoError
from worker.jobs.common import (
    dataset_of,
    job_params,
    layers_of,
    model_of,
    receptive_fields_of,
    space_geometry,
)
from worker.jobs.context import Deferred, JobContext
from worker.jobs.patches import publish_files, write_patch_files
from worker.jobs.queueing import queue_snapshots
from worker.jobs.shards import sharded_stimuli
from worker.jobs.space_ref import space_for_job
from worker.pipeline import PlacedSnapshot, SpaceParams, build_space, place_stimuli, snapshot_stimuli

log = logging.getLogger(__name__)


def space_params(spec: BuildSpaceParams) -> SpaceParams:
    """The hyper-parameters a ``build_space`` job asks for (its layers come from the run)."""
    return SpaceParams(
        k=spec.k,
        dim=spec.dim,
        epochs=spec.epochs,
        lr=spec.lr,
        negatives=spec.negatives,
        seed=spec.seed,
        batch_size=spec.batch_size,
    )


def handle_build_space(ctx: JobContext) -> None:
    """Base snapshot → stimuli, pairs, embedding, image embedding, UMAP fit, patches; one transaction."""
    spec = job_params(ctx, BuildSpaceParams)
    settings = space_params(spec)
    with ctx.store.session(readonly=True) as session:
        snapshot = get_snapshot(session, spec.base_snapshot_id)
        run = session.get(Run, snapshot.run_id)
        space_name = spec.name or f"{run.name}@{snapshot.epoch}"
        # built since this job was queued (the door refused an existing name then)
        if not spec.replace and find_space(session, space_name) is not None:
            raise ConceptEvoError(
                f"a space named {space_name!r} already exists; queue the build again with --replace to rebuild it"
            )
        dataset_row = session.get(Dataset, run.dataset_id)
        images = dataset_of(ctx, dataset_row)
        model = model_of(ctx, run, snapshot)
        layers = layers_of(session, run, model, images)
        neuron_ids = run_neurons(session, run.id).neuron_id
        run_id, snapshot_id, dataset_id = run.id, snapshot.id, dataset_row.id
    settings = dataclasses.replace(settings, layers=tuple(layer.name for layer in layers))
    fields = receptive_fields_of(ctx, run, model, layers, images)

    space = build_space(model, images, settings, device=ctx.device, progress=ctx.stage(0.0, 0.85))
    patches = write_patch_files(
        snapshot_id,
        neuron_ids,
        space.base.stimuli,
        model,
        space.layers,
        images,
        ctx.stage(0.85, 0.98),
        staging=ctx.scratch,
        fields=fields,
    )
    ctx.progress(0.99, "writing results")
    result = {"space": space_name, "neurons": len(neuron_ids), **_summary(space.stats)}
    base = space.base
    with staged_results(ctx) as stage:
        # Rows go in ahead, in short transactions; the final one only flips them visible (issue 12).
        staged = stage_snapshot_in_space(
            ctx.store,
            stage,
            ctx.job.id,
            None,
            snapshot_id,
            neuron_ids,
            base.stimuli.indices,
            base.stimuli.maxima,
            base.vectors,
            base.positions,
        )
        stage_patches(ctx.store, stage, ctx.job.id, snapshot_id, patches)
        with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=result) as session:
            # A rebuild drops the old space's results first (patch files go once this commits).
            stale = (
                drop_replaced_space(session, space_name, keep_patches_of=snapshot_id) if spec.replace else []
            )
            row = write_space(
                session,
                space_name,
                snapshot_id,
                dataset_id,
                {**settings.to_json(), "run_id": run_id},
                space.projection.to_bytes(),
                space.image_vectors,
                space.covered,
                space.stats,
            )
            publish_staged_snapshot(
                session,
                row.id,
                staged,
                coverage=base.coverage,
                diversity=_finite(base.diversity, f"diversity of snapshot {snapshot_id}"),
                movement=None,
            )
            set_snapshot_quality(session, row.id, snapshot_id, **_quality(base, neuron_ids))
            stale += superseded_patch_files(session, stage, snapshot_id)
            publish_staged_patches(session, stage, snapshot_id)
            # Follow-ups commit with the space itself: a worker killed right after cannot lose them.
            queue_snapshots(session, row.id, spec.compute_runs or [])
            publish_files(ctx.scratch)  # last: the sprites appear with their rows
        unlink_patch_files(stale, data_dir())


@contextmanager
def staged_results(ctx: JobContext) -> Iterator[str]:
    """This job attempt's stage (see :func:`backend.store.writes.stage_key`), emptied when the block ends:
    published rows are copies, and a failed or cancelled job must leave nothing behind."""
    stage = stage_key(ctx.job.id, ctx.worker_id)
    try:
        yield stage
    finally:
        try:
            discard_stage(ctx.store, stage)
        except StoreError:  # invisible leftovers; the next worker start removes them
            log.warning("could not empty stage %s now", stage, exc_info=True)


def handle_add_snapshot(ctx: JobContext) -> None:
    """One run × epoch → stimuli, Eq 2 vectors, map positions, patches, diversity and movement."""
    spec = job_params(ctx, AddSnapshotParams)
    with ctx.store.session(readonly=True) as session:
        space = space_for_job(session, spec)
        if not space.reducer:
            raise Deferred(
                f"space {space.name!r} (id {space.id}) is not built yet",
                gave_up=f"space {space.name!r} (id {space.id}) was never built: its build job failed or was "
                "cancelled; build the space again, then retry this job",
            )
        space_name = space.name
        snapshot = get_snapshot(session, spec.snapshot_id)
        run = session.get(Run, snapshot.run_id)
        if snapshot.id == space.base_snapshot_id:
            ctx.progress(1.0, "base snapshot: placed when the space was built")
            result = {"space": space_name, "base": True}
            space_id = None
        elif (
            spec.space_id is None
            and not spec.force
            and space.id in spaces_of_snapshots(session, [snapshot.id])[snapshot.id]
        ):
            # queued by name while the space was being built, and computed since (e.g. by its compute_runs)
            ctx.progress(1.0, "already computed in the space")
            result = {"space": space_name, "already_computed": True}
            space_id = None
        else:
            if run.dataset_id != space.dataset_id:
                raise ConceptEvoError(
                    f"run {run.name!r} uses dataset {run.dataset_id}, space {space_name!r} uses dataset "
                    f"{space.dataset_id}: stimuli must come from the space's images"
                )
            image_vectors, covered, projection = space_geometry(ctx, space)
            images = dataset_of(ctx, session.get(Dataset, run.dataset_id))
            model = model_of(ctx, run, snapshot)
            layers = layers_of(session, run, model, images)
            neuron_ids = run_neurons(session, run.id).neuron_id
            space_id, snapshot_id, k = space.id, snapshot.id, int(space.params["k"])
            batch_size = int(space.params.get("batch_size", 128))
    if space_id is None:
        with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=result):
            return

    shards = ShardKey(snapshot_id, spec.shards, k, batch_size) if spec.shards else None
    if shards is not None:  # the pass runs as stimuli_shard jobs, on any workers; wait for them, then merge
        stimuli = sharded_stimuli(ctx, shards)
        ctx.progress(0.6, f"stimuli merged from {shards.n_shards} shards")
    else:
        stimuli = snapshot_stimuli(
            model, images, layers, k, batch_size, ctx.device, progress=ctx.stage(0.0, 0.6)
        )
    placed = place_stimuli(stimuli, image_vectors, covered, projection)
    patches = write_patch_files(
        snapshot_id,
        neuron_ids,
        stimuli,
        model,
        layers,
        images,
        ctx.stage(0.6, 0.97),
        staging=ctx.scratch,
        fields=receptive_fields_of(ctx, run, model, layers, images),
    )
    ctx.progress(0.98, "writing results")
    diversity = _finite(placed.diversity, f"diversity of snapshot {snapshot_id}")
    result = {
        "space": space_name,
        "neurons": len(neuron_ids),
        "coverage": placed.coverage,
        "diversity": diversity,
        "stability": placed.stability.to_json() if placed.stability is not None else None,
    }
    if shards is not None:
        result["shards"] = shards.n_shards
    with staged_results(ctx) as stage:
        staged = stage_snapshot_in_space(
            ctx.store,
            stage,
            ctx.job.id,
            space_id,
            snapshot_id,
            neuron_ids,
            stimuli.indices,
            stimuli.maxima,
            placed.vectors,
            placed.positions,
        )
        stage_patches(ctx.store, stage, ctx.job.id, snapshot_id, patches)
        with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=result) as session:
            # Read the neighbouring epochs inside the writing transaction, so that two workers finishing
            # adjacent epochs of one run at once still leave the right movement on both.
            previous = previous_computed_snapshot(session, space_id, snapshot_id)
            publish_staged_snapshot(
                session,
                space_id,
                staged,
                coverage=placed.coverage,
                diversity=diversity,
                movement=_movement(session, space_id, previous, neuron_ids, placed.vectors, before=True),
            )
            set_snapshot_quality(session, space_id, snapshot_id, **_quality(placed, neuron_ids))
            later = next_computed_snapshot(session, space_id, snapshot_id)
            if later is not None:
                moved = _movement(session, space_id, later, neuron_ids, placed.vectors, before=False)
                set_movement(session, space_id, later.id, moved)
            superseded = superseded_patch_files(session, stage, snapshot_id)
            publish_staged_patches(session, stage, snapshot_id)
            if shards is not None:  # merged and published: the partial top-k are spent
                delete_stimuli_shards(session, shards)
            publish_files(ctx.scratch)  # last: the sprites appear with their rows
        unlink_patch_files(superseded, data_dir())  # a recomputed snapshot's old packs


def _quality(placed: PlacedSnapshot, neuron_ids) -> dict[str, Any]:
    """The :func:`~backend.store.set_snapshot_quality` arguments of a placed snapshot: split-half stability
    and tied neurons (ids and count per layer)."""
    tied = placed.tied if placed.tied is not None else np.zeros(len(neuron_ids), dtype=bool)
    return {
        "stability": placed.stability.to_json() if placed.stability is not None else None,
        "tied_neurons": [int(n) for n in np.asarray(neuron_ids)[tied]],
        "tied_per_layer": placed.ties_per_layer,
    }


def _movement(session, space_id: int, other, neuron_ids, vectors, before: bool) -> float | None:
    """Mean distance between ``vectors`` and the stored vectors of snapshot ``other`` (None if absent)."""
    stored = snapshot_vectors(session, space_id, other.id) if other is not None else None
    if stored is None or len(stored[0]) != len(neuron_ids):
        return None
    row_of = {int(n): i for i, n in enumerate(stored[0])}
    theirs = stored[1][[row_of[int(n)] for n in neuron_ids]]
    return movement(theirs, vectors)[0] if before else movement(vectors, theirs)[0]


def _finite(value: float, what: str) -> float | None:
    """``value``, or None when it is not finite: a differential entropy is −∞ once several neurons share
    identical vectors in a dimension (e.g. dead neurons at initialisation, whose stimuli tie), which JSON
    cannot carry. None is stored and shown as "collapsed"."""
    if math.isfinite(value):
        return float(value)
    log.warning("%s is %s (collapsed vectors); stored as null", what, value)
    return None


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "rmse",
        "r2",
        "covered_images",
        "n_images",
        "pairs_per_epoch",
        "stimuli_s",
        "embedding_s",
        "umap_s",
    )
    out = {key: stats[key] for key in keep if key in stats}
    if stats.get("objective"):
        out["final_objective"] = stats["objective"][-1][1]
    if stats.get("damping"):
        choice = stats["damping"]
        out.update({key: choice[key] for key in ("damping", "heldout_r2", "heldout_cosine")})
    return out
