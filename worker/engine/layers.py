"""Which modules of a network are the "layers" whose channels are ConceptEvo's neurons.

Rule for the default choice: one entry per ``nn.Conv2d``, in registration order. Where the module
registered right after the conv is an ``nn.BatchNorm2d`` over the same number of channels (the
conv→BN pattern of VGG-BN, ResNet, the demo net, …), the BatchNorm's output is taken instead of the
conv's: a raw conv output ranks images in reverse for a channel whose BN scale is negative, and the
BN output is what the rest of the network consumes. Users may instead name any modules by dotted
name; a module that runs more than once per forward pass (ResNet's shared ``relu``) is rejected when
it is captured (see :mod:`worker.engine.hooks`).

The layer spec lives in the engine (it defines what a neuron is, and every engine stage takes it), so the
engine depends on no model-building code; :mod:`worker.models` only builds networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from worker.engine._utils import device_of, eval_on
from worker.engine.hooks import LayerTaps
from worker.errors import ConceptEvoError


@dataclass(frozen=True)
class LayerSpec:
    """One analysed layer.

    Attributes:
        name: dotted module name (``model.get_submodule(name)``).
        channels: number of channels (neurons) of its output.
        conv: dotted name of the conv that produces it (the conv itself, or the conv before a BN).
    """

    name: str
    channels: int
    conv: str


def default_layers(model: nn.Module) -> list[LayerSpec]:
    """Every Conv2d of ``model`` (its BatchNorm where one directly follows), in registration order."""
    named = [(name, module) for name, module in model.named_modules() if name]
    specs: list[LayerSpec] = []
    for position, (name, module) in enumerate(named):
        if not isinstance(module, nn.Conv2d):
            continue
        follower = _next_leaf(named, position)
        if (
            follower is not None
            and isinstance(follower[1], nn.BatchNorm2d)
            and follower[1].num_features == module.out_channels
        ):
            specs.append(LayerSpec(follower[0], module.out_channels, name))
        else:
            specs.append(LayerSpec(name, module.out_channels, name))
    if not specs:
        raise ConceptEvoError(f"{type(model).__name__} has no Conv2d layer; name the layers to analyse")
    return specs


def resolve_layers(
    model: nn.Module, names: list[str] | None = None, input_shape: tuple[int, int, int] = (3, 64, 64)
) -> list[LayerSpec]:
    """Layers to analyse: ``names`` (dotted module names) in the model's order, or the default rule.

    Named modules are checked with one probe forward pass on a zero image of ``input_shape``: each
    must run exactly once per forward and output a 4-D ``(N, C, H, W)`` map; its ``C`` is the channel
    count.

    Raises:
        ConceptEvoError: a name that is not a module of the model (the message lists valid names), a
            module that runs several times per forward, or one whose output is not a 4-D map.
    """
    if not names:
        return default_layers(model)
    modules = dict(model.named_modules())
    unknown = [name for name in names if not name or name not in modules]
    if unknown:
        valid = ", ".join(name for name in modules if name)
        raise ConceptEvoError(
            f"unknown layer {unknown[0]!r} in {type(model).__name__}; valid layers: {valid}"
        )
    order = {name: i for i, name in enumerate(modules)}
    ordered = sorted(dict.fromkeys(names), key=order.__getitem__)
    shapes = probe_output_shapes(model, ordered, input_shape)
    return [LayerSpec(name, shapes[name][1], name) for name in ordered]


def probe_output_shapes(
    model: nn.Module, names: list[str], input_shape: tuple[int, int, int]
) -> dict[str, tuple[int, ...]]:
    """Output shape of each named module for one zero image, checking it is a single-use 4-D map."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name, output):
        shapes[name] = tuple(output.shape)

    with torch.no_grad(), eval_on(model), LayerTaps(model, names, record):
        model(torch.zeros(1, *input_shape, device=device_of(model)))
    for name, shape in shapes.items():
        if len(shape) != 4:
            raise ConceptEvoError(
                f"layer {name!r} outputs shape {list(shape)}, not an (N, C, H, W) map; name a convolutional module"
            )
    return shapes


def _next_leaf(named: list[tuple[str, nn.Module]], position: int) -> tuple[str, nn.Module] | None:
    for name, module in named[position + 1 :]:
        if not list(module.children()):
            return name, module
    return None
