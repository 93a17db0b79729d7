"""What the evaluation reads from the store: a space, its runs, their per-epoch metrics and every computed
snapshot's neuron states (stimuli, maxima, vectors) with each neuron's layer and channel."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.store import (
    get_dataset,
    get_snapshot,
    get_space,
    list_images,
    list_layers,
    list_space_snapshots,
    run_metrics,
)
from backend.store.evaluation import NeuronStates, neuron_states
from backend.store.queries import get_run, run_neurons
from worker.errors import ConceptEvoError


@dataclass(frozen=True)
class SnapshotData:
    """One computed snapshot of a run in the space.

    Attributes:
        run: run name.
        epoch: the epoch.
        snapshot_id: its id.
        states: its neuron states (ascending neuron id).
        layer_of: ``(n,)`` layer index of each neuron (the run's layer order).
        channel_of: ``(n,)`` channel within the layer.
        rows: ``(n,)`` each neuron's position in the run's neuron order (layers in order, channels within: the
            engine's order, e.g. of a stimuli pass's responses).
    """

    run: str
    epoch: int
    snapshot_id: int
    states: NeuronStates
    layer_of: np.ndarray
    channel_of: np.ndarray
    rows: np.ndarray


@dataclass
class EvalInputs:
    """Everything the report computes from, read in one read-only transaction.

    Attributes:
        space_id, space_name, space_params: the space.
        base_run, base_epoch: the space's base snapshot (its run is the healthy reference).
        run_ids: run name → id.
        layers: run name → layer names in order.
        metrics: run name → per-epoch records (epoch, computed, diversity, movement, accuracies, losses).
        snapshots: (run name, epoch) → :class:`SnapshotData`, for every snapshot computed in the space.
        dataset_root: root of the space's image set (an ImageFolder split).
        image_paths: each image's path relative to ``dataset_root``, in dataset order.
    """

    space_id: int
    space_name: str
    space_params: dict[str, Any]
    base_run: str
    base_epoch: int
    dataset_root: Path
    image_paths: list[str] = field(default_factory=list)
    run_ids: dict[str, int] = field(default_factory=dict)
    layers: dict[str, list[str]] = field(default_factory=dict)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    snapshots: dict[tuple[str, int], SnapshotData] = field(default_factory=dict)

    def epochs(self, run: str) -> list[int]:
        """The run's epochs computed in the space, ascending."""
        return sorted(epoch for name, epoch in self.snapshots if name == run)


def load_inputs(store: Any, space_id: int) -> EvalInputs:
    """Read the space and everything computed in it.

    Raises:
        NotFoundError: no such space. ConceptEvoError: the space has no computed snapshot.
    """
    with store.session(readonly=True) as session:
        space = get_space(session, space_id)
        base = get_snapshot(session, space.base_snapshot_id)
        base_run = get_run(session, base.run_id)
        dataset = get_dataset(session, space.dataset_id)
        inputs = EvalInputs(
            space_id=space.id,
            space_name=space.name,
            space_params=dict(space.params),
            base_run=base_run.name,
            base_epoch=base.epoch,
            dataset_root=Path(dataset.root),
            image_paths=[image.rel_path for image in list_images(session, dataset.id)],
        )
        tables: dict[int, tuple[dict[int, int], np.ndarray, np.ndarray]] = {}
        for _row, snap in list_space_snapshots(session, space_id):
            run = get_run(session, snap.run_id)
            if run.id not in tables:
                neurons = run_neurons(session, run.id)
                order = {int(n): i for i, n in enumerate(neurons.neuron_id)}
                tables[run.id] = (order, neurons.layer_idx, neurons.channel)
                inputs.run_ids[run.name] = run.id
                inputs.layers[run.name] = [layer.name for layer in list_layers(session, run.id)]
                inputs.metrics[run.name] = [
                    {
                        "epoch": m.epoch,
                        "computed": m.computed,
                        "diversity": m.diversity,
                        "movement": m.movement,
                        "train_top1": m.train_top1,
                        "val_top1": m.val_top1,
                        "train_loss": m.train_loss,
                        "val_loss": m.val_loss,
                    }
                    for m in run_metrics(session, run.id, space_id)
                ]
            states = neuron_states(session, space_id, snap.id)
            if states is None:
                continue
            order, layer_idx, channel = tables[run.id]
            rows = np.array([order[int(n)] for n in states.neuron_ids], dtype=np.int64)
            inputs.snapshots[(run.name, snap.epoch)] = SnapshotData(
                run.name, snap.epoch, snap.id, states, layer_idx[rows], channel[rows], rows
            )
    if not inputs.snapshots:
        raise ConceptEvoError(f"space {inputs.space_name!r} has no computed snapshot to evaluate")
    return inputs


def read_image_attributes(dataset_root: Path, relative_paths: list[str]) -> list[dict[str, Any]]:
    """The ground-truth attributes of the space's images, in dataset order, from the demo ``attributes.json``
    beside (or above) the split folder.

    Raises:
        ConceptEvoError: no attributes file, or an image missing from it.
    """
    for folder in (dataset_root, dataset_root.parent):
        path = folder / "attributes.json"
        if path.is_file():
            break
    else:
        raise ConceptEvoError(
            f"no attributes.json beside {dataset_root}: alignment needs a dataset with ground-truth concepts "
            "(the demo world's)"
        )
    try:
        records = {str(r["path"]): r for r in json.loads(path.read_text())["images"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConceptEvoError(f"{path}: not a demo attributes file ({exc})") from None
    prefix = "" if folder == dataset_root else f"{dataset_root.name}/"
    out = []
    for rel in relative_paths:
        record = records.get(prefix + rel)
        if record is None:
            raise ConceptEvoError(f"{path}: no attributes for image {prefix + rel}")
        out.append(record)
    return out
