"""Sharding the stimuli pass (issue 15): split the dataset into image ranges, run the pass on each range
separately (different workers, GPUs, machines), and merge the partial top-k lists into exactly the result of
one unsharded pass.

Top-k is mergeable: a neuron's k best images over the whole dataset are among the union of its k best in each
range, so keeping each range's top-k (value, image index, argmax location) and re-ranking the union gives the
global top-k. The tie rule is the unsharded pass's own — higher maximum first, **lower image index** among equal
maxima — so the merge sorts by ``(-maximum, index)``.

Exact equality also needs each image's activations to be bitwise the same as in the unsharded pass; a
convolution's result can depend on the batch it ran in, so :func:`shard_ranges` puts range boundaries on
multiples of the batch size: every shard then sees exactly the batches the unsharded pass sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from worker.engine.stimuli import Stimuli
from worker.errors import ConceptEvoError


def shard_ranges(n_images: int, n_shards: int, batch_size: int, k: int) -> list[tuple[int, int]]:
    """Split ``range(n_images)`` into ``n_shards`` contiguous ``(start, stop)`` ranges as equal as possible,
    with every boundary on a multiple of ``batch_size`` and at least ``k`` images in each.

    Args:
        n_images: images in the dataset.
        n_shards: ranges wanted.
        batch_size: the pass's batch size (boundaries are multiples of it).
        k: stimuli per neuron (a range needs at least ``k`` images).

    Returns:
        The ranges, in order, covering every image once.

    Raises:
        ConceptEvoError: a non-positive argument, or more shards than whole batches / ``k``-image ranges.
    """
    if min(n_images, n_shards, batch_size, k) < 1:
        raise ConceptEvoError(
            f"shards need positive sizes, got {n_images} images, {n_shards} shards, batch {batch_size}, k {k}"
        )
    n_batches = max(1, n_images // batch_size)  # whole batches; a last, partial one joins the last shard
    if n_shards > n_batches:
        raise ConceptEvoError(
            f"{n_shards} shards of {n_images} images need at least one whole batch of {batch_size} each; "
            f"use at most {n_batches} shards or a smaller batch size"
        )
    cuts = [round(i * n_batches / n_shards) * batch_size for i in range(n_shards)] + [n_images]
    ranges = [(start, min(stop, n_images)) for start, stop in zip(cuts, cuts[1:], strict=False)]
    small = [r for r in ranges if r[1] - r[0] < k]
    if small:
        raise ConceptEvoError(
            f"shard {small[0]} holds fewer than k={k} images; use fewer than {n_shards} shards"
        )
    return ranges


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
