"""Literal, slow transcriptions of the paper's algorithms, used as oracles by the stimuli tests.

Nothing here is vectorised on purpose: each function follows the printed pseudocode line by line.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn


def activation_maps_per_image(
    model: nn.Module, layer_names: list[str], images: torch.Tensor
) -> list[dict[str, np.ndarray]]:
    """``Z_{l,M}(x)`` for every image ``x`` (one forward per image) and every named layer, as ``(C, H, W)``.

    Runs on a deep copy of ``model`` in eval mode with every in-place op turned off (``inplace=False``),
    so the stored map is exactly the layer's output, untouched by a following ``ReLU(inplace=True)``.
    """
    clone = copy.deepcopy(model).eval()
    for module in clone.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    maps: list[dict[str, np.ndarray]] = []
    current: dict[str, np.ndarray] = {}
    handles = []
    for name in layer_names:

        def hook(module, args, output, name=name):
            current[name] = output[0].detach().clone().cpu().numpy()

        handles.append(clone.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            for i in range(images.shape[0]):
                current = {}
                clone(images[i : i + 1])
                maps.append(current)
    finally:
        for handle in handles:
            handle.remove()
    return maps


def get_stimuli(
    maps: list[dict[str, np.ndarray]], layer: str, channel: int, k: int, paper_tie_rule: bool = False
) -> tuple[list[int | None], list[float], list[tuple[int, int] | None]]:
    """Algorithm 2 (getStimuli) for neuron ``channel`` of ``layer``, image by image.

    ``X`` (stimuli) and ``A`` (their maxima) start as ``[None] * k`` and ``[-inf] * k``; for each image
    ``x`` in dataset order, ``M = Max(Z_n(x))``; if ``A[k-1] < M``, ``i`` = the smallest index with
    ``M ≥ A[i]`` (paper, ``paper_tie_rule=True``) or ``M > A[i]`` (ours: the lower image index wins among
    equal maxima), entries ``i..k-2`` shift down one place and ``x`` goes to ``i``.

    Also returns, for each stimulus, the (y, x) of the first maximum of its map in row-major order
    (needed for patches; not part of the paper's pseudocode).
    """
    stimuli: list[int | None] = [None] * k
    maxima: list[float] = [-math.inf] * k
    where: list[tuple[int, int] | None] = [None] * k
    for x, image_maps in enumerate(maps):
        z = image_maps[layer][channel]
        m = float(np.max(z))
        if maxima[k - 1] < m:
            i = 0
            while not (m >= maxima[i] if paper_tie_rule else m > maxima[i]):
                i += 1
            for j in range(k - 1, i, -1):
                maxima[j] = maxima[j - 1]
                stimuli[j] = stimuli[j - 1]
                where[j] = where[j - 1]
            maxima[i] = m
            stimuli[i] = x
            flat = int(np.argmax(z))
            where[i] = (flat // z.shape[1], flat % z.shape[1])
    return stimuli, maxima, where


def get_all_stimuli(
    model: nn.Module,
    layers: list[tuple[str, int]],
    images: torch.Tensor,
    k: int,
    paper_tie_rule: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Algorithm 1's first loop: ``getStimuli`` for every neuron (layers in order, channels within).

    Args:
        layers: ``(name, channels)`` pairs.

    Returns:
        ``(indices (N, k), maxima (N, k), argmax_yx (N, k, 2))``.
    """
    maps = activation_maps_per_image(model, [name for name, _ in layers], images)
    return stimuli_from_maps(maps, layers, k, paper_tie_rule)


def stimuli_from_maps(
    maps: list[dict[str, np.ndarray]], layers: list[tuple[str, int]], k: int, paper_tie_rule: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`get_all_stimuli` on maps already computed by :func:`activation_maps_per_image`."""
    indices, maxima, where = [], [], []
    for name, channels in layers:
        for channel in range(channels):
            s, a, w = get_stimuli(maps, name, channel, k, paper_tie_rule)
            indices.append(s)
            maxima.append(a)
            where.append(w)
    return np.array(indices, dtype=np.int64), np.array(maxima, dtype=np.float32), np.array(where)
