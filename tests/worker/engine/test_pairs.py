"""Co-activated pairs D (Appendix A.1) against the literal Algorithms 3–4."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.worker.engine.oracles_space import (
    get_strongly_coactivated_neurons,
    grouped_stimuli,
    pairs_literal,
    sample_neuron_pairs,
)
from worker.engine.neuron_embedding import _Pairer
from worker.engine.pairs import (
    chain_pairs,
    coactivated_pairs,
    epoch_pairs,
    group_incidences,
    pairs_from_keys,
    pairs_per_pairing,
    validate_indices,
)
from worker.errors import ConceptEvoError

#: Hypothesis draws of a random stimuli matrix's shape (and its seed).
_STIMULI_SHAPES = {
    "seed": st.integers(0, 10_000),
    "n_neurons": st.integers(1, 25),
    "k": st.integers(1, 6),
    "n_images": st.integers(6, 40),
}


def _random_stimuli(rng: np.random.Generator, n_neurons: int, k: int, n_images: int) -> np.ndarray:
    return np.stack([rng.choice(n_images, k, replace=False) for _ in range(n_neurons)]).astype(np.int64)


@settings(max_examples=30, deadline=None)
@given(**_STIMULI_SHAPES)
def test_same_shuffle_gives_literal_pairs_in_order(seed: int, n_neurons: int, k: int, n_images: int) -> None:
    rng = np.random.default_rng(seed)
    idx = _random_stimuli(rng, n_neurons, k, n_images)
    keys = rng.random(idx.shape)
    fast = pairs_from_keys(idx, keys)
    slow = pairs_literal(idx, n_images, keys)
    assert [tuple(map(int, p)) for p in fast] == slow  # same pairs, same order (images ascending)
    assert len(fast) == pairs_per_pairing(idx)


@settings(max_examples=30, deadline=None)
@given(**_STIMULI_SHAPES)
def test_trainer_epoch_pairing_is_the_literal_pairing(
    seed: int, n_neurons: int, k: int, n_images: int
) -> None:
    """The compiled trainer's pairing (shuffled incidences + image order) = Algorithms 3–4 visiting images so."""
    rng = np.random.default_rng(seed)
    idx = _random_stimuli(rng, n_neurons, k, n_images)
    inc = group_incidences(idx)
    neurons = inc.neurons.copy()
    for g in range(inc.n_groups):  # any within-image shuffle, as the compiled epoch draws it
        a, b = inc.starts[g], inc.starts[g + 1]
        neurons[a:b] = rng.permutation(neurons[a:b])
    order = rng.permutation(inc.n_groups)
    fast = epoch_pairs(inc, neurons, order)
    image_of_group = np.unique(idx)
    stimuli, all_neurons = [list(map(int, r)) for r in idx], list(range(n_neurons))
    slow: list[tuple[int, int]] = []
    for g in order.tolist():
        x = int(image_of_group[g])
        key_of = {int(n): float(i) for i, n in enumerate(neurons[inc.starts[g] : inc.starts[g + 1]])}
        slow = sample_neuron_pairs(slow, get_strongly_coactivated_neurons(x, stimuli, all_neurons), key_of)
    assert [tuple(map(int, p)) for p in fast] == slow
    assert len(fast) == inc.n_pairs == pairs_per_pairing(idx)


def test_torch_trainer_pairing_chains_each_image_once() -> None:
    """The device pairer lists each image's neurons once, as one chain (c neurons → c − 1 pairs)."""
    idx, _, _ = grouped_stimuli(40, 5, 200, 5, 15, np.random.default_rng(2))
    inc = group_incidences(validate_indices(idx, 200))
    pairs = _Pairer(inc, torch.device("cpu"), torch.Generator().manual_seed(0)).sample().numpy()
    assert len(pairs) == inc.n_pairs
    sets = [set(r) for r in idx.tolist()]
    # consecutive pairs of one image share their joint neuron: the chain is unbroken inside an image
    shared = [sets[n] & sets[m] for n, m in pairs.tolist()]
    assert all(shared)
    np.testing.assert_array_equal(chain_pairs(torch.tensor([3, 4, 5]), torch.tensor([0, 0, 1])), [[3, 4]])


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
