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
"""

from __future__ import annotations

import logging
import pickle
import warnings
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
        _use_array_initialisation()
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


#: umap-learn's own ``init_graph_transform``, once :func:`_use_array_initialisation` has replaced it (tests compare).
umap_init_graph_transform: Any = None


def _use_array_initialisation() -> None:
    """Make umap-learn's ``transform`` start its points with :func:`init_graph_transform` (same numbers)."""
    global umap_init_graph_transform
    from umap import umap_

    if umap_.init_graph_transform is not init_graph_transform:
        umap_init_graph_transform = umap_.init_graph_transform
        umap_.init_graph_transform = init_graph_transform


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
