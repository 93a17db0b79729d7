"""Shared glue of the job handlers: load what a job names from the store, cached per worker process."""

from __future__ import annotations

import json
import logging
from typing import TypeVar

import numpy as np
from sqlalchemy import select

from backend.store import (
    Dataset,
    Layer,
    Run,
    Snapshot,
    Space,
    jobspec,
    unpack_f32,
    unpack_u8,
)
from backend.store.queries import run_model_kwargs
from worker.data.imagefolder import ImageFolderDataset
from worker.engine.layers import LayerSpec, resolve_layers
from worker.engine.projection import Projection
from worker.engine.receptive_field import ReceptiveField, receptive_fields
from worker.errors import ConceptEvoError
from worker.jobs.context import JobContext
from worker.models.checkpoints import load_model
from worker.pipeline import input_shape

log = logging.getLogger(__name__)

P = TypeVar("P", bound=jobspec.JobParams)


def job_params(ctx: JobContext, model: type[P]) -> P:
    """The job's parameters read through their spec (:mod:`backend.store.jobspec`, the same models the API and the
    CLI use), or a one-line error naming the bad one."""
    try:
        spec = jobspec.parse(ctx.job.kind, ctx.params)
    except jobspec.JobParamsError as exc:
        raise ConceptEvoError(str(exc)) from None
    if not isinstance(spec, model):
        raise ConceptEvoError(f"{ctx.job.kind} job: its handler expects {model.kind} parameters")
    return spec


def dataset_of(ctx: JobContext, dataset: Dataset) -> ImageFolderDataset:
    """The run's ImageFolder, decoded once per worker process and checked against the registered images."""
    key = f"dataset:{dataset.id}"
    if key not in ctx.cache:
        images = ImageFolderDataset(dataset.root)
        if len(images) != dataset.n_images or images.class_names != list(dataset.class_names):
            raise ConceptEvoError(
                f"dataset {dataset.name!r} at {dataset.root} changed since it was registered "
                f"({len(images)} images now, {dataset.n_images} registered); register it again under a new name"
            )
        ctx.cache[key] = images
    return ctx.cache[key]


def sibling_split(dataset: ImageFolderDataset, split: str) -> ImageFolderDataset | None:
    """The ``val`` folder beside a ``train`` folder (the demo layout), if there is one."""
    other = dataset.root.parent / split
    if dataset.root.name in ("train", "val", "test") and other.is_dir() and other != dataset.root:
        return ImageFolderDataset(other)
    return None


def model_of(ctx: JobContext, run: Run, snapshot: Snapshot):
    """The snapshot's model, built with the factory arguments the run was registered with (``--model-kwargs``;
    none registered: the checkpoint's own)."""
    with ctx.store.session(readonly=True) as session:
        kwargs = run_model_kwargs(session, run.id)
    return load_model(
        run.arch, run.num_classes, snapshot.checkpoint_path, device=ctx.device, model_kwargs=kwargs
    )


def layers_of(session, run: Run, model, images: ImageFolderDataset) -> list[LayerSpec]:
    """The run's registered layers, re-checked against the model on the images' size (same names, channels)."""
    names = list(session.scalars(select(Layer.name).where(Layer.run_id == run.id).order_by(Layer.idx)))
    specs = resolve_layers(model, names, input_shape(images))
    stored = dict(session.execute(select(Layer.name, Layer.channels).where(Layer.run_id == run.id)).all())
    for spec in specs:
        if stored[spec.name] != spec.channels:
            raise ConceptEvoError(
                f"run {run.name!r}: layer {spec.name} has {spec.channels} channels in the checkpoint, "
                f"{stored[spec.name]} when registered"
            )
    return specs


def receptive_fields_of(
    ctx: JobContext, run: Run, model, layers: list[LayerSpec], images: ImageFolderDataset
) -> dict[str, ReceptiveField]:
    """The receptive fields of ``layers`` at the images' size, computed once per worker per architecture.

    A field depends on the architecture (arch, factory arguments) and the input size, never on the weights
    (:mod:`worker.engine.receptive_field` measures on a copy with positive random weights), so every epoch and
    every run of one architecture share it — measuring a ResNet18's took ~2 s per snapshot.
    """
    with ctx.store.session(readonly=True) as session:
        kwargs = run_model_kwargs(session, run.id)
    first = images.load_pil(0)
    names = [layer.name for layer in layers]
    key = "fields:" + json.dumps(
        [run.arch, kwargs, run.num_classes, names, [first.height, first.width]], sort_keys=True, default=str
    )
    if key not in ctx.cache:
        ctx.cache[key] = receptive_fields(model, layers, (first.height, first.width))
    return ctx.cache[key]


def space_geometry(ctx: JobContext, space: Space) -> tuple[np.ndarray, np.ndarray, Projection]:
    """``(image_vectors, covered, projection)`` of a built space, cached per worker (keyed by build time)."""
    key = f"space:{space.id}:{space.created_at}:{len(space.reducer or b'')}"
    if key not in ctx.cache:
        if not space.reducer or not space.image_vectors:
            raise ConceptEvoError(f"space {space.name!r} is not built yet")
        dim = int(space.params["dim"])
        vectors = unpack_f32(space.image_vectors).reshape(-1, dim)
        covered = unpack_u8(space.covered).astype(bool)
        ctx.cache[key] = (vectors, covered, Projection.from_bytes(space.reducer))
    return ctx.cache[key]
