"""Job handler ``eval``: the evaluation report of a space (issue 14), written to ``data/reports/<space>/``.

Glue only: read the space through the store (:mod:`worker.eval.inputs`), load the checkpoints the measures need
(reversion at the base run's accuracy milestones; raw activations of the alignment snapshots for the baselines),
compute each section (:mod:`worker.eval.sections`), write the files in the job's scratch folder and publish them
(one rename) in the transaction that marks the job done — a failed or cancelled job leaves the old report, or none.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.store import Dataset, find_snapshot, finishing, get_run, get_space
from backend.store.evaluation import SEEDS_FILE, SEEDS_MARKDOWN, report_dir
from backend.store.jobspec import EvalParams
from worker.engine.alignment import attribute_codes, label_neurons
from worker.engine.neuron_embedding import train_neuron_embedding
from worker.engine.projection import fit_projection
from worker.engine.reversion import LabelledImages, reversion_table
from worker.engine.stimuli import compute_stimuli
from worker.errors import ConceptEvoError
from worker.eval import sections
from worker.eval.inputs import EvalInputs, load_inputs, read_image_attributes
from worker.eval.report import write_report
from worker.jobs.common import dataset_of, job_params, layers_of, model_of, sibling_split
from worker.jobs.context import JobContext

log = logging.getLogger(__name__)


def _labelled(dataset) -> LabelledImages:
    return LabelledImages(
        targets=np.asarray(dataset.targets),
        load=lambda idx: dataset.to_float(dataset.preload()[torch.as_tensor(idx, dtype=torch.long)]),
    )


def _models(
    ctx: JobContext, run_name: str, run_id: int, epochs: list[int]
) -> tuple[dict[int, Any], list, Any]:
    """The run's models at ``epochs``, its layers and its dataset."""
    with ctx.store.session(readonly=True) as session:
        run = get_run(session, run_id)
        images = dataset_of(ctx, session.get(Dataset, run.dataset_id))
        models = {e: model_of(ctx, run, find_snapshot(session, run.id, e)) for e in epochs}
        layers = layers_of(session, run, next(iter(models.values())), images)
    return models, layers, images


def _reversion(ctx: JobContext, inputs: EvalInputs, spec: EvalParams, progress) -> dict[str, Any]:
    run = inputs.base_run
    stages = sections.milestone_stages(sections.milestone_epochs(inputs.metrics[run]))
    needed = sorted({e for stage in stages for e in stage})
    if not stages:
        return sections.reversion_section([], [], {})
    models, layers, train = _models(ctx, run, inputs.run_ids[run], needed)
    val = sibling_split(train, "val")
    if val is None:
        raise ConceptEvoError(
            f"eval job: no val/ folder beside {train.root} to measure reversion accuracy on"
        )
    tables = []
    for i, (t, t2) in enumerate(stages):
        name = f"reversion {t}→{t2}"
        tables.append(
            reversion_table(
                models[t],
                models[t2],
                layers,
                _labelled(train),
                _labelled(val),
                list(range(len(train.class_names))),
                reps=spec.reps,
                n_images=spec.images,
                seed=spec.seed,
                device=ctx.device,
                label=f"{run} {t} → {t2}",
                progress=lambda f, m, i=i, name=name: progress((i + f) / len(stages), f"{name}: {m}"),
            )
        )
    return sections.reversion_section(stages, tables, {spec_.name: spec_.channels for spec_ in layers})


def _zscore(responses: np.ndarray) -> np.ndarray:
    """Per neuron (row), responses over the probe images centred and scaled (flat neurons stay zero)."""
    centred = responses - responses.mean(axis=1, keepdims=True)
    scale = centred.std(axis=1, keepdims=True)
    return (centred / np.where(scale > 0, scale, 1.0)).astype(np.float32)


def _geometries(
    ctx: JobContext, inputs: EvalInputs, spec: EvalParams, progress
) -> dict[str, dict[int, np.ndarray]]:
    """The unified space and the two baselines (raw activation profiles; a UMAP fitted per snapshot on them) of
    every alignment snapshot, in each snapshot's state order."""
    snaps = sections.alignment_snapshots(inputs, spec.epochs_per_run)
    unified = {s.snapshot_id: s.states.vectors for s in snaps}
    activation: dict[int, np.ndarray] = {}
    umap: dict[int, np.ndarray] = {}
    for i, snap in enumerate(snaps):
        models, layers, images = _models(ctx, snap.run, inputs.run_ids[snap.run], [snap.epoch])
        rng = np.random.default_rng([spec.seed, 11])
        probe = np.sort(rng.choice(len(images), size=min(spec.probe_images, len(images)), replace=False))
        batch = images.to_float(images.preload()[torch.as_tensor(probe)])
        stim = compute_stimuli(
            models[snap.epoch], layers, [batch], k=1, device=ctx.device, keep_responses=True
        )
        profiles = _zscore(np.asarray(stim.responses, dtype=np.float64).T[snap.rows])
        activation[snap.snapshot_id] = profiles
        if spec.umap_baseline:
            umap[snap.snapshot_id] = fit_projection(profiles, seed=spec.seed).base_positions.astype(
                np.float32
            )
        progress((i + 1) / len(snaps), f"baselines: {snap.run}@{snap.epoch}")
    return {"unified": unified, "activation": activation, **({"umap": umap} if spec.umap_baseline else {})}


