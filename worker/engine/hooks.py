"""Compact forward-hook capture of named layers' outputs (after lucent's hook pattern).

:class:`LayerTaps` calls ``on_output(name, output)`` for every chosen module on every forward pass.
The callback sees the module's output *before* any later in-place operation (e.g. ``ReLU(inplace=True)``)
can change it, so reducing it inside the callback (``amax`` over space for stimuli) is safe. A callback
that needs the tensor itself later must keep a copy, or — to take gradients with respect to exactly
what the rest of the network consumes — return a replacement (see :func:`tap_for_gradients`).

A module that fires more than once per forward pass (ResNet's shared ``relu``) is not one layer: the
tap raises :class:`~worker.errors.ConceptEvoError` instead of silently mixing its calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from worker.errors import ConceptEvoError

OutputCallback = Callable[[str, torch.Tensor], torch.Tensor | None]


class LayerTaps:
    """Context manager: forward hooks on ``names`` that hand each output to ``on_output``.

    Args:
        model: the network.
        names: dotted module names to tap.
        on_output: ``f(name, output)``; if it returns a tensor, that tensor replaces the module's
            output for the rest of the forward pass.

    Call :meth:`new_pass` before each forward (done automatically by the pre-forward hook on the
    model itself) so that reuse within one pass is detected.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], on_output: OutputCallback) -> None:
        self.model = model
        self.names = list(names)
        self.on_output = on_output
        self._calls: dict[str, int] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> LayerTaps:
        self._handles.append(self.model.register_forward_pre_hook(lambda module, args: self.new_pass()))
        for name in self.names:
            module = self.model.get_submodule(name)
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def new_pass(self) -> None:
        self._calls.clear()

    def _hook_for(self, name: str):
        def hook(module, args, output):
            self._calls[name] = self._calls.get(name, 0) + 1
            if self._calls[name] > 1:
                raise ConceptEvoError(
                    f"layer {name!r} runs more than once per forward pass (a shared module); "
                    "name the per-use modules instead"
                )
            return self.on_output(name, output)

        return hook


def tap_for_gradients(kept: dict[str, torch.Tensor]) -> OutputCallback:
    """A callback that keeps each layer's output for ``torch.autograd.grad`` and shields it from in-place ops.

    The kept tensor is the module's own output; the network continues on a clone of it, so a following
    ``ReLU(inplace=True)`` modifies the clone, not the kept tensor. The gradient of any downstream value
    with respect to the kept tensor is then the gradient with respect to the layer's (pre-ReLU) output,
    exactly what the rest of the network consumes.
    """

    def keep(name: str, output: torch.Tensor) -> torch.Tensor:
        kept[name] = output
        return output.clone()

    return keep
