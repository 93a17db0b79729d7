"""Register users' datasets and training runs in the store (``conceptevo add-dataset`` / ``add-run``).

Registration reads the files once — every image is probed, every checkpoint file is found, the
architecture is built and its layers resolved — so that a mistake is reported now, in one line naming
the file and the cause, not later inside a job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from backend.store import (
    Dataset,
    Store,
    find_run,
    register_dataset,
    register_layers,
    register_run,
    upsert_snapshot,
)
from backend.store.errors import NotFoundError
from backend.store.writes import set_run_model_kwargs
from worker.data.imagefolder import ImageFolderDataset, split_folders
from worker.engine.layers import resolve_layers
from worker.errors import ConceptEvoError
from worker.models.checkpoints import check_checkpoint, discover_epochs, recorded_kwargs
from worker.models.registry import build_model, resolve_factory

log = logging.getLogger(__name__)

_METRICS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")


@dataclass(frozen=True)
class Registered:
    """What a registration made: the row id and a one-line summary for the CLI."""

    id: int
    summary: str


def add_dataset(store: Store, root: str | Path, name: str | None = None) -> Registered:
    """Register an ImageFolder (its images in their fixed order, with labels).

    A root holding split folders (``digits/train/<class>/…`` and ``digits/val/<class>/…``, see
    :func:`worker.data.imagefolder.split_folders`) registers its ``train`` split under the root's name
    (``digits``); the ``val`` folder beside it stays its held-out split, which jobs find on their own. Without a
    ``train`` split it is refused, naming the split folders to register instead.

    Args:
        store: the store.
        root: ImageFolder root (``root/<class>/<image>``), or a root of split folders.
        name: dataset name (default: the folder's name, with its parent for a split folder given directly).

    Returns:
        The dataset id and a summary.

    Raises:
        ConceptEvoError: missing, empty or ambiguous folder, a split layout without ``train``, an empty name.
    """
    root = Path(root).resolve()
    if name is not None and not name.strip():
        raise ConceptEvoError("dataset name must not be empty; leave --name out to use the folder's name")
    if not root.is_dir():
        raise ConceptEvoError(f"dataset {root} does not exist or is not a directory")
    splits = split_folders(root)
    note = ""
    if splits:
        if "train" not in splits:
            shown = ", ".join(f"{path.name}/" for path in splits.values())
            raise ConceptEvoError(
                f"dataset {root} holds split folders ({shown}) but no train/: register the split to analyse, "
                f"e.g. conceptevo add-dataset {next(iter(splits.values()))} --name {root.name}"
            )
        name = name or root.name
        held_out = f", {splits['val'].name}/ is its held-out split" if "val" in splits else ""
        note = f" (split folders: registered {splits['train'].name}/{held_out})"
        root = splits["train"]
    dataset = ImageFolderDataset(root)
    name = name or (f"{root.parent.name}-{root.name}" if root.name in ("train", "val", "test") else root.name)
    images = [
        (str(Path(p).relative_to(root)), int(label))
        for p, label in zip(dataset.paths, dataset.targets, strict=True)
    ]
    with store.session() as session:
        row = register_dataset(session, name, str(root), dataset.class_names, images)
        dataset_id = row.id
    skipped = f", {len(dataset.skipped)} unreadable file(s) skipped" if dataset.skipped else ""
    return Registered(
        dataset_id,
        f"dataset {name!r} (id {dataset_id}): {len(images)} images, {len(dataset.class_names)} classes"
        f"{skipped}{note}",
    )


def add_run(
    store: Store,
    name: str,
    arch: str,
    checkpoints: str | Path,
    dataset: str,
    layers: list[str] | None = None,
    notes: str = "",
    model_kwargs: dict[str, Any] | None = None,
) -> Registered:
    """Register a training run: its checkpoints per epoch, its metrics history, its analysed layers.

    The first and the last checkpoint are opened now (:func:`worker.models.checkpoints.check_checkpoint`): a
    file that is not a PyTorch checkpoint or is truncated, weights of another architecture, or another class
    count than the dataset's is refused here in one line instead of failing later inside a job.

    Args:
        store: the store.
        name: run name (unique).
        arch: torchvision name or ``package.module:factory``.
        checkpoints: the run directory holding one checkpoint per epoch (see
            :func:`worker.models.checkpoints.discover_epochs` for the accepted file names); a
            ``history.json`` there (as ``conceptevo train`` writes) gives the accuracies.
        dataset: name of a registered dataset (its class count is the model's).
        layers: dotted module names to analyse (default: every conv, its BN where one follows).
        notes: free text.
        model_kwargs: keyword arguments for the architecture's factory besides ``num_classes`` (stored with
            the run; the worker builds the model with them). None: the checkpoints' own ``model_kwargs``.

    Returns:
        The run id and a summary.
    """
    if not name or not name.strip():
        raise ConceptEvoError("run name must not be empty")
    resolve_factory(arch)  # an unknown architecture is named before any checkpoint is read
    run_dir = Path(checkpoints).resolve()
    epochs = discover_epochs(run_dir)
    dataset_id, n_classes, image_shape = _dataset_info(store, dataset)
    metas = [
        check_checkpoint(epochs[epoch], arch, n_classes, model_kwargs, dataset)
        for epoch in sorted({min(epochs), max(epochs)})
    ]
    kwargs = recorded_kwargs(metas[0], arch) if model_kwargs is None else model_kwargs
    specs = resolve_layers(build_model(arch, n_classes, **kwargs), layers, image_shape)
    history = _read_history(run_dir)
    with store.session() as session:
        run = register_run(session, name, arch, str(run_dir), dataset_id, n_classes, notes)
        if model_kwargs is not None:
            set_run_model_kwargs(session, run.id, model_kwargs)
        register_layers(session, run.id, [(spec.name, spec.channels) for spec in specs])
        for epoch, path in sorted(epochs.items()):
            metrics = {key: history.get(epoch, {}).get(key) for key in _METRICS}
            upsert_snapshot(session, run.id, epoch, str(path), **metrics)
        run_id = run.id
    neurons = sum(spec.channels for spec in specs)
    return Registered(
        run_id,
        f"run {name!r} (id {run_id}): {arch}, epochs {min(epochs)}–{max(epochs)} ({len(epochs)} checkpoints), "
        f"{len(specs)} layers, {neurons} neurons",
    )


def add_live_run(
    store: Store,
    name: str,
    arch: str,
    run_dir: str | Path,
    dataset: str,
    layers: list[str] | None = None,
    notes: str = "",
    model_kwargs: dict[str, Any] | None = None,
) -> Registered:
    """Register a run that is still training (no checkpoint yet): the run and its layers, validated as
    :func:`add_run` validates them; its snapshots are added one by one as epochs end (``worker.tracker``).

    Args:
        store: the store.
        name: run name (registering it again with the same arch, dataset and layers is a no-op).
        arch: torchvision name or ``package.module:factory``.
        run_dir: the folder its checkpoints are (or will be) written to.
        dataset: name of a registered dataset.
        layers: dotted module names to analyse (default: every conv, its BN where one follows).
        notes: free text.
        model_kwargs: the architecture factory's arguments besides ``num_classes`` (stored with the run).

    Returns:
        The run id and a summary.
    """
    if not name or not name.strip():
        raise ConceptEvoError("run name must not be empty")
    resolve_factory(arch)
    dataset_id, n_classes, specs = _checked_run(store, arch, dataset, layers, model_kwargs or {})
    with store.session() as session:
        run = register_run(session, name, arch, str(Path(run_dir).resolve()), dataset_id, n_classes, notes)
        if model_kwargs:
            set_run_model_kwargs(session, run.id, model_kwargs)
        register_layers(session, run.id, [(spec.name, spec.channels) for spec in specs])
        run_id = run.id
    neurons = sum(spec.channels for spec in specs)
    return Registered(run_id, f"run {name!r} (id {run_id}): {arch}, {len(specs)} layers, {neurons} neurons")


def _checked_run(
    store: Store, arch: str, dataset: str, layers: list[str] | None, model_kwargs: dict[str, Any]
) -> tuple[int, int, list]:
    """``(dataset id, class count, layer specs)`` of a run to register; one-line errors for an unknown dataset,
    architecture or layer."""
    dataset_id, n_classes, image_shape = _dataset_info(store, dataset)
    model = build_model(arch, n_classes, **model_kwargs)
    return dataset_id, n_classes, resolve_layers(model, layers, image_shape)


def _dataset_info(store: Store, dataset: str) -> tuple[int, int, tuple[int, int, int]]:
    """``(dataset id, class count, first image's C×H×W)`` of the registered dataset called ``dataset``.

    Raises:
        ConceptEvoError: no such dataset (the message lists the registered ones).
    """
    with store.session(readonly=True) as session:
        ds = session.scalars(select(Dataset).where(Dataset.name == dataset)).first()
        if ds is None:
            known = ", ".join(session.scalars(select(Dataset.name)).all()) or "none"
            raise ConceptEvoError(f"unknown dataset {dataset!r}; registered datasets: {known}")
        return ds.id, len(ds.class_names), _first_image_shape(ds.root, session, ds.id)


def run_id_of(store: Store, name: str) -> int:
    """The id of the run called ``name`` (ConceptEvoError listing the runs otherwise)."""
    with store.session(readonly=True) as session:
        try:
            return find_run(session, name).id
        except NotFoundError as exc:
            raise ConceptEvoError(str(exc)) from exc


def _read_history(run_dir: Path) -> dict[int, dict[str, float]]:
    path = run_dir / "history.json"
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_text())
        return {int(row["epoch"]): row for row in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConceptEvoError(f"{path}: not a ConceptEvo history ({exc})") from exc


def _first_image_shape(root: str, session, dataset_id: int) -> tuple[int, int, int]:
    from PIL import Image as PILImage

    from backend.store import get_image

    image = get_image(session, dataset_id, 0)
    with PILImage.open(Path(root) / image.rel_path) as pil:
        width, height = pil.size
    return (3, height, width)
