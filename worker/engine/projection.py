"""The 2-D map of a unified semantic space (paper §3.2, "To visualize neuron embeddings, we use UMAP").

UMAP (umap-learn) is fitted once per space on the base neurons' vectors with a fixed ``random_state``; the
base neurons' positions are the fitted embedding itself, so they never move. Every other snapshot is placed
with ``transform``, which is deterministic for a fitted model (umap-learn seeds it with ``transform_seed``),
so a snapshot's positions do not change when recomputed. The fitted model is serialised with pickle so the
worker can store it with the space and reload it.

Note: importing/fitting umap-learn costs a one-off numba JIT warm-up per fresh process (tens of seconds on a
slow CPU) — keep it out of hot paths.

Speed (issue 12): umap-learn's ``transform`` starts each new point at the weighted mean of its neighbours'
positions with a Python loop that slices the sparse graph once per point — half of a ResNet18 snapshot's
transform (0.9 s of 1.8 s for 4,800 neurons). :func:`init_graph_transform` computes the same numbers with array
operations (same float32 operations in the same order, so bit-identical: tested against umap-learn's own on
random graphs) and replaces umap-learn's while a :class:`Projection` transforms.

The transform's optimisation (100 epochs of edge sampling, single-threaded because the reducer is seeded) is then
most of the rest. :func:`optimize_layout_threads` runs umap-learn's own epoch function, compiled once more
without the GIL, on :data:`LAYOUT_THREADS` threads, each over the edges of its own new points: with fixed base
positions a new point moves only by its own edges, draws its negative samples from its own random state, and
sees its edges in stored order, so every position is umap-learn's to the bit (tested) — 4,800 points in 0.8 s
instead of 1.4 s on 2 cores.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.errors import ConceptEvoError

log = logging.getLogger(__name__)


def _check(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or (dim is not None and arr.shape[1] != dim):
        want = f"(n, {dim})" if dim is not None else "(n, dim)"
        raise ConceptEvoError(f"vectors to project must be a non-empty {want} array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConceptEvoError("vectors to project contain NaN or infinite values")
    return arr


@dataclass
class Projection:
    """A fitted UMAP of a space's base neurons.

    Attributes:
        reducer: the fitted ``umap.UMAP``.
        base_positions: ``(n_base, 2)`` float32 positions of the base neurons (the fitted embedding).
        dim: embedding dimension it was fitted on.
    """

    reducer: Any
    base_positions: np.ndarray
    dim: int

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Place vectors of any snapshot on the map.

        Args:
            vectors: ``(n, dim)`` neuron vectors (Eq 2).

        Returns:
            ``(n, 2)`` float32 positions; the same input always gives the same output.
        """
        arr = _check(vectors, self.dim)
        _use_fast_transform()
        return np.asarray(self.reducer.transform(arr), dtype=np.float32)

    def to_bytes(self) -> bytes:
        """Serialise (pickle) for storage with the space."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(blob: bytes) -> Projection:
        """Reload a projection written by :meth:`to_bytes` (trusted data of our own store only).

        Raises:
            ConceptEvoError: the blob is not a stored projection.
        """
        try:
            obj = pickle.loads(blob)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt blob
            raise ConceptEvoError(f"stored projection is corrupt: {exc}") from exc
        if not isinstance(obj, Projection):
            raise ConceptEvoError(f"stored projection is a {type(obj).__name__}, not a Projection")
        return obj


def init_graph_transform(graph: Any, embedding: np.ndarray) -> np.ndarray:
    """umap-learn's ``init_graph_transform`` without its per-row loop: each new point starts at the mean of its
    neighbours' positions weighted by the graph's strengths (at a neighbour's position exactly when a strength is
    1; NaN without neighbours).

    Bit-identical to umap-learn's: the row sums use numpy's own sum on each row (its pairwise order), the weights
    and products are the same float32 operations, and each row accumulates its neighbours in stored order.

    Args:
        graph: ``(n_new, n_base)`` CSR strengths, explicit zeros removed.
        embedding: ``(n_base, 2)`` the base positions.

    Returns:
        ``(n_new, 2)`` float32 starting positions.
    """
    indptr = np.asarray(graph.indptr, dtype=np.int64)
    data, cols = graph.data, graph.indices
    counts = np.diff(indptr)
    result = np.zeros((graph.shape[0], embedding.shape[1]), dtype=np.float32)
    # one sum per row through numpy's reduction, which sums pairwise: a running sum would round differently
    sums = np.array([data[a:b].sum() for a, b in zip(indptr[:-1], indptr[1:], strict=True)], dtype=data.dtype)
    row_of = np.repeat(np.arange(graph.shape[0]), counts)
    weights = data / np.repeat(sums, counts)
    position = np.arange(data.size) - indptr[row_of]  # rank of each entry within its row
    for j in range(int(counts.max(initial=0))):
        at = np.flatnonzero(position == j)
        result[row_of[at]] += weights[at, None] * embedding[cols[at]]
    exact = np.flatnonzero(data == 1)  # a strength of 1: the point is that neighbour (the first such one)
    if exact.size:
        first = np.unique(row_of[exact], return_index=True)[1]
        result[row_of[exact[first]]] = embedding[cols[exact[first]]]
    result[counts == 0] = np.nan
    return result


#: Threads optimising a transform's new points (:func:`optimize_layout_threads`).
LAYOUT_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Below this many edges one thread does it all (threads would cost more than they save).
LAYOUT_MIN_EDGES = 20_000

_epoch_without_gil: Any = None


def _epoch_function() -> Any:
    """umap-learn's single-epoch function compiled as umap-learn compiles it (fastmath, not parallel) but releasing
    the GIL, so that several threads run it at once; compiled on first use, once per process."""
    global _epoch_without_gil
    if _epoch_without_gil is None:
        import numba
        from umap import layouts

        _epoch_without_gil = numba.njit(
            layouts._optimize_layout_euclidean_single_epoch, fastmath=True, parallel=False, nogil=True
        )
    return _epoch_without_gil


def optimize_layout_threads(
    head_embedding: np.ndarray,
    tail_embedding: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    n_epochs: Any,
    n_vertices: int,
    epochs_per_sample: np.ndarray,
    a: float,
    b: float,
    rng_state: np.ndarray,
    gamma: float = 1.0,
    initial_alpha: float = 1.0,
    negative_sample_rate: float = 5.0,
    parallel: bool = False,
    verbose: bool = False,
    densmap: bool = False,
    densmap_kwds: Any = None,
    tqdm_kwds: Any = None,
    move_other: bool = False,
) -> Any:
    """umap-learn's ``optimize_layout_euclidean`` (same arguments, same result to the bit) for a transform: the new
    points' edges split by point over :data:`LAYOUT_THREADS` threads.

    Why the result cannot change: with ``move_other`` off (a transform) an edge moves only its head point, towards
    its tail and away from negative samples, both read from the fixed base positions; each head draws from its own
    random state (umap-learn seeds it per point); the epoch-wide quantities (the sampling schedule, the learning
    rate) are computed once, as umap-learn does. Each thread runs every epoch over the edges of a range of head
    points, in stored order, so each point sees exactly the updates umap-learn's single loop would give it. Any
    other use (a fit, densMAP, umap-learn's own parallel mode, a list of epochs) or a small graph goes to
    umap-learn's function unchanged.

    Returns:
        ``head_embedding``, optimised in place.
    """
    if (
        move_other
        or densmap
        or parallel
        or isinstance(n_epochs, list)
        or LAYOUT_THREADS < 2
        or head.size < LAYOUT_MIN_EDGES
    ):
        return umap_optimize_layout_euclidean(
            head_embedding, tail_embedding, head, tail, n_epochs, n_vertices, epochs_per_sample, a, b, rng_state,
            gamma, initial_alpha, negative_sample_rate, parallel, verbose, densmap, densmap_kwds, tqdm_kwds,
            move_other,
        )  # fmt: skip
    epoch = _epoch_function()
    dim = head_embedding.shape[1]
    # umap-learn's set-up, verbatim in effect (each thread copies its edges' schedule below)
    epochs_per_negative_sample = epochs_per_sample / negative_sample_rate
    rng_state_per_sample = np.full(
        (head_embedding.shape[0], len(rng_state)), rng_state, dtype=np.int64
    ) + head_embedding[:, 0].astype(np.float64).view(np.int64).reshape(-1, 1)
    unused = np.zeros(1, dtype=np.float32)  # densMAP's arrays, off here (typed as umap-learn passes them)
    # ranges of head points holding about equal numbers of edges
    per_head = np.bincount(head, minlength=head_embedding.shape[0])
    cuts = np.searchsorted(np.cumsum(per_head), head.size * np.arange(1, LAYOUT_THREADS) / LAYOUT_THREADS)
    group_of_edge = np.searchsorted(cuts, head, side="right")
    groups = [np.flatnonzero(group_of_edge == g) for g in range(LAYOUT_THREADS)]

    def optimise(edges: np.ndarray) -> None:
        heads, tails = head[edges], tail[edges]
        per_sample, per_negative = epochs_per_sample[edges], epochs_per_negative_sample[edges]
        next_negative, next_sample = per_negative.copy(), per_sample.copy()
        alpha = initial_alpha
        for n in range(n_epochs):
            epoch(
                head_embedding, tail_embedding, heads, tails, n_vertices, per_sample, a, b, rng_state_per_sample,
                gamma, dim, move_other, alpha, per_negative, next_negative, next_sample, n, False, unused, unused,
                0, 0, 0, 0, unused, unused, 0,
            )  # fmt: skip
            alpha = initial_alpha * (1.0 - (float(n) / float(n_epochs)))

    with ThreadPoolExecutor(LAYOUT_THREADS) as pool:
        list(pool.map(optimise, [edges for edges in groups if edges.size]))
    return head_embedding


#: umap-learn's own ``init_graph_transform`` and ``optimize_layout_euclidean``, once :func:`_use_fast_transform`
#: has replaced them (tests compare).
umap_init_graph_transform: Any = None
umap_optimize_layout_euclidean: Any = None


def _use_fast_transform() -> None:
    """Make umap-learn's ``transform`` start its points with :func:`init_graph_transform` and optimise them with
    :func:`optimize_layout_threads` (the same numbers)."""
    global umap_init_graph_transform, umap_optimize_layout_euclidean
    from umap import umap_

    if umap_.init_graph_transform is not init_graph_transform:
        umap_init_graph_transform = umap_.init_graph_transform
        umap_.init_graph_transform = init_graph_transform
    if umap_.optimize_layout_euclidean is not optimize_layout_threads:
        umap_optimize_layout_euclidean = umap_.optimize_layout_euclidean
        umap_.optimize_layout_euclidean = optimize_layout_threads


def fit_projection(
    base_vectors: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1
) -> Projection:
    """Fit UMAP on the base neurons' vectors.

    Args:
        base_vectors: ``(n_base, dim)`` base neuron embeddings (Eq 1).
        seed: UMAP ``random_state`` (also makes it single-threaded and reproducible).
        n_neighbors: UMAP neighbourhood size (clipped to ``n_base − 1``).
        min_dist: UMAP ``min_dist``.

    Returns:
        :class:`Projection`; its ``base_positions`` are the fitted embedding.

    Raises:
        ConceptEvoError: fewer than 4 vectors, or non-finite values.
    """
    arr = _check(base_vectors)
    if arr.shape[0] < 4:
        raise ConceptEvoError(f"need at least 4 base neurons to fit the 2-D map, got {arr.shape[0]}")
    import umap  # heavy import (numba): only when a map is fitted

    nn = max(2, min(n_neighbors, arr.shape[0] - 1))
    reducer = umap.UMAP(
        n_components=2, n_neighbors=nn, min_dist=min_dist, random_state=seed, transform_seed=seed, n_jobs=1
    )
    with warnings.catch_warnings():  # "n_jobs value 1 overridden to 1 by setting random_state": expected
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        pos = np.asarray(reducer.fit_transform(arr), dtype=np.float32)
    log.info("fitted UMAP on %d base neurons (dim %d, n_neighbors %d)", arr.shape[0], arr.shape[1], nn)
    return Projection(reducer=reducer, base_positions=pos, dim=arr.shape[1])
