"""Co-activated neuron pairs D (paper Appendix A.1, Algorithms 3–4, Eq 8).

For every image x, ``N_x = {n | x ∈ X_n}`` (Eq 8) is the set of neurons having x among their stimuli. Its
neurons are put in random order and a *sliding window of length 2* runs over them. We read the paper's words
literally: the window slides by one, so the pairs **overlap** — ``(n1, n2), (n2, n3), …, (n_{c-1}, n_c)`` —
and an image with c co-activated neurons adds ``c − 1`` pairs to the multiset D (none when c < 2). Hence the
number of pairs per pairing is fixed: ``|D| = #incidences − #images having at least one neuron``.

Everything is vectorised: the (neuron, image) incidences are sorted by (image, random key) with one sort, and
neighbours that share an image become pairs — no Python loop over images. :func:`pairs_from_keys` exposes the
same computation with explicit keys so a literal per-image transcription can be fed the very same shuffle.
"""

from __future__ import annotations

import logging

import numpy as np

from worker.errors import ConceptEvoError

log = logging.getLogger(__name__)


def validate_indices(indices: np.ndarray, n_images: int) -> np.ndarray:
    """Check a stimuli matrix and return it as a C-contiguous int64 array.

    Args:
        indices: ``(n_neurons, k)`` image indices of each neuron's stimuli ``X_n`` (best first).
        n_images: number of images in the dataset; every index must lie in ``[0, n_images)``.

    Returns:
        ``indices`` as int64.

    Raises:
        ConceptEvoError: wrong shape or dtype, an index out of range, or a neuron listing an image twice.
    """
    arr = np.asarray(indices)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConceptEvoError(
            f"stimuli indices must be a non-empty (n_neurons, k) array, got shape {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConceptEvoError(f"stimuli indices must be integers, got dtype {arr.dtype}")
    if n_images <= 0:
        raise ConceptEvoError(f"n_images must be positive, got {n_images}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_images:
        raise ConceptEvoError(f"stimuli indices must lie in [0, {n_images}), found values in [{lo}, {hi}]")
    if arr.shape[1] > 1:
        srt = np.sort(arr, axis=1)
        dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
        if dup.size:
            raise ConceptEvoError(f"neuron {int(dup[0])} lists the same stimulus image twice")
    return arr


def pairs_from_keys(indices: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Eq 8 + Algorithm 4 with a given shuffle: overlapping consecutive pairs per image.

    Args:
        indices: ``(n_neurons, k)`` int64 stimuli (already validated).
        keys: ``(n_neurons, k)`` float random keys; within one image, neurons are ordered by the key of their
            incidence ``(n, x)`` — this *is* the random order of Algorithm 4.

    Returns:
        ``(P, 2)`` int64 pairs ``(n, m)``, images in increasing index order, each image's pairs in shuffled
        order.
    """
    n_neurons, k = indices.shape
    images = indices.ravel()
    neurons = np.repeat(np.arange(n_neurons, dtype=np.int64), k)
    order = np.lexsort((np.asarray(keys).ravel(), images))
    img_s = images[order]
    nrn_s = neurons[order]
    same = img_s[1:] == img_s[:-1]
    return np.stack([nrn_s[:-1][same], nrn_s[1:][same]], axis=1)


def coactivated_pairs(indices: np.ndarray, n_images: int, rng: np.random.Generator) -> np.ndarray:
    """Sample the multiset D of co-activated neuron pairs once (Appendix A.1, Eq 8, Algorithms 3–4).

    Args:
        indices: ``(n_neurons, k)`` each neuron's stimulus image indices.
        n_images: number of images of the dataset.
        rng: numpy Generator drawing the per-image shuffles (seeded by the caller).

    Returns:
        ``(P, 2)`` int64 array of neuron pairs; ``P = #incidences − #images used by some neuron``.
    """
    idx = validate_indices(indices, n_images)
    keys = rng.random(idx.shape)
    pairs = pairs_from_keys(idx, keys)
    log.debug("sampled %d co-activated pairs from %d incidences", len(pairs), idx.size)
    return pairs


def pairs_per_pairing(indices: np.ndarray) -> int:
    """Number of pairs every sampling of D yields (it does not depend on the shuffle).

    Args:
        indices: ``(n_neurons, k)`` stimuli.

    Returns:
        ``#incidences − #distinct images`` (Algorithm 4 with an overlapping window of 2).
    """
    arr = np.asarray(indices)
    return int(arr.size - np.unique(arr).size)
