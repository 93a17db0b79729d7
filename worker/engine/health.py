"""Training-health measures on the unified semantic space (paper §4.5, Appendix C; DESIGN §4 item 10).

* Concept diversity: the differential entropy of each embedding dimension over a snapshot's neurons
  (``scipy.stats.differential_entropy`` with its default ``method="auto"``: Vasicek's spacing estimator for
  more than 1000 neurons, Ebrahimi's for 11–1000, van Es's for ≤ 10), averaged over dimensions. Higher =
  more diverse; the paper reports it dropping from 0.30 to −1.11 as a VGG16 with too high a learning rate
  collapses.
* Movement: the Euclidean distance each neuron's vector travels between two epochs, and its mean.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.stats import differential_entropy

from worker.errors import ConceptEvoError

log = logging.getLogger(__name__)


def _matrix(vectors: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConceptEvoError(f"{what} must be a non-empty (n_neurons, dim) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConceptEvoError(f"{what} contain NaN or infinite values")
    return arr


def concept_diversity(vectors: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Mean over dimensions of the differential entropy of the neuron embeddings (§4.5).

    Args:
        vectors: ``(n_neurons, dim)`` one snapshot's neuron vectors (at least 4 neurons).
        exclude: ``(n_neurons,)`` bool, neurons left out — the tied ones (:mod:`worker.engine.ties`): their
            stimuli are arbitrary, so their vectors say nothing about the concepts learned. When fewer than 4
            neurons would remain, none is left out.

    Returns:
        ``mean_d H(vectors[:, d])`` in nats; ``-inf`` when a dimension is constant (total collapse).
    """
    arr = _matrix(vectors, "neuron vectors")
    if exclude is not None:
        drop = np.asarray(exclude, dtype=bool)
        if drop.shape != (arr.shape[0],):
            raise ConceptEvoError(f"exclude must be ({arr.shape[0]},) bool, got shape {drop.shape}")
        if (~drop).sum() >= 4:
            arr = arr[~drop]
    if arr.shape[0] < 4:
        raise ConceptEvoError(f"concept diversity needs at least 4 neurons, got {arr.shape[0]}")
    with np.errstate(divide="ignore"):
        h = differential_entropy(arr, axis=0)
    return float(np.mean(h))


def movement(vectors_t: np.ndarray, vectors_t2: np.ndarray) -> tuple[float, np.ndarray]:
    """How far each neuron's vector moves between two epochs (§4.5, "moved 0.991 in the Euclidean distance").

    Args:
        vectors_t: ``(n_neurons, dim)`` vectors at epoch t.
        vectors_t2: ``(n_neurons, dim)`` the same neurons' vectors at epoch t'.

    Returns:
        ``(mean distance, per-neuron distances (n_neurons,) float64)``.
    """
    a = _matrix(vectors_t, "vectors at t")
    b = _matrix(vectors_t2, "vectors at t'")
    if a.shape != b.shape:
        raise ConceptEvoError(
            f"movement needs the same neurons at both epochs, got shapes {a.shape} and {b.shape}"
        )
    d = np.linalg.norm(b - a, axis=1)
    return float(d.mean()), d
