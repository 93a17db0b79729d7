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