def _dim_sweep(
    inputs: EvalInputs, codes: np.ndarray, spec: EvalParams, device: str, progress
) -> dict[str, Any]:
    """Within-base kNN agreement of a neuron embedding retrained on the base stimuli at each dim."""
    base = inputs.snapshots[(inputs.base_run, inputs.base_epoch)]
    labels = label_neurons(base.states.stimuli, codes)
    stimuli = base.states.stimuli.astype(np.int64)
    scores = []
    dims = list(sections.SENSITIVITY_DIM)
    epochs = min(int(inputs.space_params.get("epochs", spec.sweep_epochs)), spec.sweep_epochs)
    for i, dim in enumerate(dims):
        emb = train_neuron_embedding(
            stimuli, len(inputs.image_paths), dim=dim, epochs=epochs, seed=spec.seed, device=device
        )
        pool = sections.Pool([base], [labels])
        score = sections.score_geometry(
            pool, np.asarray(emb.vectors), "within_base", 0, spec.queries, spec.seed
        )
        scores.append(score["agreement"] if score else None)
        progress((i + 1) / len(dims), f"dim {dim}")
    return {"dim": dims, "agreement": scores, "epochs": epochs}


def evaluate(ctx: JobContext, spec: EvalParams) -> dict[str, Any]:
    """Every section of the report, as JSON-ready data."""
    started, cpu = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    inputs = load_inputs(ctx.store, spec.space_id)
    ctx.progress(0.02, "read the space")
    results: dict[str, Any] = {
        "space": {
            "id": inputs.space_id,
            "name": inputs.space_name,
            "base_run": inputs.base_run,
            "base_epoch": inputs.base_epoch,
            "params": inputs.space_params,
        },
        "params": spec.canonical(),
    }
    mark = time.perf_counter()
    results["diversity"] = sections.diversity_section(inputs)
    results["movement"] = sections.movement_section(inputs)
    results["ties"] = sections.ties_section(inputs)
    timings["store_sections_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    try:
        with ctx.store.session(readonly=True) as session:
            root = Path(
                dataset_of(ctx, session.get(Dataset, get_space(session, spec.space_id).dataset_id)).root
            )
        codes, vocab = attribute_codes(read_image_attributes(root, inputs.image_paths))
    except ConceptEvoError as exc:
        codes, vocab = None, None
        results["alignment"] = {"error": str(exc)}
        results["sensitivity"] = {}
    if codes is not None:
        geometries = _geometries(ctx, inputs, spec, ctx.stage(0.05, 0.35))
        timings["baselines_s"] = time.perf_counter() - mark
        alignment, pool = sections.alignment_section(
            inputs, codes, geometries, spec.queries, spec.seed, ctx.stage(0.35, 0.45), spec.epochs_per_run
        )
        across = alignment["settings"]["across"]
        if across.get("unified"):
            alignment["beats_baselines_across"] = all(
                across[b] is None or across["unified"]["auc"] > across[b]["auc"]
                for b in geometries
                if b != "unified"
            )
        alignment["vocabulary"] = vocab
        results["alignment"] = alignment
        base_index = next(
            i
            for i, s in enumerate(pool.snapshots)
            if (s.run, s.epoch) == (inputs.base_run, inputs.base_epoch)
        )
        results["sensitivity"] = {
            "k": sections.sensitivity_k(pool, geometries["unified"], base_index, spec.queries, spec.seed),
        }
        timings["scores_s"] = time.perf_counter() - mark - timings["baselines_s"]
        results["sensitivity"]["dim"] = _dim_sweep(inputs, codes, spec, ctx.device, ctx.stage(0.45, 0.55))
    timings["alignment_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    results["reversion"] = _reversion(ctx, inputs, spec, ctx.stage(0.55, 0.97))
    timings["reversion_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    timings["cpu_s"] = time.process_time() - cpu
    results["timings"] = timings
    return results


def handle_eval(ctx: JobContext) -> None:
    """Compute the report, write it in scratch, publish it with the job's ``done``."""
    spec = job_params(ctx, EvalParams)
    results = evaluate(ctx, spec)
    staged = ctx.scratch / "report"
    files = write_report(results, staged)
    ctx.progress(0.99, "publishing the report")
    with ctx.store.session(readonly=True) as session:
        target = report_dir(get_space(session, spec.space_id))
    summary = {
        "report": f"reports/{target.name}",
        "files": files,
        "total_s": round(results["timings"]["total_s"], 1),
    }
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result=summary):
        _publish(staged, target)


def _publish(staged: Path, target: Path) -> None:
    """Swap the staged folder in for the old report (two renames; the old one is removed after). The summary
    over several worlds (``conceptevo eval-seeds``) is not this job's: it is carried over into the new folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for name in (SEEDS_FILE, SEEDS_MARKDOWN):
        if (target / name).is_file() and not (staged / name).exists():
            shutil.copy2(target / name, staged / name)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    shutil.move(str(staged), str(target))
    shutil.rmtree(old, ignore_errors=True)
