"""Literal, slow transcriptions of the paper's Eq 5–7 and of the §4.4 reversion, used as test oracles.

Nothing here is vectorised and nothing is imported from the code under test: one image at a time, one
backward per layer per image, one neuron at a time with Eq 6's ``ΔZ_n`` built as a full tensor that is
zero outside channel ``n``. In-place operations are switched off (``inplace`` flags) on a deep copy of each
model; a layer's value is copied the moment its hook fires (ResNet's ``out += identity`` is in place and has
no flag), and the gradient is that of ``h_l`` — the network with layer ``l``'s output replaced by a given
tensor — taken with respect to that tensor, exactly the ``∇h`` of Eq 5.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


def without_inplace(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every ``inplace`` flag set to False."""
    clone = copy.deepcopy(model).eval()
    for module in clone.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return clone


def layer_output(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward ``x`` through ``model``, returning (a copy of the layer's output when produced, the logits)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(module, args, output):
        seen["z"] = output.detach().clone()

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    return seen["z"], logits


def h_of(model: nn.Module, layer: str, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``h_{l}(z)``: the logits of ``model`` on ``x`` when layer ``l``'s output is replaced by ``z``.

    The network runs on a copy of ``z`` (``z`` itself may be a leaf that later in-place ops must not touch);
    the copy's gradient flows back to ``z`` unchanged.
    """
    handle = model.get_submodule(layer).register_forward_hook(lambda module, args, output: z.clone())
    try:
        return model(x)
    finally:
        handle.remove()


def literal_sensitivities(
    model_t: nn.Module, model_t2: nn.Module, layers: list[str], images: torch.Tensor, c: int
) -> np.ndarray:
    """Eq 5–6 literally: ``S[x, n]`` for every image and every neuron (layers in order, channels within).

    For each image and each layer: a forward of model ``t`` for ``Z^t``, a forward of ``h^t_l`` at ``Z^t`` and
    a backward of ``logit_c`` to ``Z^t`` alone (``∇h``), a no-grad forward of model ``t'`` for ``Z^{t'}``; then
    for each neuron ``n`` the dot product of ``∇h`` with ``ΔZ_n`` (Eq 6: ``Z_n^{t'} − Z_n^t`` on channel
    ``n``, zeros elsewhere).
    """
    m_t, m_t2 = without_inplace(model_t), without_inplace(model_t2)
    rows = []
    for i in range(images.shape[0]):
        x = images[i : i + 1]
        row: list[float] = []
        for layer in layers:
            with torch.no_grad():
                z_t, _ = layer_output(m_t, layer, x)
            z = z_t.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(h_of(m_t, layer, x, z)[0, c], z)
            with torch.no_grad():
                z_t2, _ = layer_output(m_t2, layer, x)
            for n in range(z_t.shape[1]):
                delta = torch.zeros_like(z_t)
                delta[:, n] = z_t2[:, n] - z_t[:, n]
                row.append(float((grad * delta).sum()))
        rows.append(row)
    return np.asarray(rows)


def literal_importance(S: np.ndarray) -> np.ndarray:
    """Eq 7 literally: for each neuron, the count of images with ``S > 0`` divided by the image count."""
    n_images, n_neurons = S.shape
    out = np.zeros(n_neurons)
    for n in range(n_neurons):
        count = 0
        for x in range(n_images):
            if S[x, n] > 0:
                count += 1
        out[n] = count / n_images
    return out


def finite_difference(
    model_t: nn.Module, model_t2: nn.Module, layer: str, x: torch.Tensor, c: int, n: int, eps: float
) -> float:
    """The limit in Eq 5 at a small ``ε``: ``(h(Z^t + ε ΔZ_n) − h(Z^t)) / ε`` from real forwards of the rest."""
    m_t, m_t2 = without_inplace(model_t), without_inplace(model_t2)
    with torch.no_grad():
        z_t, _ = layer_output(m_t, layer, x)
        z_t2, _ = layer_output(m_t2, layer, x)
        delta = torch.zeros_like(z_t)
        delta[:, n] = z_t2[:, n] - z_t[:, n]
        plus = h_of(m_t, layer, x, z_t + eps * delta)[0, c]
        minus = h_of(m_t, layer, x, z_t - eps * delta)[0, c]
    return float((plus - minus) / (2 * eps))


def literal_reverted_logits(
    model_t: nn.Module, model_t2: nn.Module, layer: str, channels: list[int], x: torch.Tensor
) -> torch.Tensor:
    """§4.4 literally: ``t'``'s logits when channels' maps of ``layer`` are replaced by ``t``'s, one at a time."""
    m_t, m_t2 = without_inplace(model_t), without_inplace(model_t2)
    with torch.no_grad():
        z_t, _ = layer_output(m_t, layer, x)
        z_t2, _ = layer_output(m_t2, layer, x)
        z = z_t2.clone()
        for n in channels:
            z[:, n] = z_t[:, n]
        return h_of(m_t2, layer, x, z)
