"""The stimuli pass takes the argmax only of maps that can enter the top k (issue 13, "stimuli pass speed").

The boxes must be exactly those of the former implementation, a first-occurrence argmax of every map inside
the hook; here that implementation is put back (``_candidate_argmax`` → a full argmax) as the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.worker.engine.test_stimuli import _exact_model
from worker.engine import stimuli as stimuli_module
from worker.engine.stimuli import compute_stimuli
from worker.models.demo_net import demo_vgg
from worker.models.layers import LayerSpec, default_layers

LAYERS = [LayerSpec("0", 6, "0"), LayerSpec("1", 6, "0"), LayerSpec("4", 5, "3")]


def _full_argmax(maps, values, kth, out) -> None:
    """The former hook: the first row-major argmax of every map."""
    out.copy_(maps.flatten(2).max(dim=2).indices)


def _tied_images(n: int = 60) -> torch.Tensor:
    """Small-integer images (exact float arithmetic): maps tie within themselves and across images."""
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 3, (n, 3, 12, 12), generator=generator).float()
    images[[9, 33, 51]] = images[4].clone()
    images[[12, 40]] = 0.0
    images[20, :, :, :6] = 2.0  # flat regions: many positions share the maximum
    return images


@pytest.mark.parametrize("batch_size", [1, 3, 16, 60])
def test_boxes_equal_a_full_argmax_with_ties(batch_size, monkeypatch) -> None:
    model, images = _exact_model(), _tied_images()
    fast = compute_stimuli(model, LAYERS, images.split(batch_size), k=6)
    monkeypatch.setattr(stimuli_module, "_candidate_argmax", _full_argmax)
    reference = compute_stimuli(model, LAYERS, images.split(batch_size), k=6)
    np.testing.assert_array_equal(fast.indices, reference.indices)
    np.testing.assert_array_equal(fast.maxima, reference.maxima)
    np.testing.assert_array_equal(fast.argmax_yx, reference.argmax_yx)
    assert (np.diff(fast.maxima, axis=1) == 0).any(), "the case must contain ties between images"


def test_ties_within_a_map_keep_the_first_position(monkeypatch) -> None:
    model, images = _exact_model(), _tied_images()
    stimuli = compute_stimuli(model, LAYERS, images.split(5), k=6)
    # recompute each kept map on its own and check the box is the first row-major maximum, and ties occur
    kept = {}
    handle = model.get_submodule("1").register_forward_hook(lambda m, a, out: kept.update(map=out.clone()))
    tied_maps = 0
    try:
        rows = range(*stimuli.layer_slice("1").indices(stimuli.n_neurons))
        for row in rows:
            channel = int(stimuli.channel_of[row])
            for rank, image in enumerate(stimuli.indices[row]):
                with torch.no_grad():
                    model(images[int(image)][None])
                z = kept["map"][0, channel].numpy()
                first = np.argwhere(z == z.max())[0]
                tied_maps += int((z == z.max()).sum() > 1)
                assert tuple(stimuli.argmax_yx[row, rank]) == tuple(first)
    finally:
        handle.remove()
    assert tied_maps > 0, "the case must contain maps whose maximum occurs more than once"


def test_only_entries_that_can_enter_the_top_k_are_searched(monkeypatch) -> None:
    torch.manual_seed(0)
    model = demo_vgg().eval()
    layers = default_layers(model)
    images = torch.randn(256, 3, 32, 32)
    searched = [0, 0]
    real = stimuli_module._candidate_argmax

    def counting(maps, values, kth, out):
        searched[0] += values.numel() if kth is None else int((values > kth).sum())
        searched[1] += values.numel()
        real(maps, values, kth, out)

    monkeypatch.setattr(stimuli_module, "_candidate_argmax", counting)
    compute_stimuli(model, layers, images.split(16), k=10)
    assert searched[0] < 0.35 * searched[1], f"{searched[0]} of {searched[1]} maps searched for their argmax"
