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
from typing import Any

from backend.store import (
    Dataset,
    Run,
    finishing,
    get_snapshot,
    get_space,
    list_snapshots,
    list_space_snapshots,
    next_computed_snapshot,
    previous_computed_snapshot,
    run_neurons,
    set_movement,
    snapshot_vectors,
    write_patches,
    write_snapshot_in_space,
    write_space,
)
from backend.store.jobspec import AddSnapshotParams, BuildSpaceParams, enqueue_job_in
from worker.engine.health import movement
from worker.errors import ConceptEvoError
from worker.jobs.common import (
    dataset_of,
    job_params,
    layers_of,
    model_of,
    space_geometry,
)
from worker.jobs.patches import publish_files, write_patch_files
from worker.jobs.priorities import PRIORITY
from worker.pipeline import SpaceParams, build_space, place_stimuli, snapshot_stimuli
from worker.runner import Deferred, JobContext

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
        dataset_row = session.get(Dataset, run.dataset_id)
        images = dataset_of(ctx, dataset_row)
        model = model_of(ctx, run, snapshot)
        layers = layers_of(session, run, model, images)
        neuron_ids = run_neurons(session, run.id).neuron_id
        run_id, snapshot_id, dataset_id = run.id, snapshot.id, dataset_row.id
    settings = dataclasses.replace(settings, layers=tuple(layer.name for layer in layers))

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
    )
    ctx.progress(0.99, "writing results")
    result = {"space": space_name, "neurons": len(neuron_ids), **_summary(space.stats)}
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=result) as session:
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
        base = space.base
        write_snapshot_in_space(
            session,
            row.id,
            snapshot_id,
            neuron_ids,
            base.stimuli.indices,
            base.stimuli.maxima,
            base.vectors,
            base.positions,
            coverage=base.coverage,
            diversity=_finite(base.diversity, f"diversity of snapshot {snapshot_id}"),
            movement=None,
        )
        write_patches(session, snapshot_id, patches)
        # Follow-ups commit with the space itself: a worker killed right after cannot lose them.
        queue_snapshots(session, row.id, spec.compute_runs or [])
        publish_files(ctx.scratch)  # last: the sprites appear with their rows


def queue_snapshots(session, space_id: int, run_ids: list[int]) -> list[int]:
    """Queue (in ``session``'s transaction) ``add_snapshot`` for every epoch of ``run_ids`` not yet computed
    in the space; returns the job ids."""
    done = {snap.id for _row, snap in list_space_snapshots(session, space_id)}
    wanted = [
        snap.id for run_id in run_ids for snap in list_snapshots(session, run_id) if snap.id not in done
    ]
    jobs = []
    for snapshot_id in wanted:
        found = enqueue_job_in(
            session, AddSnapshotParams(space_id=space_id, snapshot_id=snapshot_id), PRIORITY["add_snapshot"]
        )
        if found is not None:
            jobs.append(found[0].id)
    return jobs


def handle_add_snapshot(ctx: JobContext) -> None:
    """One run × epoch → stimuli, Eq 2 vectors, map positions, patches, diversity and movement."""
    spec = job_params(ctx, AddSnapshotParams)
    with ctx.store.session(readonly=True) as session:
        space = get_space(session, spec.space_id)
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

    stimuli = snapshot_stimuli(model, images, layers, k, batch_size, ctx.device, progress=ctx.stage(0.0, 0.6))
    placed = place_stimuli(stimuli, image_vectors, covered, projection)
    patches = write_patch_files(
        snapshot_id, neuron_ids, stimuli, model, layers, images, ctx.stage(0.6, 0.97), staging=ctx.scratch
    )
    ctx.progress(0.98, "writing results")
    diversity = _finite(placed.diversity, f"diversity of snapshot {snapshot_id}")
    result = {
        "space": space_name,
        "neurons": len(neuron_ids),
        "coverage": placed.coverage,
        "diversity": diversity,
    }
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=result) as session:
        # Read the neighbouring epochs inside the writing transaction, so that two workers finishing
        # adjacent epochs of one run at once still leave the right movement on both.
        previous = previous_computed_snapshot(session, space_id, snapshot_id)
        write_snapshot_in_space(
            session,
            space_id,
            snapshot_id,
            neuron_ids,
            stimuli.indices,
            stimuli.maxima,
            placed.vectors,
            placed.positions,
            coverage=placed.coverage,
            diversity=diversity,
            movement=_movement(session, space_id, previous, neuron_ids, placed.vectors, before=True),
        )
        later = next_computed_snapshot(session, space_id, snapshot_id)
        if later is not None:
            moved = _movement(session, space_id, later, neuron_ids, placed.vectors, before=False)
            set_movement(session, space_id, later.id, moved)
        write_patches(session, snapshot_id, patches)
        publish_files(ctx.scratch)  # last: the sprites appear with their rows


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
    return out
