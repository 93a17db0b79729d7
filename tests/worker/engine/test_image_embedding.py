"""Image embeddings (Eq 2–4), vectors for every image, coverage — against dense and looped oracles."""

from __future__ import annotations

import numpy as np
import pytest

from tests.worker.engine.oracles_space import (
    cross_knn_purity,
    eq2_loop,
    eq3_dense,
    eq3_objective,
    grouped_responses,
    grouped_stimuli,
    knn_purity,
)
from worker.engine.image_embedding import (
    coverage,
    fit_image_embedding,
    fit_uncovered_rule,
    image_vectors_for_all,
    neuron_vectors_from_stimuli,
    stimulus_matrix,
)
from worker.engine.neuron_embedding import train_neuron_embedding
from worker.errors import ConceptEvoError


@pytest.mark.parametrize("n_neurons, n_images", [(30, 80), (60, 40)])  # under- and over-determined
def test_eq3_matches_dense_lstsq(n_neurons: int, n_images: int) -> None:
    rng = np.random.default_rng(0)
    idx = np.stack([rng.choice(n_images, 4, replace=False) for _ in range(n_neurons)])
    idx[1] = idx[0]  # two neurons with identical stimuli: only the damping makes the solution unique
    nv = rng.normal(0, 1, (n_neurons, 5))
    emb = fit_image_embedding(idx, nv, n_images, damping=1e-2)
    dense = eq3_dense(idx, nv, n_images, damping=1e-2)
    np.testing.assert_allclose(emb.vectors, dense, atol=1e-4)
    covered = np.zeros(n_images, dtype=bool)
    covered[idx.ravel()] = True
    np.testing.assert_array_equal(emb.covered, covered)
    assert np.all(emb.vectors[~covered] == 0)
    # reported error is the Eq 3 residual
    approx = eq2_loop(idx, emb.vectors.astype(np.float64))
    assert emb.rmse == pytest.approx(np.sqrt(np.mean((approx - nv) ** 2)), rel=1e-3, abs=1e-6)
    ss_tot = ((nv - nv.mean(0)) ** 2).sum()
    assert emb.r2 == pytest.approx(1 - ((approx - nv) ** 2).sum() / ss_tot, rel=1e-3, abs=1e-6)


def test_eq3_small_damping_is_near_min_norm_exact_fit() -> None:
    rng = np.random.default_rng(1)
    idx = np.stack([rng.choice(200, 5, replace=False) for _ in range(40)])
    nv = rng.normal(0, 1, (40, 6))
    emb = fit_image_embedding(idx, nv, 200, damping=1e-4)
    assert emb.r2 > 0.999999 and emb.rmse < 1e-4
    assert eq3_objective(idx, nv, emb.vectors.astype(np.float64)) < 1e-8
    # minimum norm: matches lstsq without any ridge
    a = stimulus_matrix(idx, 200).toarray()
    np.testing.assert_allclose(emb.vectors, np.linalg.lstsq(a, nv, rcond=None)[0], atol=1e-4)


def test_eq2_gather_matches_loop_and_coverage() -> None:
    rng = np.random.default_rng(2)
    iv = rng.normal(0, 1, (50, 4)).astype(np.float32)
    idx = np.stack([rng.choice(50, 6, replace=False) for _ in range(20)])
    np.testing.assert_allclose(neuron_vectors_from_stimuli(idx, iv), eq2_loop(idx, iv), rtol=1e-5, atol=1e-6)
    mask = np.zeros(50, dtype=bool)
    mask[:25] = True
    assert coverage(idx, mask) == pytest.approx(np.mean([[x < 25 for x in row] for row in idx]))


@pytest.fixture(scope="module")
def grouped_space():
    """Base model in 6 concept groups with a response matrix; trained base space; Eq 3 image vectors."""
    rng = np.random.default_rng(0)
    n_images, k = 1500, 6
    _, groups, pools = grouped_stimuli(96, k, n_images, 6, 60, rng)
    responses, idx = grouped_responses(n_images, groups, pools, k, rng)
    emb = train_neuron_embedding(idx, n_images, dim=16, epochs=150, seed=0, batch_size=256)
    img = fit_image_embedding(idx, emb.vectors, n_images)
    return rng, n_images, k, groups, pools, responses, idx, emb, img


def test_uncovered_rule_calibrated_and_every_image_gets_a_vector(grouped_space) -> None:
    rng, n_images, k, groups, pools, responses, idx, emb, img = grouped_space
    assert knn_purity(emb.vectors, groups) > 0.9
    rule = fit_uncovered_rule(responses, idx, emb.vectors, img, seed=0)
    assert rule.n_heldout > 0 and np.isfinite(rule.heldout_rmse)
    # the chosen rule beats the trivial "zero vector" guess on held-out covered images by a wide margin
    zero_rmse = float(np.sqrt(np.mean(img.vectors[img.covered] ** 2)))
    assert rule.heldout_rmse < 0.7 * zero_rmse, (rule.heldout_rmse, zero_rmse)
    assert min(rule.grid.values()) == pytest.approx(rule.train_rmse)
    allv = image_vectors_for_all(img, rule, responses, chunk_rows=97)
    np.testing.assert_array_equal(allv[img.covered], img.vectors[img.covered])
    assert np.isfinite(allv).all() and np.all(np.abs(allv[~img.covered]).sum(1) > 0)
    # chunked and sparse top-m forms agree with one full block
    rows = np.flatnonzero(~img.covered)[:300]
    np.testing.assert_allclose(rule.apply(responses, rows, chunk_rows=7), rule.apply(responses, rows, 10_000))
    # uncovered pool images land nearest their own group's neurons
    pool_group = {int(x): g for g, pool in enumerate(pools) for x in pool}
    unc = [x for x in np.flatnonzero(~img.covered) if int(x) in pool_group]
    assert len(unc) > 20
    centres = np.stack([emb.vectors[groups == g].mean(0) for g in range(len(pools))])
    d = ((allv[unc][:, None, :] - centres[None]) ** 2).sum(-1)
    assert np.mean(d.argmin(1) == np.array([pool_group[int(x)] for x in unc])) > 0.9


def test_other_snapshot_reprojected_by_eq2_keeps_its_groups(grouped_space) -> None:
    rng, n_images, k, groups, pools, responses, idx, emb, img = grouped_space
    rule = fit_uncovered_rule(responses, idx, emb.vectors, img, seed=0)
    allv = image_vectors_for_all(img, rule, responses)
    # a fresh "other snapshot": 60 neurons, stimuli drawn anew from the same pools
    other_groups = np.arange(60) % len(pools)
    other_idx = np.stack([rng.choice(pools[g], k, replace=False) for g in other_groups])
    cov = coverage(other_idx, img.covered)
    assert 0.3 < cov < 1.0  # some stimuli are outside the base stimuli and need the rule
    other_v = neuron_vectors_from_stimuli(other_idx, allv)
    assert knn_purity(other_v, other_groups) > 0.9
    assert cross_knn_purity(other_v, other_groups, emb.vectors, groups) > 0.9


def test_bad_inputs() -> None:
    idx = np.array([[0, 1], [1, 2]])
    with pytest.raises(ConceptEvoError):
        fit_image_embedding(idx, np.zeros((3, 4)), 5)
    with pytest.raises(ConceptEvoError):
        fit_image_embedding(idx, np.full((2, 4), np.nan), 5)
    with pytest.raises(ConceptEvoError):
        fit_image_embedding(idx, np.zeros((2, 4)), 5, damping=0.0)
    with pytest.raises(ConceptEvoError):
        coverage(np.array([[0, 9]]), np.zeros(5, dtype=bool))
