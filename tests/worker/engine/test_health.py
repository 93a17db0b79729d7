"""Training-health measures (§4.5): differential entropy vs hand computations, movement."""

from __future__ import annotations

import numpy as np
import pytest

from tests.worker.engine.oracles_space import ebrahimi_entropy_hand, vasicek_entropy_hand
from worker.engine.health import concept_diversity, movement
from worker.errors import ConceptEvoError


@pytest.mark.parametrize("n, hand", [(1500, vasicek_entropy_hand), (300, ebrahimi_entropy_hand)])
def test_diversity_is_mean_of_hand_entropies(n: int, hand) -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, (n, 3)) * np.array([0.5, 1.0, 2.0])
    expected = np.mean([hand(v[:, d]) for d in range(3)])
    assert concept_diversity(v) == pytest.approx(expected, rel=1e-9)
    # and close to the Gaussian's true entropy ½ log(2πe σ²) averaged
    true = np.mean([0.5 * np.log(2 * np.pi * np.e * s**2) for s in (0.5, 1.0, 2.0)])
    assert abs(concept_diversity(v) - true) < 0.1


def test_collapse_lowers_diversity() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(0, 1, (200, 30))
    assert concept_diversity(0.1 * v) == pytest.approx(concept_diversity(v) + np.log(0.1), rel=1e-9)


def test_movement() -> None:
    a = np.zeros((3, 2))
    b = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    mean, per = movement(a, b)
    np.testing.assert_allclose(per, [5.0, 1.0, 0.0])
    assert mean == pytest.approx(2.0)


def test_bad_inputs() -> None:
    with pytest.raises(ConceptEvoError):
        concept_diversity(np.zeros((2, 3)))
    with pytest.raises(ConceptEvoError):
        concept_diversity(np.array([[np.nan] * 2] * 5))
    with pytest.raises(ConceptEvoError):
        movement(np.zeros((3, 2)), np.zeros((4, 2)))
