"""Split-half stability of a snapshot's placement (Eq 2) on the unified space.

Image vectors come from a nearly singular least-squares fit (Eq 3), so a neuron's Eq 2 position may hinge on
one or two of its stimuli. To measure it, the images are split at random into two disjoint halves and every
neuron is placed twice: from its stimuli in half A and from those in half B. Because stimuli are the neuron's
top-k images of the whole set, the ones falling in a half are exactly that half's top images, so each
placement is the snapshot placed from that half of the image set (with about k/2 stimuli). Neurons with fewer
than ``min_per_half`` stimuli in either half are left out. Reported, per snapshot:

* ``cosine``: median cosine between the two placements' vectors;
* ``displacement``: median distance between the two placements on the 2-D map, divided by the map's extent
  (diagonal of the base positions' bounding box) — over a random sample of at most ``DISPLACEMENT_SAMPLE``
  neurons: each is placed twice by the UMAP transform (~2.3 s per 4,800 vectors on a 2-core CPU), and a median
  over 1,000 neurons is within about ±3 percentile points of the whole snapshot's median (95 % of the time).

A snapshot is *unstable* when its points move more than ``MAX_DISPLACEMENT`` of the map between the two
placements — what a user reads off the map. The cosine decides only where there is no map to measure on
(``cosine < MIN_COSINE``). Why not both: on the default demo world even the base snapshot, whose neurons the
image vectors were fitted to, agrees only at median cosine 0.62 between halves (other epochs 0.30–0.62), so a
cosine rule at issue 13's goal of 0.9 flagged every epoch and told the user nothing; the map-level rule flags
the epochs whose points really jump (0.10–0.16 of the map: the random initialisations and overfit's epochs
1–3) and passes those that move 3–8 %. Both figures are stored and shown with the flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from worker.engine.image_embedding import row_cosines
from worker.errors import ConceptEvoError

MIN_COSINE = 0.9
"""Below this median split-half cosine a snapshot's placement is flagged unstable when it has no map to measure
the displacement on (issue 13's goal)."""
MAX_DISPLACEMENT = 0.1
"""Above this median 2-D displacement (share of the map's extent) a snapshot is flagged unstable."""
DISPLACEMENT_SAMPLE = 1000
"""At most this many neurons (a seeded random sample) are placed twice on the map to measure displacement."""


@dataclass
class Stability:
    """Split-half stability of one snapshot's placement.

    Attributes:
        cosine: median cosine between the two half placements (NaN when no neuron qualifies).
        displacement: median 2-D distance between them over the map extent (NaN without a map).
        neurons: how many neurons had enough stimuli in both halves.
        stable: False when the displacement exceeds its threshold, or, without a map, the cosine falls
            below its own (or nothing could be measured).
    """

    cosine: float
    displacement: float
    neurons: int
    stable: bool

    def to_json(self) -> dict[str, float | int | bool | None]:
        """Plain JSON (NaN → None)."""
        return {
            "cosine": _or_none(self.cosine),
            "displacement": _or_none(self.displacement),
            "neurons": int(self.neurons),
            "stable": bool(self.stable),
        }


def _or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def half_placements(
    indices: np.ndarray, image_vectors: np.ndarray, seed: int = 0, min_per_half: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq 2 from each of two random disjoint halves of the images.

    Args:
        indices: ``(n_neurons, k)`` a snapshot's stimuli.
        image_vectors: ``(n_images, dim)`` a vector for every image.
        seed: seeds the split.
        min_per_half: neurons with fewer stimuli in a half are left out.

    Returns:
        ``(vectors_a, vectors_b, used)``: ``(n_used, dim)`` float64 placements from each half and the
        ``(n_neurons,)`` bool mask of the neurons used.
    """
    iv = np.asarray(image_vectors, dtype=np.float64)
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 2 or iv.ndim != 2 or idx.size and (idx.min() < 0 or idx.max() >= len(iv)):
        raise ConceptEvoError(
            f"stimuli {idx.shape} must index the {len(iv)} image vectors of shape {iv.shape}"
        )
    in_a = np.random.default_rng(seed).random(len(iv)) < 0.5
    mask_a = in_a[idx]
    count_a = mask_a.sum(axis=1)
    count_b = idx.shape[1] - count_a
    used = (count_a >= min_per_half) & (count_b >= min_per_half)
    gathered = iv[idx[used]]
    weights_a = mask_a[used].astype(np.float64)
    vectors_a = np.einsum("nk,nkd->nd", weights_a, gathered) / count_a[used, None]
    vectors_b = np.einsum("nk,nkd->nd", 1.0 - weights_a, gathered) / count_b[used, None]
    return vectors_a, vectors_b, used


def map_extent(positions: np.ndarray) -> float:
    """Diagonal of the bounding box of 2-D ``positions`` (the map's extent)."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or len(pos) == 0:
        raise ConceptEvoError(f"map positions must be a non-empty (n, 2) array, got shape {pos.shape}")
    return float(np.linalg.norm(pos.max(axis=0) - pos.min(axis=0)))


def split_half_stability(
    indices: np.ndarray,
    image_vectors: np.ndarray,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    extent: float | None = None,
    seed: int = 0,
) -> Stability:
    """Place a snapshot from two disjoint halves of the images and compare (see the module docstring).

    Args:
        indices: ``(n_neurons, k)`` the snapshot's stimuli.
        image_vectors: ``(n_images, dim)`` the space's image vectors.
        transform: the space's 2-D map (vectors → positions); None skips the displacement, which is measured
            on at most :data:`DISPLACEMENT_SAMPLE` neurons.
        extent: the map's extent (:func:`map_extent` of the base positions); needed with ``transform``.
        seed: seeds the split.

    Returns:
        The :class:`Stability`.
    """
    vec_a, vec_b, used = half_placements(indices, image_vectors, seed)
    if not used.any():
        return Stability(cosine=float("nan"), displacement=float("nan"), neurons=0, stable=False)
    cosine = float(np.median(row_cosines(vec_a, vec_b)))
    displacement = float("nan")
    if transform is not None and extent:
        sample = np.arange(len(vec_a))
        if len(sample) > DISPLACEMENT_SAMPLE:
            sample = np.sort(np.random.default_rng(seed).choice(sample, DISPLACEMENT_SAMPLE, replace=False))
        pair = np.concatenate([vec_a[sample], vec_b[sample]]).astype(np.float32)
        both = np.asarray(transform(pair), dtype=np.float64)
        pos_a, pos_b = both[: len(sample)], both[len(sample) :]
        displacement = float(np.median(np.linalg.norm(pos_a - pos_b, axis=1)) / extent)
    stable = displacement <= MAX_DISPLACEMENT if np.isfinite(displacement) else cosine >= MIN_COSINE
    return Stability(cosine=cosine, displacement=displacement, neurons=int(used.sum()), stable=stable)
