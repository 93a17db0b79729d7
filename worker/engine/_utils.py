"""Small helpers the engine modules share: where a model lives, and running it in eval mode on a device.

Each was written out in several modules (stimuli, importance, reversion, receptive fields, layer probing, the
training loop's evaluation); one definition keeps their behaviour the same — notably that a model's training
mode and device are restored however the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from worker.engine.layers import LayerSpec


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def dtype_of(model: nn.Module) -> torch.dtype:
    """The dtype of ``model``'s first parameter (torch's default for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.dtype if parameter is not None else torch.get_default_dtype()


def resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to compute on: ``device`` when given (bare ``"cuda"`` = the current CUDA device), else the model's.

    Args:
        model: the network.
        device: a torch device, its name, or None.

    Returns:
        A concrete :class:`torch.device`.
    """
    if device is not None:
        resolved = torch.device(device)
        if resolved.type == "cuda" and resolved.index is None:  # "cuda" is the current CUDA device
            resolved = torch.device("cuda", torch.cuda.current_device())
        return resolved
    return device_of(model)


@contextmanager
def eval_on(model: nn.Module, device: torch.device | None = None) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (on ``device`` when given); restore its mode and device afterwards.

    Args:
        model: the network; moved only when it has parameters on another device.
        device: where to run it; None leaves it where it is.

    Yields:
        ``model`` itself.
    """
    was_training = model.training
    parameter = next(model.parameters(), None)
    old_device = parameter.device if parameter is not None else None
    move = device is not None and old_device is not None and old_device != device
    model.eval()
    if move:
        model.to(device)
    try:
        yield model
    finally:
        if move:
            model.to(old_device)
        model.train(was_training)


def layer_slices(layers: Sequence[LayerSpec]) -> dict[str, slice]:
    """Rows of each layer's neurons in the all-layers neuron order (layers in order, channels within).

    Args:
        layers: the analysed layers.

    Returns:
        Layer name → slice of its channels.
    """
    slices, start = {}, 0
    for spec in layers:
        slices[spec.name] = slice(start, start + spec.channels)
        start += spec.channels
    return slices
