"""True receptive fields: analytic tracing vs gradient measurement, and the pixel-perturbation oracle."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from worker.engine.receptive_field import ReceptiveField, receptive_fields
from worker.errors import ConceptEvoError
from worker.models.demo_net import demo_vgg
from worker.models.layers import LayerSpec, default_layers


def _strided_dilated() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1, dilation=2),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(8, 6, 3, stride=2, dilation=3),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 4, (3, 1), padding=(1, 0)),
    ).eval()


def _layers(model: nn.Module, names: list[str]) -> list[LayerSpec]:
    return [LayerSpec(name, 0, name) for name in names]


def _perturbation_check(model: nn.Module, name: str, field: ReceptiveField, side: int) -> None:
    """Oracle: pixels outside the field never change the unit; the pixels inside do."""
    model = model.double().eval()
    captured = {}
    handle = model.get_submodule(name).register_forward_hook(
        lambda m, a, out: captured.__setitem__("z", out.clone())
    )
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, side, side, generator=generator, dtype=torch.float64)
    try:
        with torch.no_grad():
            model(image)
            height, width = captured["z"].shape[2:]
            units = {(0, 0), (height - 1, width - 1), (height // 2, width // 2), (height // 3, width - 1)}
            for y, x in units:
                y0, x0, y1, x1 = field.input_box(y, x, side)
                inside = torch.zeros(side, side, dtype=torch.bool)
                inside[y0:y1, x0:x1] = True
                noise = torch.rand(1, 3, side, side, generator=generator, dtype=torch.float64) * 4 - 2
                model(image)
                before = captured["z"][0, :, y, x]
                model(torch.where(inside, image, noise))
                assert torch.allclose(captured["z"][0, :, y, x], before, atol=1e-9), (name, y, x, "outside")
                model(torch.where(inside, noise, image))
                assert (captured["z"][0, :, y, x] - before).abs().max() > 1e-6, (name, y, x, "inside")
    finally:
        handle.remove()


def test_demo_vgg_fields_by_hand():
    model = demo_vgg()
    fields = receptive_fields(model, default_layers(model), 64)
    # 3x3 convs (pad 1) and 2x2 pools: sizes 3, 8, 18, 38, 54, 94 and strides 1, 2, 4, 8, 8, 16.
    assert [f.size for f in fields.values()] == [(3, 3), (8, 8), (18, 18), (38, 38), (54, 54), (94, 94)]
    assert [f.stride for f in fields.values()] == [(1, 1), (2, 2), (4, 4), (8, 8), (8, 8), (16, 16)]
    assert all(f.method == "analytic" for f in fields.values())
    first = fields["features.1"]
    assert first.input_box(0, 0, 64) == (0, 0, 2, 2)
    assert first.input_box(10, 20, 64) == (9, 19, 12, 22)
    assert first.input_box(63, 63, 64) == (62, 62, 64, 64)
    assert fields["features.20"].input_box(2, 2, 64) == (0, 0, 64, 64)


@pytest.mark.parametrize("make", [demo_vgg, _strided_dilated])
def test_analytic_equals_measured_on_chains(make):
    model = make()
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.BatchNorm2d)]
    analytic = receptive_fields(model, _layers(model, names), 64, method="analytic")
    measured = receptive_fields(model, _layers(model, names), 64, method="measured")
    for name in names:
        assert analytic[name].method == "analytic" and measured[name].method == "measured"
        assert (analytic[name].stride, analytic[name].lo, analytic[name].hi) == (
            measured[name].stride,
            measured[name].lo,
            measured[name].hi,
        ), name


@pytest.mark.parametrize("make", [demo_vgg, _strided_dilated])
def test_outside_pixels_do_not_matter_inside_pixels_do(make):
    model = make()
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    fields = receptive_fields(model, _layers(model, names), 64)
    for name in names:
        _perturbation_check(model, name, fields[name], 64)


def test_resnet_skip_connections_are_measured_and_correct():
    model = torchvision.models.resnet18(weights=None)
    names = ["bn1", "layer1.0.bn2", "layer1.1.bn1", "layer2.0.bn2", "layer2.0.downsample.1"]
    fields = receptive_fields(model, _layers(model, names), 64)
    assert fields["bn1"].method == "analytic" and fields["layer1.0.bn2"].method == "analytic"
    assert fields["layer1.1.bn1"].method == "measured"  # after the first residual addition
    # ResNet-18 by hand: 7x7/2 conv (7), 3x3/2 pool (11), then 3x3 convs at stride 4 add 8 each.
    assert fields["bn1"].size == (7, 7) and fields["layer1.0.bn2"].size == (27, 27)
    assert fields["layer1.1.bn1"].size == (35, 35) and fields["layer2.0.bn2"].size == (67, 67)
    assert fields["layer2.0.downsample.1"].stride == (8, 8)
    for name in ["layer1.1.bn1", "layer2.0.bn2"]:
        _perturbation_check(model, name, fields[name], 64)


def test_bad_method_and_untraceable_analytic():
    model = torchvision.models.resnet18(weights=None)
    with pytest.raises(ConceptEvoError, match="unknown receptive-field method"):
        receptive_fields(model, _layers(model, ["bn1"]), 64, method="guess")
    with pytest.raises(ConceptEvoError, match="not at the end of a chain"):
        receptive_fields(model, _layers(model, ["layer1.1.bn1"]), 64, method="analytic")
