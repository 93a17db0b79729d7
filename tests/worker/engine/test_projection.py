"""2-D map: UMAP fitted once (session fixture), transform stable, serialisable."""

from __future__ import annotations

import numpy as np
import pytest

from worker.engine.projection import Projection, fit_projection
from worker.errors import ConceptEvoError

# the session fixture pays umap-learn's numba warm-up (~55 s on 2 shared cores) once
pytestmark = pytest.mark.slow


def test_base_positions_are_the_fit_and_keep_clusters(fitted_projection) -> None:
    proj, base, labels = fitted_projection
    assert proj.base_positions.shape == (120, 2) and proj.base_positions.dtype == np.float32
    centres = np.stack([proj.base_positions[labels == c].mean(0) for c in range(3)])
    nearest = ((proj.base_positions[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(nearest == labels) == 1.0


def test_transform_is_deterministic_and_places_new_points_near_their_cluster(fitted_projection) -> None:
    proj, base, labels = fitted_projection
    rng = np.random.default_rng(1)
    new = base[::10] + rng.normal(0, 0.05, base[::10].shape).astype(np.float32)
    a = proj.transform(new)
    b = proj.transform(new)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, 2) and a.dtype == np.float32
    centres = np.stack([proj.base_positions[labels == c].mean(0) for c in range(3)])
    assert np.all(((a[:, None] - centres[None]) ** 2).sum(-1).argmin(1) == labels[::10])
    # base positions never move: transforming other vectors leaves them as they were
    before = proj.base_positions.copy()
    proj.transform(new * 1.1)
    np.testing.assert_array_equal(proj.base_positions, before)


def test_round_trip_bytes(fitted_projection) -> None:
    proj, base, _ = fitted_projection
    again = Projection.from_bytes(proj.to_bytes())
    np.testing.assert_array_equal(again.base_positions, proj.base_positions)
    np.testing.assert_array_equal(again.transform(base[:5]), proj.transform(base[:5]))


def test_bad_inputs(fitted_projection) -> None:
    proj, _, _ = fitted_projection
    with pytest.raises(ConceptEvoError):
        proj.transform(np.zeros((3, 5)))
    with pytest.raises(ConceptEvoError):
        proj.transform(np.full((3, 8), np.nan))
    with pytest.raises(ConceptEvoError):
        Projection.from_bytes(b"not a pickle")
    with pytest.raises(ConceptEvoError):
        fit_projection(np.zeros((3, 8)))


def test_fixture_reports_warm_up(fitted_projection) -> None:
    proj, _, _ = fitted_projection
    assert proj.fit_seconds > 0 and proj.first_transform_seconds > 0


def _random_graph(rng: np.random.Generator, n_new: int, n_base: int, degree: int):
    """A CSR strength graph like umap-learn's transform builds: up to ``degree`` neighbours per row (some rows
    short or empty), strengths in (0, 1] with a few exact 1s."""
    from scipy import sparse

    rows, cols, vals = [], [], []
    for row in range(n_new):
        n = int(rng.integers(0, degree + 1)) if row % 7 == 0 else degree
        picked = rng.choice(n_base, n, replace=False)
        strengths = rng.random(n).astype(np.float32)
        if row % 11 == 0 and n > 2:
            strengths[rng.integers(1, n)] = 1.0  # identical to a base point, not first in its row
        rows += [row] * n
        cols += picked.tolist()
        vals += strengths.tolist()
    graph = sparse.coo_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(n_new, n_base)).tocsr()
    graph.eliminate_zeros()
    return graph


def test_array_initialisation_is_umaps_to_the_bit(fitted_projection) -> None:
    """The transform's starting positions: the array version against umap-learn's own loop (the oracle)."""
    from worker.engine import projection

    proj, base, _ = fitted_projection
    proj.transform(base[:2])  # installs the array version, keeping umap-learn's
    oracle = projection.umap_init_graph_transform
    assert oracle is not None and oracle is not projection.init_graph_transform
    rng = np.random.default_rng(3)
    for embedding in (proj.base_positions, rng.normal(size=(120, 2)).astype(np.float64)):
        graph = _random_graph(rng, 300, 120, 15)
        expected, got = oracle(graph, embedding), projection.init_graph_transform(graph, embedding)
        assert got.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(got, expected)  # NaN rows (no neighbours) compare equal too
        assert np.isnan(got).any() and (graph.data == 1).any()


def test_transform_is_unchanged_by_the_array_initialisation(fitted_projection) -> None:
    from umap import umap_

    from worker.engine import projection

    proj, base, _ = fitted_projection
    new = base + np.random.default_rng(4).normal(0, 0.5, base.shape).astype(np.float32)
    ours = proj.transform(new)
    umap_.init_graph_transform = projection.umap_init_graph_transform
    try:
        theirs = np.asarray(proj.reducer.transform(new), dtype=np.float32)
    finally:
        umap_.init_graph_transform = projection.init_graph_transform
    np.testing.assert_array_equal(ours, theirs)


def test_threaded_layout_is_umaps_to_the_bit(fitted_projection, monkeypatch) -> None:
    """New points optimised by several threads, each over its own points' edges, land exactly where umap-learn's
    single loop puts them (its own functions restored as the oracle), whatever the number of threads."""
    from umap import umap_

    from worker.engine import projection

    proj, base, _ = fitted_projection
    rng = np.random.default_rng(5)
    new = np.concatenate([base, base]) + rng.normal(0, 0.8, (2 * len(base), base.shape[1])).astype(np.float32)
    proj.transform(base[:2])  # installs the fast transform, keeping umap-learn's functions
    monkeypatch.setattr(projection, "LAYOUT_MIN_EDGES", 0)
    calls: list[int] = []
    real_epoch = projection._epoch_function()
    monkeypatch.setattr(projection, "_epoch_function", lambda: calls.append(1) or real_epoch)
    monkeypatch.setattr(umap_, "init_graph_transform", projection.umap_init_graph_transform)
    monkeypatch.setattr(umap_, "optimize_layout_euclidean", projection.umap_optimize_layout_euclidean)
    theirs = np.asarray(proj.reducer.transform(new), dtype=np.float32)
    for threads in (2, 3, 7):
        monkeypatch.setattr(projection, "LAYOUT_THREADS", threads)
        ours = proj.transform(new)
        np.testing.assert_array_equal(ours, theirs)
    assert len(calls) == 3, "the threaded path did not run"


def test_threaded_layout_leaves_a_fit_to_umap(monkeypatch) -> None:
    """A fit moves both ends of an edge (``move_other``): that, and umap-learn's other modes, go to its function."""
    from worker.engine import projection

    seen: list[tuple] = []
    monkeypatch.setattr(
        projection, "umap_optimize_layout_euclidean", lambda *args: seen.append(args) or "umap"
    )
    monkeypatch.setattr(projection, "LAYOUT_MIN_EDGES", 0)
    args = (np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32), np.arange(3), np.arange(3), 10, 3,
            np.ones(3), 1.0, 1.0, np.zeros(3, np.int64))  # fmt: skip
    assert projection.optimize_layout_threads(*args, move_other=True) == "umap"
    assert projection.optimize_layout_threads(*args, parallel=True) == "umap"
    assert projection.optimize_layout_threads(*args, densmap=True) == "umap"
    assert len(seen) == 3 and seen[0][-1] is True  # move_other passed through
