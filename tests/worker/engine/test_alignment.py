"""Ground-truth alignment (worker/engine/alignment.py) against literal slow transcriptions, on planted cases:
labels recovered from stimuli, kNN agreement and intruder AUC near 1 for a space that groups by the planted
concept and near chance (0.5) for a shuffled one."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from worker.engine.alignment import (
    GROUP,
    attribute_codes,
    chance_agreement,
    intruder_auc,
    judge_groups,
    knn_agreement,
    label_neurons,
    nearest,
    roc_auc,
    shuffled,
)
from worker.errors import ConceptEvoError


def planted(n_neurons: int = 240, n_concepts: int = 4, k: int = 10, purity: float = 0.8, seed: int = 0):
    """Images with 2 attributes; each neuron planted on one (shape, colour) concept: ``purity`` of its stimuli
    carry it, the rest are random images. Vectors: concept centre + small noise."""
    rng = np.random.default_rng(seed)
    n_images = 400
    codes = rng.integers(0, n_concepts, size=(n_images, 2)).astype(np.int32)
    codes[:, 1] = codes[:, 0]  # colour follows shape: one concept per image
    concept = rng.integers(0, n_concepts, size=n_neurons)
    stimuli = np.zeros((n_neurons, k), dtype=np.int64)
    n_pure = int(round(purity * k))
    for i, c in enumerate(concept):
        stimuli[i, :n_pure] = rng.choice(np.flatnonzero(codes[:, 0] == c), n_pure, replace=False)
        stimuli[i, n_pure:] = rng.choice(n_images, k - n_pure, replace=False)
    centres = rng.normal(size=(n_concepts, 8)) * 10
    vectors = centres[concept] + rng.normal(size=(n_neurons, 8))
    return codes, stimuli, concept, vectors


def test_attribute_codes_follow_the_sorted_vocabulary():
    codes, vocab = attribute_codes(
        [{"shape": "star", "colour": "red"}, {"shape": "disc", "colour": "red"}], ("shape", "colour")
    )
    assert vocab == [["disc", "star"], ["red"]]
    assert codes.tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ConceptEvoError, match="texture"):
        attribute_codes([{"shape": "star"}], ("texture",))


def test_labels_agree_with_a_literal_majority_vote_and_recover_planted_concepts():
    codes, stimuli, concept, _ = planted()
    labels = label_neurons(stimuli, codes)
    for n in range(len(stimuli)):
        for a in range(codes.shape[1]):
            counts = Counter(int(codes[i, a]) for i in stimuli[n])
            top = max(counts.values())
            assert labels.values[n, a] == min(v for v, c in counts.items() if c == top)
            assert labels.purity[n, a] == pytest.approx(top / stimuli.shape[1])
            for v, c in counts.items():
                assert labels.shares[n, a, v] == pytest.approx(c / stimuli.shape[1])
    assert (labels.values[:, 0] == concept).all()
    assert (labels.purity >= 0.8).all()


def test_nearest_matches_a_brute_force_sort_and_honours_exclusions():
    rng = np.random.default_rng(1)
    q, c = rng.normal(size=(7, 3)), rng.normal(size=(30, 3))
    exclude = rng.random((7, 30)) < 0.3
    got = nearest(q, c, 5, exclude)
    for i in range(7):
        d = [(float(np.sum((q[i] - c[j]) ** 2)), j) for j in range(30) if not exclude[i, j]]
        assert got[i].tolist() == [j for _, j in sorted(d)[:5]]
    with pytest.raises(ConceptEvoError, match="candidate"):
        nearest(q, c, 30, exclude)


def test_roc_auc_matches_counting_pairs():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, size=60).astype(float)
    truth = rng.random(60) < 0.4
    pos, neg = scores[truth], scores[~truth]
    literal = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
    assert roc_auc(scores, truth) == pytest.approx(literal)
    with pytest.raises(ConceptEvoError):
        roc_auc(scores, np.ones(60, bool))


def test_judge_scores_each_member_against_the_consensus_of_the_others():
    rng = np.random.default_rng(3)
    shares = rng.dirichlet(np.ones(4), size=(5, GROUP + 1, 2))
    got = judge_groups(shares)
    for g in range(5):
        for m in range(GROUP + 1):
            fits = []
            for a in range(2):
                others = sum(shares[g, o, a] for o in range(GROUP + 1) if o != m)
                fits.append(shares[g, m, a, int(np.argmax(others))])
            assert got[g, m] == pytest.approx(np.mean(fits))


def test_a_space_grouping_the_planted_concepts_scores_high_and_a_shuffled_one_near_chance():
    codes, stimuli, _, vectors = planted()
    labels = label_neurons(stimuli, codes)
    n = len(vectors)
    exclude = np.eye(n, dtype=bool)
    nbrs = nearest(vectors, vectors, 10, exclude)
    agreement = knn_agreement(labels.values, labels.values, nbrs)
    auc = intruder_auc(labels.shares, labels.shares, nbrs, np.random.default_rng(0), exclude)
    assert agreement > 0.95
    assert auc > 0.8
    chance = chance_agreement(labels.values, labels.values)
    aucs, agreements = [], []
    for seed in range(5):
        mixed = shuffled(labels, np.random.default_rng(seed))
        agreements.append(knn_agreement(labels.values, mixed.values, nbrs))
        aucs.append(intruder_auc(labels.shares, mixed.shares, nbrs, np.random.default_rng(seed), exclude))
    assert abs(np.mean(aucs) - 0.5) < 0.1
    assert abs(np.mean(agreements) - chance) < 0.08
    assert 0.0 <= min(aucs) <= max(aucs) <= 1.0
