"""Architecture registry: torchvision names, import paths, the demo alias, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worker.errors import ConceptEvoError
from worker.models.demo_net import DemoVGG
from worker.models.layers import resolve_layers
from worker.models.registry import build_model, factory_accepts, known_architectures


def tiny_factory(num_classes: int = 3, hidden: int = 4) -> nn.Module:
    """A user's own factory, importable as ``tests.worker.test_registry:tiny_factory``."""
    return nn.Sequential(
        nn.Conv2d(3, hidden, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, num_classes)
    )


def not_a_model(num_classes: int = 3) -> str:
    return "nope"


def test_demo_alias_builds_the_demo_net_with_kwargs():
    model = build_model("demo-vgg", 7, dropout=0.1, widths=(8, "M", 16, "M"))
    assert isinstance(model, DemoVGG)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    same = build_model("worker.models.demo_net:demo_vgg", 7)
    assert isinstance(same, DemoVGG)


def test_torchvision_name_has_requested_classes_and_no_pretrained_weights():
    torch.manual_seed(0)
    model = build_model("resnet18", 12)
    assert model.fc.out_features == 12
    # random init: two builds with different seeds differ (pretrained weights would be identical)
    torch.manual_seed(1)
    other = build_model("resnet18", 12)
    assert not torch.equal(model.conv1.weight, other.conv1.weight)


def test_import_path_factory():
    model = build_model("tests.worker.test_registry:tiny_factory", 5, hidden=6)
    assert model[-1].out_features == 5 and model[0].out_channels == 6


def test_unknown_architecture_lists_close_names():
    with pytest.raises(ConceptEvoError, match=r"unknown architecture 'resnet19'.*resnet18"):
        build_model("resnet19", 10)
    with pytest.raises(ConceptEvoError, match="demo-vgg"):
        build_model("demo_vg", 10)


def test_bad_import_paths_and_arguments():
    with pytest.raises(ConceptEvoError, match="cannot import module 'no_such_pkg.mod'"):
        build_model("no_such_pkg.mod:f", 3)
    with pytest.raises(ConceptEvoError, match="has no callable 'missing'"):
        build_model("tests.worker.test_registry:missing", 3)
    with pytest.raises(ConceptEvoError, match="not an nn.Module"):
        build_model("tests.worker.test_registry:not_a_model", 3)
    with pytest.raises(ConceptEvoError, match="rejected its arguments"):
        build_model("resnet18", 3, dropout=0.5)
    with pytest.raises(ConceptEvoError, match="num_classes must be a positive integer"):
        build_model("demo-vgg", 0)


def test_factory_accepts():
    assert factory_accepts("demo-vgg", "dropout")
    assert factory_accepts("vgg11", "dropout")
    assert not factory_accepts("resnet18", "dropout")
    assert factory_accepts("tests.worker.test_registry:tiny_factory", "hidden")


def test_known_architectures_include_alias_and_torchvision():
    names = known_architectures()
    assert "demo-vgg" in names and "resnet18" in names and "vgg16_bn" in names


def test_unknown_layer_lists_valid_layers():
    model = build_model("demo-vgg", 12)
    with pytest.raises(ConceptEvoError, match=r"unknown layer 'features\.99'.*features\.1"):
        resolve_layers(model, ["features.99"])
