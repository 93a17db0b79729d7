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
from worker.data.imagefolder import ImageFolderDataset
from worker.errors import ConceptEvoError
from worker.models.checkpoints import discover_epochs
from worker.models.layers import resolve_layers
from worker.models.registry import build_model

log = logging.getLogger(__name__)

_METRICS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")


@dataclass(frozen=True)
class Registered:
    """What a registration made: the row id and a one-line summary for the CLI."""

    id: int
    summary: str


def add_dataset(store: Store, root: str | Path, name: str | None = None) -> Registered:
    """Register an ImageFolder (its images in their fixed order, with labels).

    Args:
        store: the store.
        root: ImageFolder root (``root/<class>/<image>``).
        name: dataset name (default: the folder's name, with its parent for split folders).

    Returns:
        The dataset id and a summary.
    """
    root = Path(root).resolve()
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
        f"dataset {name!r} (id {dataset_id}): {len(images)} images, {len(dataset.class_names)} classes{skipped}",
    )


def add_run(
    store: Store,
    name: str,
    arch: str,
    checkpoints: str | Path,
    dataset: str,
    layers: list[str] | None = None,
    notes: str = "",
) -> Registered:
    """Register a training run: its checkpoints per epoch, its metrics history, its analysed layers.

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

    Returns:
        The run id and a summary.
    """
    run_dir = Path(checkpoints).resolve()
    epochs = discover_epochs(run_dir)
    with store.session(readonly=True) as session:
        ds = session.scalars(select(Dataset).where(Dataset.name == dataset)).first()
        if ds is None:
            known = ", ".join(session.scalars(select(Dataset.name)).all()) or "none"
            raise ConceptEvoError(f"unknown dataset {dataset!r}; registered datasets: {known}")
        dataset_id, n_classes = ds.id, len(ds.class_names)
        image_shape = _first_image_shape(ds.root, session, ds.id)
    model = build_model(arch, n_classes)
    specs = resolve_layers(model, layers, image_shape)
    history = _read_history(run_dir)
    with store.session() as session:
        run = register_run(session, name, arch, str(run_dir), dataset_id, n_classes, notes)
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
