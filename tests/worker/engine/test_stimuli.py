"""compute_stimuli against the literal Algorithm 2 (getStimuli): identical stimuli, order and ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from tests.worker.engine.oracles_stimuli import (
    activation_maps_per_image,
    get_all_stimuli,
    stimuli_from_maps,
)
from worker.engine.stimuli import compute_stimuli
from worker.errors import ConceptEvoError
from worker.models.demo_net import demo_vgg
from worker.models.layers import LayerSpec, default_layers

# Float64 models: batched and one-image forwards then agree to ~1e-16, far below any gap between
# maxima of distinct random images, so the oracle's image-by-image maxima rank exactly like ours.


@pytest.fixture(scope="module")
def demo_case():
    torch.manual_seed(0)
    model = demo_vgg().double().eval()
    layers = default_layers(model)
    images = torch.randn(36, 3, 64, 64, dtype=torch.float64)
    pairs = [(spec.name, spec.channels) for spec in layers]
    maps = activation_maps_per_image(model, [name for name, _ in pairs], images)
    oracle = stimuli_from_maps(maps, pairs, k=10)
    paper = stimuli_from_maps(maps, pairs, k=10, paper_tie_rule=True)
    return model, layers, images, oracle, paper


@pytest.mark.parametrize("batch_size", [5, 16, 36])
def test_demo_model_matches_algorithm_2(demo_case, batch_size):
    model, layers, images, (indices, maxima, where), _ = demo_case
    stimuli = compute_stimuli(model, layers, images.split(batch_size), k=10)
    np.testing.assert_array_equal(stimuli.indices, indices)
    np.testing.assert_allclose(stimuli.maxima, maxima, rtol=1e-6)
    np.testing.assert_array_equal(stimuli.argmax_yx, where)
    assert stimuli.n_images == 36 and stimuli.k == 10
    assert stimuli.map_sizes == [(64, 64), (32, 32), (16, 16), (8, 8), (8, 8), (4, 4)]
    assert stimuli.layer_of.tolist() == np.repeat(np.arange(6), [16, 32, 64, 64, 128, 128]).tolist()


def test_tie_free_data_also_matches_the_paper_tie_rule(demo_case):
    model, layers, images, (indices, _, _), paper = demo_case
    np.testing.assert_array_equal(paper[0], indices)


@pytest.mark.slow
def test_resnet18_in_place_relu_keeps_pre_relu_maxima():
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).double().eval()
    with torch.no_grad():
        model.bn1.bias[:8] = -50.0  # these channels are negative everywhere before bn1's in-place ReLU
    layers = default_layers(model)
    assert layers[0].name == "bn1"
    images = torch.randn(16, 3, 32, 32, dtype=torch.float64)
    indices, maxima, where = get_all_stimuli(model, [(s.name, s.channels) for s in layers], images, k=5)
    stimuli = compute_stimuli(model, layers, images.split(6), k=5)
    np.testing.assert_array_equal(stimuli.indices, indices)
    np.testing.assert_allclose(stimuli.maxima, maxima, rtol=1e-6)
    np.testing.assert_array_equal(stimuli.argmax_yx, where)
    assert (stimuli.maxima[:8] < -10).all()  # pre-ReLU values, not the ReLU's zeros


def _exact_model() -> nn.Module:
    """Integer weights on small-integer images: float32 arithmetic is exact, so ties are exact."""
    generator = torch.Generator().manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 5, 3, padding=1, bias=False),
        nn.ReLU(inplace=True),
    )
    with torch.no_grad():
        for conv in (model[0], model[3]):
            conv.weight.copy_(torch.randint(-1, 2, conv.weight.shape, generator=generator).float())
    return model.eval()


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30])
def test_ties_lower_image_index_wins(batch_size):
    model = _exact_model()
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 3, (30, 3, 12, 12), generator=generator).float()
    images[[4, 11, 17, 29]] = images[2].clone()  # duplicates: exact ties across and within batches
    images[[6, 20, 25]] = 0.0  # blank images: every ReLU map is 0
    layers = [LayerSpec("0", 6, "0"), LayerSpec("1", 6, "0"), LayerSpec("4", 5, "3")]
    indices, maxima, where = get_all_stimuli(model, [(s.name, s.channels) for s in layers], images, k=8)
    assert (np.diff(maxima, axis=1) == 0).any(), "the case must contain ties"
    stimuli = compute_stimuli(model, layers, images.split(batch_size), k=8)
    np.testing.assert_array_equal(stimuli.indices, indices)
    np.testing.assert_array_equal(stimuli.maxima, maxima)
    np.testing.assert_array_equal(stimuli.argmax_yx, where)
    tied = np.diff(stimuli.maxima, axis=1) == 0
    assert (np.diff(stimuli.indices, axis=1)[tied] > 0).all()


def test_responses_stop_early_and_mode_restored(demo_case):
    model, layers, images, (indices, _, _), _ = demo_case
    model.train()
    stimuli = compute_stimuli(model, layers, images.split(10), k=10, keep_responses=True, stop_early=False)
    assert model.training
    model.eval()
    np.testing.assert_array_equal(stimuli.indices, indices)
    maps = activation_maps_per_image(model, [layers[2].name], images[:3])
    block = stimuli.layer_slice(layers[2].name)
    expected = np.array([[m[layers[2].name][c].max() for c in range(64)] for m in maps])
    assert stimuli.responses.shape == (36, 432)
    np.testing.assert_allclose(stimuli.responses[:3, block], expected, rtol=1e-6)


def test_progress_and_dataloader_tuples(demo_case):
    model, layers, images, (indices, _, _), _ = demo_case
    seen: list[int] = []
    batches = [(chunk, torch.zeros(len(chunk))) for chunk in images.split(16)]
    stimuli = compute_stimuli(model, layers, batches, k=10, progress=seen.append)
    assert seen == [16, 32, 36]
    np.testing.assert_array_equal(stimuli.indices, indices)


def test_bad_input_is_a_one_line_error():
    model = _exact_model()
    layers = [LayerSpec("1", 6, "0")]
    with pytest.raises(ConceptEvoError, match="at least 5 images"):
        compute_stimuli(model, layers, [torch.rand(3, 3, 8, 8)], k=5)
    with pytest.raises(ConceptEvoError, match="expected 7"):
        compute_stimuli(model, [LayerSpec("1", 7, "0")], [torch.rand(3, 3, 8, 8)], k=1)
    with pytest.raises(ConceptEvoError, match="no layers"):
        compute_stimuli(model, [], [torch.rand(3, 3, 8, 8)], k=1)
    with pytest.raises(ConceptEvoError, match="NaN"):
        compute_stimuli(model, layers, [torch.full((3, 3, 8, 8), float("nan"))], k=1)
