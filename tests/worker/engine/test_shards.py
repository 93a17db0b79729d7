"""Sharded stimuli (worker/engine/shards.py): the merge of per-range passes equals one unsharded pass, exactly.

On the tiny demo world's trained ``healthy`` model and its real images, and on a model whose maps tie a lot
(the tie rule: lower image index wins). The oracle merge is a literal per-neuron sort of every candidate.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backend.store.errors import ConflictError
from backend.store.shards import shard_ranges
from worker.engine.shards import merge_stimuli, offset_stimuli
from worker.engine.stimuli import Stimuli, compute_stimuli
from worker.errors import ConceptEvoError
from worker.models.layers import LayerSpec, default_layers

BATCH = 32
K = 10


def _batches(images: torch.Tensor, start: int, stop: int):
    for first in range(start, stop, BATCH):
        yield images[first : min(first + BATCH, stop)]


def sharded(model: nn.Module, layers: list[LayerSpec], images: torch.Tensor, n_shards: int) -> Stimuli:
    """What the shard jobs compute, merged."""
    parts = [
        offset_stimuli(compute_stimuli(model, layers, _batches(images, start, stop), k=K), start)
        for start, stop in shard_ranges(len(images), n_shards, BATCH, K)
    ]
    return merge_stimuli(parts)


def oracle_merge(parts: list[Stimuli], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Literal merge: for each neuron, every (maximum, image, y, x) of every part, sorted by maximum
    descending then image ascending; the first k."""
    n = parts[0].n_neurons
    indices, maxima, argmax = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32), np.zeros((n, k, 2))
    for neuron in range(n):
        candidates = []
        for part in parts:
            for j in range(part.k):
                yx = tuple(part.argmax_yx[neuron, j])
                candidates.append((float(part.maxima[neuron, j]), int(part.indices[neuron, j]), yx))
        candidates.sort(key=lambda c: (-c[0], c[1]))
        for j, (value, image, yx) in enumerate(candidates[:k]):
            indices[neuron, j], maxima[neuron, j], argmax[neuron, j] = image, value, yx
    return indices, maxima, argmax


def assert_same(a: Stimuli, b: Stimuli) -> None:
    assert a.n_images == b.n_images
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.maxima, b.maxima)
    np.testing.assert_array_equal(a.argmax_yx, b.argmax_yx)
    assert a.layer_names == b.layer_names and a.map_sizes == b.map_sizes


@pytest.fixture(scope="module")
def demo_case(tiny_demo_world, one_torch_thread):
    from worker.models.checkpoints import discover_epochs, load_model
    from worker.pipeline import open_dataset

    dataset = open_dataset(tiny_demo_world / "dataset")
    images = torch.stack([dataset.to_float(x) for x in dataset.preload()])
    model = load_model(None, None, discover_epochs(tiny_demo_world / "runs" / "healthy")[1])
    layers = default_layers(model)
    whole = compute_stimuli(model, layers, _batches(images, 0, len(images)), k=K)
    return model, layers, images, whole


@pytest.mark.parametrize("n_shards", [1, 3, 7])
def test_sharded_equals_unsharded_on_the_demo_world(demo_case, n_shards: int) -> None:
    model, layers, images, whole = demo_case
    assert_same(sharded(model, layers, images, n_shards), whole)


def test_merge_agrees_with_the_literal_oracle_and_keeps_the_tie_rule() -> None:
    """Copies of one image spread over every shard: ties across shard boundaries."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1)).eval()
    with torch.no_grad():
        model[2].bias.fill_(-0.5)
    layers = default_layers(model)
    images = torch.rand(200, 3, 8, 8)
    images[::3] = images[0]  # 67 copies of one image, in every shard: exactly equal maxima
    parts = [
        offset_stimuli(compute_stimuli(model, layers, _batches(images, a, b), k=K), a)
        for a, b in shard_ranges(len(images), 5, BATCH, K)
    ]
    merged = merge_stimuli(parts)
    indices, maxima, argmax = oracle_merge(parts, K)
    np.testing.assert_array_equal(merged.indices, indices)
    np.testing.assert_array_equal(merged.maxima, maxima)
    np.testing.assert_array_equal(merged.argmax_yx, argmax)
    assert_same(merged, compute_stimuli(model, layers, _batches(images, 0, len(images)), k=K))
    assert (np.diff(merged.maxima, axis=1) == 0).any(), "the case must contain ties"


def test_shard_ranges_and_bad_input() -> None:
    ranges = shard_ranges(288, 7, 32, 10)
    assert ranges == [(0, 32), (32, 96), (96, 128), (128, 160), (160, 192), (192, 256), (256, 288)]
    assert shard_ranges(100, 1, 32, 10) == [(0, 100)]
    assert shard_ranges(200, 5, 32, 10) == [(0, 32), (32, 64), (64, 128), (128, 160), (160, 200)]
    with pytest.raises(ConflictError, match="use at most 3 shards"):
        shard_ranges(100, 4, 32, 10)
    with pytest.raises(ConflictError, match="fewer than k=20 images"):
        shard_ranges(40, 2, 16, 20)  # the first range holds 16 images
    with pytest.raises(ConceptEvoError, match="no shards"):
        merge_stimuli([])
