"""Store results → response schemas. The API runs no SQL of its own (DESIGN.md §2): every read is a function of
:mod:`backend.store.queries`; the routers call it in ``db.read`` and map what it returns with these helpers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.orm import Session

from backend.store.errors import NotComputedError, NotFoundError
from backend.store.queries import NeuronDetail, PatchRef

from . import schemas

if TYPE_CHECKING:  # rows the store returns; the API never queries with them
    from backend.store.models import Dataset, Importance, Layer, Neuron, Run

T = TypeVar("T")

#: What a 404 for a snapshot not computed in a space adds: how to get it computed.
NOT_COMPUTED_HINT = "POST /api/jobs with kind 'add_snapshot' to compute it"


def computed(fn: Callable[[Session], T]) -> Callable[[Session], T]:
    """``fn`` with a :class:`NotComputedError` turned into the API's 404, which says how to compute it."""

    def run(session: Session) -> T:
        try:
            return fn(session)
        except NotComputedError as exc:
            raise NotFoundError(f"{exc}; {NOT_COMPUTED_HINT}") from None

    return run


def finite(value: float | None) -> float | None:
    """``value`` unless it is NaN/inf (an undefined position), else ``None``."""
    return value if value is not None and math.isfinite(value) else None


def patch_url(snapshot_id: int, neuron_id: int, rank: int) -> str:
    """The URL of one patch image (ids only; the file path stays on the server)."""
    return f"/api/patches/{snapshot_id}/{neuron_id}/{rank}"


def patch_out(snapshot_id: int, neuron_id: int, ref: PatchRef) -> schemas.PatchOut:
    """The API form of a store patch reference of (snapshot, neuron)."""
    return schemas.PatchOut(
        snapshot_id=snapshot_id,
        neuron_id=neuron_id,
        rank=ref.rank,
        image_idx=ref.image_idx,
        box=schemas.PatchBox(y0=ref.y0, x0=ref.x0, y1=ref.y1, x1=ref.x1),
        url=patch_url(snapshot_id, neuron_id, ref.rank),
    )


def layer_out(layer: Layer) -> schemas.LayerOut:
    """The API form of a layer row."""
    return schemas.LayerOut(id=layer.id, idx=layer.idx, name=layer.name, channels=layer.channels)


def dataset_out(d: Dataset) -> schemas.DatasetOut:
    """The API form of a dataset row."""
    return schemas.DatasetOut(
        id=d.id,
        name=d.name,
        n_images=d.n_images,
        class_names=list(d.class_names or []),
        created_at=d.created_at,
    )


def neuron_out(neuron: Neuron, layer: Layer) -> schemas.NeuronOut:
    """The API form of a neuron row with its layer row."""
    return schemas.NeuronOut(
        id=neuron.id, run_id=layer.run_id, layer=layer_out(layer), channel=neuron.channel
    )


def neuron_at_snapshot_out(d: NeuronDetail) -> schemas.NeuronAtSnapshotOut:
    """The API form of a neuron at one snapshot in one space."""
    patches = {p.rank: patch_out(d.snapshot_id, d.neuron_id, p) for p in d.patches}
    return schemas.NeuronAtSnapshotOut(
        neuron=schemas.NeuronOut(
            id=d.neuron_id,
            run_id=d.run_id,
            layer=schemas.LayerOut(
                id=d.layer_id, idx=d.layer_idx, name=d.layer_name, channels=d.layer_channels
            ),
            channel=d.channel,
        ),
        space_id=d.space_id,
        snapshot_id=d.snapshot_id,
        epoch=d.epoch,
        x=finite(d.x),
        y=finite(d.y),
        stimuli=[
            schemas.StimulusOut(rank=rank, image_idx=img, maximum=mx, label=label, patch=patches.get(rank))
            for rank, (img, mx, label) in enumerate(zip(d.stimuli, d.maxima, d.labels, strict=False))
        ],
        tied=d.tied,
    )


def run_summary(run: Run, n_snapshots: int) -> schemas.RunSummaryOut:
    """The API form of a run without its snapshots."""
    return schemas.RunSummaryOut(
        id=run.id,
        name=run.name,
        arch=run.arch,
        dataset_id=run.dataset_id,
        num_classes=run.num_classes,
        notes=run.notes or "",
        created_at=run.created_at,
        n_snapshots=n_snapshots,
    )


def importance_out(imp: Importance, class_names: list[str]) -> schemas.ImportanceOut:
    """The API form of an importance row (``class_names`` from the run's dataset)."""
    name = class_names[imp.class_idx] if 0 <= imp.class_idx < len(class_names) else None
    return schemas.ImportanceOut(
        id=imp.id,
        run_id=imp.run_id,
        epoch_from=imp.epoch_from,
        epoch_to=imp.epoch_to,
        class_idx=imp.class_idx,
        class_name=name,
        n_images=imp.n_images,
        created_at=imp.created_at,
    )
