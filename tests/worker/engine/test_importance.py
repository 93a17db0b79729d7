"""Eq 5–7 importance against finite differences and a literal per-image, per-neuron loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.worker.engine.oracles_importance import (
    finite_difference,
    literal_importance,
    literal_sensitivities,
)
from worker.engine.importance import (
    Importance,
    batch_sensitivities,
    evolution_importance,
    sample_class_images,
)
from worker.errors import ConceptEvoError
from worker.models.demo_net import demo_vgg
from worker.models.layers import LayerSpec, default_layers

SMALL = (8, "M", 8, "M", 16, "M", 16, "M")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(dtype=torch.float64, widths=SMALL, image_size=32, num_classes=5):
    torch.manual_seed(0)
    model_t = demo_vgg(num_classes, widths=widths, image_size=image_size).to(dtype)
    torch.manual_seed(1)
    model_t2 = demo_vgg(num_classes, widths=widths, image_size=image_size).to(dtype)
    for model in (model_t, model_t2):  # non-trivial BN statistics so the BN output is not the conv output
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.data.uniform_(-1.5, 1.5)
    return model_t, model_t2


def _images(n, size=32, dtype=torch.float64, seed=2):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator, dtype=dtype)


def test_matches_literal_loop_on_demo_vgg():
    model_t, model_t2 = _pair()
    layers = default_layers(model_t)
    x = _images(6)
    result = evolution_importance(model_t, model_t2, layers, {3: x}, batch_size=4)
    S = batch_sensitivities(model_t.eval(), model_t2.eval(), layers, x, [3])[0].detach().numpy()
    S_lit = literal_sensitivities(model_t, model_t2, [s.name for s in layers], x, 3)
    assert S.shape == S_lit.shape == (6, sum(s.channels for s in layers))
    np.testing.assert_allclose(S, S_lit, rtol=1e-5, atol=1e-9 * np.abs(S_lit).max())
    np.testing.assert_allclose(result.I[0], literal_importance(S_lit), atol=1e-5)
    np.testing.assert_allclose(
        result.mean_S[0], S_lit.mean(axis=0), rtol=1e-5, atol=1e-9 * np.abs(S_lit).max()
    )
    assert result.classes == [3] and result.n_images.tolist() == [6]
    assert 0 < result.I.mean() < 1  # a non-degenerate case: some positive, some not


def test_finite_differences_match_eq5():
    model_t, model_t2 = _pair()
    layers = default_layers(model_t)
    x = _images(2, seed=5)
    S = batch_sensitivities(model_t.eval(), model_t2.eval(), layers, x, [1])[0].detach().numpy()
    slices = {
        s.name: (start, s)
        for start, s in zip(np.cumsum([0] + [s.channels for s in layers]), layers, strict=False)
    }
    checked = 0
    for name in (layers[0].name, layers[2].name, layers[-1].name):
        start, spec = slices[name]
        for n in (0, spec.channels - 1):
            for i in range(2):
                fd = finite_difference(model_t, model_t2, name, x[i : i + 1], 1, n, eps=1e-6)
                s = S[i, start + n]
                assert abs(fd - s) <= 1e-3 * abs(s) + 1e-10, (name, n, i, fd, s)
                checked += abs(s) > 1e-8
    assert checked >= 6


def test_inplace_relu_resnet18_matches_non_inplace_oracle():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model_t = resnet18(weights=None, num_classes=4).double()
    torch.manual_seed(1)
    model_t2 = resnet18(weights=None, num_classes=4).double()
    assert any(getattr(m, "inplace", False) for m in model_t.modules())
    names = ["bn1", "layer1.0.bn2", "layer2.1.bn1", "layer4.1.bn2"]
    channels = {"bn1": 64, "layer1.0.bn2": 64, "layer2.1.bn1": 128, "layer4.1.bn2": 512}
    layers = [LayerSpec(n, channels[n], n) for n in names]
    x = _images(2, size=32, seed=3)
    S = batch_sensitivities(model_t.eval(), model_t2.eval(), layers, x, [2])[0].detach().numpy()
    S_lit = literal_sensitivities(model_t, model_t2, names, x, 2)
    np.testing.assert_allclose(S, S_lit, rtol=1e-5, atol=1e-9 * np.abs(S_lit).max())
    # The post-ReLU gradient would zero S wherever the BN output is negative: make sure that differs.
    assert np.abs(S_lit).max() > 0


def test_several_classes_share_forwards_and_match_single_class_calls():
    model_t, model_t2 = _pair(dtype=torch.float32)
    layers = default_layers(model_t)
    x = _images(10, dtype=torch.float32)
    together = evolution_importance(model_t, model_t2, layers, {0: x, 2: x, 4: x}, batch_size=4)
    for row, c in enumerate([0, 2, 4]):
        alone = evolution_importance(model_t, model_t2, layers, {c: x}, batch_size=3)
        np.testing.assert_allclose(together.I[row], alone.I[0], atol=1e-6)
        np.testing.assert_allclose(together.mean_S[row], alone.mean_S[0], rtol=1e-4, atol=1e-7)
    assert together.row(2) == 1
    with pytest.raises(ConceptEvoError):
        together.row(7)


def test_iterable_batches_and_modes_restored():
    model_t, model_t2 = _pair(dtype=torch.float32)
    model_t.train()
    model_t2.train()
    layers = default_layers(model_t)
    x = _images(7, dtype=torch.float32)
    with torch.no_grad():  # must still work under a caller's no_grad
        from_iter = evolution_importance(model_t, model_t2, layers, {1: iter([x[:3], x[3:]])})
    assert model_t.training and model_t2.training
    from_tensor = evolution_importance(model_t, model_t2, layers, {1: x}, batch_size=2)
    np.testing.assert_allclose(from_iter.I, from_tensor.I, atol=1e-6)
    assert isinstance(from_iter, Importance)
    assert from_iter.layer_slices()[layers[1].name] == slice(layers[0].channels, layers[0].channels * 2)


def test_frozen_parameters_still_work():
    model_t, model_t2 = _pair(dtype=torch.float32)
    for p in model_t.parameters():
        p.requires_grad_(False)
    layers = default_layers(model_t)
    x = _images(3, dtype=torch.float32)
    frozen = evolution_importance(model_t, model_t2, layers, {0: x})
    for p in model_t.parameters():
        p.requires_grad_(True)
    free = evolution_importance(model_t, model_t2, layers, {0: x})
    np.testing.assert_allclose(frozen.mean_S, free.mean_S, rtol=1e-5, atol=1e-8)


def test_identical_models_have_zero_importance():
    model_t, _ = _pair(dtype=torch.float32)
    layers = default_layers(model_t)
    result = evolution_importance(model_t, model_t, layers, {0: _images(3, dtype=torch.float32)})
    assert np.all(result.I == 0) and np.all(result.mean_S == 0)


def test_bad_input():
    model_t, model_t2 = _pair(dtype=torch.float32)
    layers = default_layers(model_t)
    x = _images(2, dtype=torch.float32)
    with pytest.raises(ConceptEvoError, match="outside"):
        evolution_importance(model_t, model_t2, layers, {9: x})
    with pytest.raises(ConceptEvoError, match="no images"):
        evolution_importance(model_t, model_t2, layers, {0: x[:0]})
    with pytest.raises(ConceptEvoError, match="no classes"):
        evolution_importance(model_t, model_t2, layers, {})
    with pytest.raises(ConceptEvoError, match="no layers"):
        evolution_importance(model_t, model_t2, [], {0: x})
    other = demo_vgg(5, widths=(8, "M", 12, "M", 16, "M", 16, "M"), image_size=32)
    with pytest.raises(ConceptEvoError, match="layer"):
        evolution_importance(model_t, other, layers, {0: x})


def test_sample_class_images():
    targets = np.array([0, 1, 1, 2] * 100)
    picked = sample_class_images(targets, 1, n=128, seed=4)
    assert len(picked) == 128 and len(set(picked.tolist())) == 128
    assert np.all(targets[picked] == 1) and np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(picked, sample_class_images(targets, 1, n=128, seed=4))
    assert not np.array_equal(picked, sample_class_images(targets, 1, n=128, seed=5))
    np.testing.assert_array_equal(sample_class_images(targets, 2, n=500), np.flatnonzero(targets == 2))
    with pytest.raises(ConceptEvoError, match="no images"):
        sample_class_images(targets, 3)
    with pytest.raises(ConceptEvoError):
        sample_class_images(targets, 1, n=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model_t, model_t2 = _pair(dtype=torch.float32)
    layers = default_layers(model_t)
    x = _images(9, dtype=torch.float32)
    on_cpu = evolution_importance(model_t, model_t2, layers, {0: x, 3: x}, batch_size=4)
    on_gpu = evolution_importance(model_t, model_t2, layers, {0: x, 3: x}, batch_size=4, device="cuda")
    assert next(model_t.parameters()).device.type == "cpu"  # moved back
    np.testing.assert_allclose(on_gpu.mean_S, on_cpu.mean_S, rtol=1e-3, atol=1e-5)
    assert np.mean(np.abs(on_gpu.I - on_cpu.I)) < 0.02  # signs of near-zero S may flip
    cuda_models = (model_t.cuda(), model_t2.cuda())
    on_gpu_models = evolution_importance(*cuda_models, layers, {0: x.cuda(), 3: x.cuda()}, batch_size=4)
    np.testing.assert_allclose(on_gpu_models.mean_S, on_cpu.mean_S, rtol=1e-3, atol=1e-5)
