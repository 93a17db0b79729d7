"""Sharding the stimuli pass (issue 15): split the dataset into image ranges, run the pass on each range
separately (different workers, GPUs, machines), and merge the partial top-k lists into exactly the result of
one unsharded pass.

Top-k is mergeable: a neuron's k best images over the whole dataset are among the union of its k best in each
range, so keeping each range's top-k (value, image index, argmax location) and re-ranking the union gives the
global top-k. The tie rule is the unsharded pass's own — higher maximum first, **lower image index** among equal
maxima — so the merge sorts by ``(-maximum, index)``.

Exact equality also needs each image's activations to be bitwise the same as in the unsharded pass; a
convolution's result can depend on the batch it ran in, so the ranges put their boundaries on
multiples of the batch size (``backend.store.shards.shard_ranges``, where the door checks a request against
the same rule): every shard then sees exactly the batches the unsharded pass sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from worker.engine.stimuli import Stimuli
from worker.errors import ConceptEvoError


def offset_stimuli(part: Stimuli, start: int) -> Stimuli:
    """A shard's stimuli with its image indices made global (the shard began at image ``start``)."""
    return replace(part, indices=part.indices + start, responses=None)


def merge_stimuli(parts: Sequence[Stimuli], k: int | None = None) -> Stimuli:
    """Merge the stimuli of disjoint image ranges (global indices, see :func:`offset_stimuli`) into the
    stimuli of their union: per neuron the ``k`` highest maxima, the lower image index first among equals.

    Args:
        parts: the shards' stimuli, of the same neurons and layers.
        k: stimuli per neuron (default: the parts' k).

    Returns:
        :class:`Stimuli` over ``sum(n_images)`` images (``responses`` None).

    Raises:
        ConceptEvoError: no parts, parts of different neurons, or fewer than ``k`` candidates.
    """
    if not parts:
        raise ConceptEvoError("no shards to merge")
    first = parts[0]
    for part in parts[1:]:
        same = (
            part.layer_names == first.layer_names
            and np.array_equal(part.layer_of, first.layer_of)
            and np.array_equal(part.channel_of, first.channel_of)
        )
        if not same:
            raise ConceptEvoError("shards to merge were computed over different layers or neurons")
    k = first.k if k is None else k
    indices = np.concatenate([p.indices for p in parts], axis=1)
    maxima = np.concatenate([p.maxima for p in parts], axis=1)
    argmax = np.concatenate([p.argmax_yx for p in parts], axis=1)
    if indices.shape[1] < k:
        raise ConceptEvoError(f"the shards hold {indices.shape[1]} candidates per neuron, fewer than k={k}")
    # lexsort: last key first — by maximum descending, then image index ascending (the tie rule).
    order = np.lexsort((indices, -maxima.astype(np.float64)), axis=1)[:, :k]
    return replace(
        first,
        indices=np.take_along_axis(indices, order, axis=1),
        maxima=np.take_along_axis(maxima, order, axis=1),
        argmax_yx=np.take_along_axis(argmax, order[:, :, None], axis=1),
        n_images=sum(p.n_images for p in parts),
        responses=None,
    )
