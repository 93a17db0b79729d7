"""Tied stimuli: neurons whose k stimulus maxima are all equal carry no concept.

A neuron whose spatial maximum is the same for its k best images (typically a dead channel: a constant map,
e.g. all zero after a ReLU or the BatchNorm shift of a zero convolution) has no preferred images — its
"stimuli" are just the k lowest image indices, by the deterministic tie-break of Algorithm 2. Such neurons are
flagged here once, stored with the snapshot and used downstream: the API marks them, concept diversity and the
reversion check's importance bins leave them out, and the page can grey them.

Rule (this implementation's choice; the authors' code has none): tied when ``max_k − min_k ≤ tol`` with
``tol = rtol · max(1, |max_k|)``, rtol = 1e-6 — equal up to float32 rounding of one constant map.
"""

from __future__ import annotations

import numpy as np

from worker.errors import ConceptEvoError

TIE_RTOL = 1e-6
"""Relative tolerance of the tie rule (float32 rounding of one constant value)."""


def tied_stimuli(maxima: np.ndarray, rtol: float = TIE_RTOL) -> np.ndarray:
    """Which neurons' k stimulus maxima all tie.

    Args:
        maxima: ``(n_neurons, k)`` spatial maxima of each neuron's stimuli (any order).
        rtol: relative tolerance (see the module docstring).

    Returns:
        ``(n_neurons,)`` bool, True for a tied neuron (also for non-finite maxima, which carry no concept).

    Raises:
        ConceptEvoError: ``maxima`` is not a non-empty 2-D array.
    """
    arr = np.asarray(maxima, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ConceptEvoError(f"stimulus maxima must be an (n_neurons, k) array, got shape {arr.shape}")
    with np.errstate(invalid="ignore"):
        top, low = arr.max(axis=1), arr.min(axis=1)
        tied = (top - low) <= rtol * np.maximum(1.0, np.abs(top))
    return tied | ~np.isfinite(arr).all(axis=1)


def ties_per_layer(tied: np.ndarray, layer_of: np.ndarray, n_layers: int) -> list[int]:
    """How many tied neurons each layer has.

    Args:
        tied: ``(n_neurons,)`` bool from :func:`tied_stimuli`.
        layer_of: ``(n_neurons,)`` layer index of each neuron.
        n_layers: number of layers.

    Returns:
        ``n_layers`` counts.
    """
    flags = np.asarray(tied, dtype=bool)
    layers = np.asarray(layer_of, dtype=np.int64)
    if flags.shape != layers.shape:
        raise ConceptEvoError(f"tied flags {flags.shape} and layers {layers.shape} must have the same shape")
    return [int(c) for c in np.bincount(layers[flags], minlength=n_layers)[:n_layers]]
