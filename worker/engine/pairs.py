"""Co-activated neuron pairs D (paper Appendix A.1, Algorithms 3–4, Eq 8).

For every image x, ``N_x = {n | x ∈ X_n}`` (Eq 8) is the set of neurons having x among their stimuli. Its
neurons are put in random order and a *sliding window of length 2* runs over them. We read the paper's words
literally: the window slides by one, so the pairs **overlap** — ``(n1, n2), (n2, n3), …, (n_{c-1}, n_c)`` —
and an image with c co-activated neurons adds ``c − 1`` pairs to the multiset D (none when c < 2). Hence the
number of pairs per pairing is fixed: ``|D| = #incidences − #images having at least one neuron``.

Everything is vectorised: the (neuron, image) incidences are listed in pairing order (images one after the
other, each image's neurons shuffled) and neighbours that share an image become pairs — no Python loop over
images. That rule, :func:`chain_pairs`, is the only pairing in the code base: :func:`pairs_from_keys` (the
shuffle given as explicit keys, so a literal per-image transcription can be fed the very same shuffle) and
both trainers of :mod:`worker.engine.neuron_embedding` (the torch one listing incidences by a composite sort
key on the device, the compiled one by :func:`epoch_pairs` after an in-place shuffle) call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

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


@dataclass(frozen=True)
class Incidences:
    """The incidences ``(n, x)`` — image x is among neuron n's stimuli — grouped by image (Eq 8's ``N_x``).

    Attributes:
        neurons: ``(I,)`` int64 neuron of each incidence; images ascending, each image's neurons ascending.
        group: ``(I,)`` int64 rank of the incidence's image among the images some neuron uses.
        starts: ``(G + 1,)`` int64 offsets: image g's neurons are ``neurons[starts[g]:starts[g + 1]]``.
    """

    neurons: np.ndarray
    group: np.ndarray
    starts: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of images used by at least one neuron."""
        return int(self.starts.size - 1)

    @property
    def n_pairs(self) -> int:
        """``|D|`` of every pairing: ``#incidences − #used images`` (see the module docstring)."""
        return int(self.neurons.size - self.n_groups)


def group_incidences(indices: np.ndarray) -> Incidences:
    """Group a validated stimuli matrix's incidences by image.

    Args:
        indices: ``(n_neurons, k)`` int64 stimuli (see :func:`validate_indices`).

    Returns:
        :class:`Incidences`, sorted by image with a stable sort.
    """
    n_neurons, k = indices.shape
    images = indices.ravel()
    order = np.argsort(images, kind="stable")
    img_s = images[order]
    starts = np.flatnonzero(np.r_[True, img_s[1:] != img_s[:-1], True]).astype(np.int64)
    group = np.repeat(np.arange(starts.size - 1, dtype=np.int64), np.diff(starts))
    neurons = np.repeat(np.arange(n_neurons, dtype=np.int64), k)[order]
    return Incidences(neurons=neurons, group=group, starts=starts)


def chain_pairs(
    neurons: np.ndarray | torch.Tensor, groups: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    """Algorithm 4's window of length 2, sliding by one, over incidences listed in pairing order.

    Args:
        neurons: ``(I,)`` neuron of each incidence, each image's incidences contiguous and in shuffled order.
        groups: ``(I,)`` image (or image rank) of each incidence, same layout; numpy or torch, like ``neurons``.

    Returns:
        ``(P, 2)`` pairs of neighbours that share an image, in listing order, of ``neurons``' array type.
    """
    same = groups[1:] == groups[:-1]
    first, second = neurons[:-1][same], neurons[1:][same]
    if isinstance(first, torch.Tensor):
        return torch.stack([first, second], dim=1)
    return np.stack([first, second], axis=1)


def epoch_pairs(incidences: Incidences, neurons: np.ndarray, order: np.ndarray) -> np.ndarray:
    """One pairing of D: images visited in ``order``, each image's neurons in the order ``neurons`` lists them.

    Args:
        incidences: the grouping (its ``starts`` and ``group``).
        neurons: ``(I,)`` int64 incidences' neurons, laid out like ``incidences.neurons`` but shuffled within
            each image.
        order: ``(G,)`` int64 permutation of the used images' ranks: the order images are visited.

    Returns:
        ``(P, 2)`` int64 pairs, ``P = incidences.n_pairs``.
    """
    starts = incidences.starts
    counts = np.diff(starts)[order]
    # position of every incidence when the image blocks are laid out in `order` (no sort needed)
    shift = starts[:-1][order] - (np.cumsum(counts) - counts)
    pos = np.repeat(shift, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    return chain_pairs(neurons[pos], incidences.group[pos])


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
    return chain_pairs(neurons[order], images[order])


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
