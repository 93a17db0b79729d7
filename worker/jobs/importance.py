"""Job handlers ``importance`` (Eq 5–7 for a run, t → t', classes) and ``revert_eval`` (the §4.4 check).

Params are read through their spec (``ImportanceParams``, ``RevertEvalParams`` in :mod:`backend.store.jobspec`,
the models the API and the CLI use too): ``run_id``, ``epoch_from`` < ``epoch_to``, optional ``classes`` (class
indices; default all), ``images`` per class (default 128, as the paper) and ``seed``.
``revert_eval``: the same plus ``reps`` (default 5); its table is the job's result.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from backend.store import (
    Dataset,
    find_snapshot,
    finishing,
    get_run,
    run_neurons,
    write_importance,
)
from backend.store.jobspec import EvolutionParams, ImportanceParams, RevertEvalParams
from backend.store.queries import tied_neurons
from worker.engine.importance import evolution_importance, sample_class_images
from worker.engine.reversion import LabelledImages, reversion_table
from worker.errors import ConceptEvoError
from worker.jobs.common import (
    dataset_of,
    job_params,
    layers_of,
    model_of,
    sibling_split,
)
from worker.jobs.context import JobContext

log = logging.getLogger(__name__)


def _inputs(ctx: JobContext, spec: EvolutionParams) -> dict[str, Any]:
    kind = spec.kind
    with ctx.store.session(readonly=True) as session:
        run = get_run(session, spec.run_id)
        start = find_snapshot(session, run.id, spec.epoch_from)
        end = find_snapshot(session, run.id, spec.epoch_to)
        images = dataset_of(ctx, session.get(Dataset, run.dataset_id))
        model_t, model_t2 = model_of(ctx, run, start), model_of(ctx, run, end)
        layers = layers_of(session, run, model_t, images)
        table = run_neurons(session, run.id)
        neuron_ids = table.neuron_id
        tied = _tied_by_layer(table, layers, tied_neurons(session, [start.id, end.id]))
        run_id, n_classes = run.id, run.num_classes
    classes = list(spec.classes or range(n_classes))
    if any(c >= n_classes for c in classes):
        raise ConceptEvoError(f"{kind} job: classes must be class indices in 0..{n_classes - 1}")
    return {
        "run_id": run_id,
        "images": images,
        "model_t": model_t,
        "model_t2": model_t2,
        "layers": layers,
        "neuron_ids": neuron_ids,
        "classes": classes,
        "per_class": spec.images,
        "seed": spec.seed,
        "tied": tied,
    }


def _tied_by_layer(table, layers, tied_ids: set[int]) -> dict[str, np.ndarray]:
    """Layer name → ``(channels,)`` bool of the neurons tied at either epoch (no concept to evolve), from the
    flags the snapshots' computation stored; all False where none were stored."""
    tied = {spec.name: np.zeros(spec.channels, dtype=bool) for spec in layers}
    position = {int(idx): i for i, idx in enumerate(np.unique(table.layer_idx))}
    for neuron_id, layer_idx, channel in zip(table.neuron_id, table.layer_idx, table.channel, strict=True):
        if int(neuron_id) in tied_ids:
            tied[layers[position[int(layer_idx)]].name][int(channel)] = True
    return tied


def _load(dataset, indices: np.ndarray) -> torch.Tensor:
    return dataset.to_float(dataset.preload()[torch.as_tensor(indices, dtype=torch.long)])


def handle_importance(ctx: JobContext) -> None:
    """Importance of every neuron's evolution t → t' for each requested class; one transaction."""
    spec = job_params(ctx, ImportanceParams)
    inputs = _inputs(ctx, spec)
    images = inputs["images"]
    samples = {
        c: sample_class_images(images.targets, c, n=inputs["per_class"], seed=inputs["seed"])
        for c in inputs["classes"]
    }
    ctx.progress(0.05, f"importance for {len(samples)} classes")
    scores = {}
    for i, (c, indices) in enumerate(samples.items()):
        scores[c] = evolution_importance(
            inputs["model_t"],
            inputs["model_t2"],
            inputs["layers"],
            {c: _load(images, indices)},
            device=ctx.device,
        )
        ctx.progress(0.05 + 0.9 * (i + 1) / len(samples), f"class {c} done")
    result = {"classes": inputs["classes"], "neurons": len(inputs["neuron_ids"])}
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=result) as session:
        for c, importance in scores.items():
            write_importance(
                session,
                inputs["run_id"],
                spec.epoch_from,
                spec.epoch_to,
                c,
                int(importance.n_images[0]),
                inputs["neuron_ids"],
                importance.I[0],
                importance.mean_S[0],
            )


def handle_revert_eval(ctx: JobContext) -> None:
    """The reversion check (§4.4, Table 1) for one evolution stage; the table is the job's result."""
    spec = job_params(ctx, RevertEvalParams)
    inputs = _inputs(ctx, spec)
    train = inputs["images"]
    val = sibling_split(train, "val")
    if val is None:
        raise ConceptEvoError(f"revert_eval job: no val/ folder beside {train.root} to measure accuracy on")

    def labelled(dataset) -> LabelledImages:
        return LabelledImages(targets=np.asarray(dataset.targets), load=lambda idx: _load(dataset, idx))

    table = reversion_table(
        inputs["model_t"],
        inputs["model_t2"],
        inputs["layers"],
        labelled(train),
        labelled(val),
        inputs["classes"],
        reps=spec.reps,
        n_images=inputs["per_class"],
        seed=inputs["seed"],
        device=ctx.device,
        label=f"{spec.epoch_from} → {spec.epoch_to}",
        progress=ctx.stage(0.0, 0.99),
        tied=inputs["tied"],
    )
    result = {"table": table.to_dict(), "markdown": table.to_markdown()}
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=result):
        pass
