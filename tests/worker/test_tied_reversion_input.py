"""The reversion job's input: the ties stored with a snapshot become per-layer channel masks (issue 13)."""

from __future__ import annotations

import numpy as np

from backend.store.queries import NeuronTable
from worker.jobs.importance import _tied_by_layer
from worker.models.layers import LayerSpec


def test_tied_neurons_become_per_layer_channel_masks() -> None:
    table = NeuronTable(
        neuron_id=np.array([11, 12, 13, 21, 22], dtype=np.int64),
        layer_idx=np.array([0, 0, 0, 1, 1], dtype=np.int32),
        channel=np.array([0, 1, 2, 0, 1], dtype=np.int32),
    )
    layers = [LayerSpec("features.1", 3, "features.0"), LayerSpec("features.5", 2, "features.4")]
    masks = _tied_by_layer(table, layers, {12, 22, 99})
    assert {name: mask.tolist() for name, mask in masks.items()} == {
        "features.1": [False, True, False],
        "features.5": [False, True],
    }
    assert not any(mask.any() for mask in _tied_by_layer(table, layers, set()).values())
