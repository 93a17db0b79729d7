"""The engine's shared helpers: eval mode on a device, restored however the block ends; layer row slices."""

from __future__ import annotations

import pytest
from torch import nn

from worker.engine._utils import device_of, eval_on, layer_slices, resolve_device
from worker.engine.layers import LayerSpec


def test_eval_on_restores_the_mode_even_when_the_block_fails() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with eval_on(model, device_of(model)):
        assert not model.training and not model[1].training
    assert model.training and model[1].training
    with pytest.raises(RuntimeError), eval_on(model):
        raise RuntimeError("boom")
    assert model.training
    assert resolve_device(model, None) == device_of(model) and str(resolve_device(model, "cpu")) == "cpu"
    assert str(device_of(nn.ReLU())) == "cpu"  # no parameters: the CPU


def test_layer_slices_follow_the_neuron_order() -> None:
    layers = [LayerSpec("a", 3, "a"), LayerSpec("b", 2, "b")]
    assert layer_slices(layers) == {"a": slice(0, 3), "b": slice(3, 5)}
