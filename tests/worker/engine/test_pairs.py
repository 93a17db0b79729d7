"""Co-activated pairs D (Appendix A.1) against the literal Algorithms 3–4."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.worker.engine.oracles_space import grouped_stimuli, pairs_literal
from worker.engine.pairs import coactivated_pairs, pairs_from_keys, pairs_per_pairing, validate_indices
from worker.errors import ConceptEvoError


def _random_stimuli(rng: np.random.Generator, n_neurons: int, k: int, n_images: int) -> np.ndarray:
    return np.stack([rng.choice(n_images, k, replace=False) for _ in range(n_neurons)]).astype(np.int64)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_neurons=st.integers(1, 25),
    k=st.integers(1, 6),
    n_images=st.integers(6, 40),
)
def test_same_shuffle_gives_literal_pairs_in_order(seed: int, n_neurons: int, k: int, n_images: int) -> None:
    rng = np.random.default_rng(seed)
    idx = _random_stimuli(rng, n_neurons, k, n_images)
    keys = rng.random(idx.shape)
    fast = pairs_from_keys(idx, keys)
    slow = pairs_literal(idx, n_images, keys)
    assert [tuple(map(int, p)) for p in fast] == slow  # same pairs, same order (images ascending)
    assert len(fast) == pairs_per_pairing(idx)


def test_overlapping_window_counts() -> None:
    # image 0 is used by neurons 0,1,2,3 → 3 overlapping pairs; image 5 by one neuron → none
    idx = np.array([[0, 1], [0, 2], [0, 3], [0, 5]])
    pairs = coactivated_pairs(idx, 6, np.random.default_rng(0))
    assert len(pairs) == 3
    # a chain over the 4 neurons: every neuron appears, the two ends once, the middle ones twice
    c = Counter(pairs.ravel().tolist())
    assert sorted(c.values()) == [1, 1, 2, 2]


def test_seeded_and_multiset_of_unordered_pairs_is_shuffle_independent_in_size() -> None:
    idx, _, _ = grouped_stimuli(60, 5, 500, 6, 20, np.random.default_rng(1))
    a = coactivated_pairs(idx, 500, np.random.default_rng(7))
    b = coactivated_pairs(idx, 500, np.random.default_rng(7))
    c = coactivated_pairs(idx, 500, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert len(a) == len(c) and not np.array_equal(a, c)
    # all pairs join neurons that share an image
    sets = [set(r) for r in idx.tolist()]
    assert all(sets[n] & sets[m] for n, m in a.tolist())


def test_shuffle_is_uniform_over_orders() -> None:
    # image 0 shared by 3 neurons: the middle of the chain is each neuron ~1/3 of the time
    idx = np.array([[0], [0], [0]])
    rng = np.random.default_rng(0)
    mids = Counter()
    for _ in range(3000):
        p = coactivated_pairs(idx, 1, rng)
        mids[int(p[0, 1])] += 1
    assert all(abs(v / 3000 - 1 / 3) < 0.04 for v in mids.values()) and len(mids) == 3


@pytest.mark.parametrize(
    "bad, n_images",
    [
        (np.zeros((0, 3), dtype=np.int64), 5),
        (np.array([1, 2, 3]), 5),
        (np.array([[0.0, 1.0]]), 5),
        (np.array([[0, 7]]), 5),
        (np.array([[-1, 2]]), 5),
        (np.array([[1, 1]]), 5),
    ],
)
def test_bad_input(bad: np.ndarray, n_images: int) -> None:
    with pytest.raises(ConceptEvoError):
        validate_indices(bad, n_images)
