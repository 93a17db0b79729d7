"""Choosing λ by held-out error, split-half stability and tied stimuli (issue 13) against literal oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.worker.engine.oracles_importance import literal_sensitivities
from tests.worker.engine.oracles_placement import (
    cross_validated_placement_literal,
    eq4_gradient_descent,
    eq4_gradient_descent_literal,
    post_relu_sensitivities_literal,
    split_half_literal,
    tied_literal,
)
from tests.worker.engine.oracles_space import eq3_dense, grouped_responses, grouped_stimuli
from worker.engine.health import concept_diversity
from worker.engine.image_embedding import (
    ImageEmbedding,
    choose_damping,
    fit_image_embedding,
    fit_uncovered_rule,
    image_vectors_for_all,
    ridge_path,
    stimulus_matrix,
)
from worker.engine.importance import batch_sensitivities
from worker.engine.reversion import rank_bins
from worker.engine.stability import (
    DISPLACEMENT_SAMPLE,
    MAX_DISPLACEMENT,
    half_placements,
    map_extent,
    split_half_stability,
)
from worker.engine.ties import tied_stimuli, ties_per_layer
from worker.errors import ConceptEvoError


@pytest.fixture(scope="module")
def small_base():
    """60 neurons in 5 concept groups over 150 images (k = 5), noisy group vectors, a response matrix."""
    rng = np.random.default_rng(3)
    n_images, k = 150, 5
    _, groups, pools = grouped_stimuli(60, k, n_images, 5, 25, rng)
    responses, idx = grouped_responses(n_images, groups, pools, k, rng)
    centres = rng.normal(0, 1, (5, 6))
    vectors = centres[groups] + 0.4 * rng.normal(0, 1, (60, 6))
    return idx, vectors, responses, n_images


def test_eq4_matrix_form_matches_the_literal_loop(small_base) -> None:
    idx, vectors, _responses, n_images = small_base
    literal = eq4_gradient_descent_literal(idx[:20], vectors[:20], n_images, steps=3)
    fast = eq4_gradient_descent(idx[:20], vectors[:20], n_images, steps=3)
    np.testing.assert_allclose(fast, literal, rtol=1e-10, atol=1e-12)


def test_choose_damping_matches_literal_cross_validation(small_base) -> None:
    idx, vectors, responses, n_images = small_base
    dampings, folds, seed = (0.01, 0.1, 1.0), 3, 0
    choice = choose_damping(idx, vectors, responses, dampings=dampings, folds=folds, seed=seed)
    # the rule's shape, as choose_damping fixes it: calibrated on the full base at the median λ
    shape = fit_uncovered_rule(
        responses, idx, vectors, fit_image_embedding(idx, vectors, n_images, damping=0.1), seed=seed
    )
    fold_of = np.random.default_rng(seed).permutation(len(idx)) % folds

    def every_image(train, v, covered):
        emb = ImageEmbedding(vectors=v.astype(np.float32), covered=covered, rmse=math.nan, r2=math.nan)
        rule = fit_uncovered_rule(
            responses[:, train],
            idx[train],
            vectors[train],
            emb,
            seed=seed,
            m_grid=(shape.m,),
            temperatures=(shape.temperature,),
        )
        return image_vectors_for_all(emb, rule, responses[:, train]).astype(np.float64)

    for lam in dampings:
        r2, cosines = cross_validated_placement_literal(idx, vectors, n_images, lam, fold_of, every_image)
        got_r2, got_cos = choice.grid[lam]
        assert got_r2 == pytest.approx(r2, abs=1e-4), lam
        assert got_cos == pytest.approx(float(np.median(cosines)), abs=1e-4), lam
    best = max(dampings, key=lambda lam: choice.grid[lam][0])
    assert choice.damping == best and choice.heldout_r2 == choice.grid[best][0]
    assert choice.to_json()["damping"] == best


def test_ridge_path_agrees_with_the_dense_solve(small_base) -> None:
    idx, vectors, _responses, n_images = small_base
    for lam in (0.03, 0.3):
        np.testing.assert_allclose(
            fit_image_embedding(idx, vectors, n_images, damping=lam).vectors,
            eq3_dense(idx, vectors, n_images, lam),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize("n_neurons, n_images", [(40, 120), (160, 30)])
def test_the_cross_validation_ridge_path_solves_from_either_side(n_neurons: int, n_images: int) -> None:
    """More neurons than images takes the image-side Gram matrix: both equal the literal normal equations."""
    rng = np.random.default_rng(3)
    idx = np.stack([rng.choice(n_images, size=4, replace=False) for _ in range(n_neurons)])
    a = stimulus_matrix(idx, n_images)
    targets = rng.normal(size=(n_neurons, 6))
    dense = a.toarray()
    for lam, got in zip((0.01, 0.2), ridge_path(a, targets, (0.01, 0.2)), strict=True):
        want = np.linalg.solve(dense.T @ dense + lam**2 * np.eye(n_images), dense.T @ targets)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_choose_damping_refuses_bad_input(small_base) -> None:
    idx, vectors, responses, _n = small_base
    with pytest.raises(ConceptEvoError, match="dampings"):
        choose_damping(idx, vectors, responses, dampings=(0.1, 0.0))
    with pytest.raises(ConceptEvoError, match="folds"):
        choose_damping(idx, vectors, responses, folds=1)
    with pytest.raises(ConceptEvoError, match="neuron vectors"):
        choose_damping(idx, vectors[:-1], responses)


def test_split_half_matches_literal_and_flags_noise(small_base, fitted_projection) -> None:
    idx, vectors, _responses, n_images = small_base
    rng = np.random.default_rng(5)
    image_vectors = rng.normal(0, 1, (n_images, 6))
    vec_a, vec_b, used = half_placements(idx, image_vectors, seed=7)
    in_a = np.random.default_rng(7).random(n_images) < 0.5
    literal = split_half_literal(idx, image_vectors, in_a)
    assert [n for n, _a, _b in literal] == list(np.flatnonzero(used))
    np.testing.assert_allclose(vec_a, np.stack([a for _n, a, _b in literal]), rtol=1e-12)
    np.testing.assert_allclose(vec_b, np.stack([b for _n, _a, b in literal]), rtol=1e-12)
    noisy = split_half_stability(idx, image_vectors, seed=7)
    assert noisy.neurons == used.sum() and noisy.cosine < 0.5 and not noisy.stable
    # image vectors that depend only on the image's group: both halves place every neuron alike
    proj, base, _labels = fitted_projection
    group_of = np.full(n_images, -1)
    pools = [np.unique(idx[g::5]) for g in range(5)]
    for g, pool in enumerate(pools):
        group_of[pool] = g
    smooth = np.where(group_of[:, None] >= 0, base[np.maximum(group_of, 0) * 24], 0.0)
    steady = split_half_stability(idx, smooth, proj.transform, map_extent(proj.base_positions), seed=7)
    assert steady.cosine == pytest.approx(1.0) and steady.displacement < 0.01 and steady.stable
    assert steady.to_json()["stable"] is True and noisy.to_json()["displacement"] is None
    # With a map, the map decides: the same noisy vectors are stable where the two placements land together …
    still = split_half_stability(idx, image_vectors, lambda v: np.zeros((len(v), 2)), extent=1.0, seed=7)
    assert still.cosine == noisy.cosine and still.displacement == 0.0 and still.stable
    # … and unstable where they land apart, by more than MAX_DISPLACEMENT of the map's extent
    apart = split_half_stability(
        idx, smooth, lambda v: v[:, :2] * 0 + np.arange(len(v))[:, None], 10.0, seed=7
    )
    assert apart.cosine == pytest.approx(1.0) and apart.displacement > MAX_DISPLACEMENT and not apart.stable


def test_tied_stimuli_flagged_counted_and_left_out() -> None:
    rng = np.random.default_rng(0)
    maxima = np.sort(rng.random((12, 5)).astype(np.float32), axis=1)[:, ::-1]
    maxima[2] = 0.0  # dead after a ReLU
    maxima[5] = np.float32(0.731)  # a constant BN shift
    maxima[7, 1:] = maxima[7, 0]  # only ties below the top: tied too
    maxima[9, -1] = np.nan
    tied = tied_stimuli(maxima)
    assert tied.tolist() == tied_literal(maxima)
    assert np.flatnonzero(tied).tolist() == [2, 5, 7, 9]
    assert ties_per_layer(tied, np.repeat([0, 1, 2], 4), 3) == [1, 2, 1]
    vectors = rng.normal(0, 1, (12, 3))
    vectors[tied] = 0.0  # tied neurons would sit together and drag diversity towards −∞
    assert concept_diversity(vectors, exclude=tied) == pytest.approx(concept_diversity(vectors[~tied]))
    importance = rng.random(12)
    bins = rank_bins(importance, exclude=tied)
    assert sorted(np.concatenate(bins).tolist()) == np.flatnonzero(~tied).tolist()
    with pytest.raises(ConceptEvoError, match="maxima"):
        tied_stimuli(np.zeros(5))


def test_post_relu_importance_matches_a_literal_tap_on_the_relu() -> None:
    from worker.models.demo_net import demo_vgg
    from worker.models.layers import default_layers

    torch.manual_seed(0)
    model_t = demo_vgg(5, widths=(8, "M", 8, "M"), image_size=16).double().eval()
    torch.manual_seed(1)
    model_t2 = demo_vgg(5, widths=(8, "M", 8, "M"), image_size=16).double().eval()
    layers = default_layers(model_t)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    post = batch_sensitivities(model_t, model_t2, layers, x, [2], activation="post_relu")[0].detach().numpy()
    pre = batch_sensitivities(model_t, model_t2, layers, x, [2])[0].detach().numpy()
    literal = post_relu_sensitivities_literal(model_t, model_t2, [spec.name for spec in layers], x, 2)
    np.testing.assert_allclose(post, literal, rtol=1e-6, atol=1e-9 * np.abs(literal).max())
    pre_literal = literal_sensitivities(model_t, model_t2, [spec.name for spec in layers], x, 2)
    np.testing.assert_allclose(pre, pre_literal, rtol=1e-6, atol=1e-9 * np.abs(pre_literal).max())
    assert not np.allclose(pre, post)  # the two taps differ: the choice matters
    with pytest.raises(ConceptEvoError, match="activation"):
        batch_sensitivities(model_t, model_t2, layers, x, [2], activation="relu")


def test_split_half_displacement_is_measured_on_a_bounded_sample() -> None:
    rng = np.random.default_rng(3)
    n_images, n_neurons, k = 400, 2500, 10
    idx = np.stack([rng.choice(n_images, k, replace=False) for _ in range(n_neurons)])
    image_vectors = rng.normal(0, 1, (n_images, 4))
    seen: list[int] = []

    def flat_map(vectors: np.ndarray) -> np.ndarray:
        seen.append(len(vectors))
        return vectors[:, :2]

    sampled = split_half_stability(idx, image_vectors, flat_map, extent=1.0, seed=2)
    assert seen == [2 * DISPLACEMENT_SAMPLE], "two placements of the sampled neurons, in one call"
    vec_a, vec_b, used = half_placements(idx, image_vectors, seed=2)
    everyone = float(np.median(np.linalg.norm(vec_a[:, :2] - vec_b[:, :2], axis=1)))
    assert sampled.neurons == used.sum() > DISPLACEMENT_SAMPLE
    assert sampled.displacement == pytest.approx(everyone, rel=0.1)
