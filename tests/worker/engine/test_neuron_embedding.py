"""Base neuron embedding (Eq 1, Eq 12–13, Algorithm 1) against literal per-pair transcriptions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.worker.engine.oracles_space import (
    algorithm1_literal,
    grad_eq12,
    grad_eq13,
    grouped_stimuli,
    knn_purity,
    objective_printed_literal,
    objective_sum_literal,
)
from worker.engine.neuron_embedding import (
    algorithm1_pass,
    init_vectors,
    objective,
    sgd_pass,
    train_neuron_embedding,
)
from worker.engine.pairs import coactivated_pairs
from worker.errors import ConceptEvoError


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: one intra-op thread avoids OpenMP spin-waits on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _setup(seed: int = 0, n: int = 48, epochs: int = 20, r: int = 3):
    rng = np.random.default_rng(seed)
    idx, groups, _ = grouped_stimuli(n, 5, 300, 4, 15, rng)
    d_epochs = [coactivated_pairs(idx, 300, rng) for _ in range(epochs)]
    neg_epochs = [rng.integers(0, n, (len(d), r)) for d in d_epochs]
    return idx, groups, d_epochs, neg_epochs


def test_eq12_13_are_the_gradients_of_the_summed_eq1() -> None:
    rng = np.random.default_rng(3)
    v = torch.tensor(rng.normal(0, 0.5, (6, 4)), dtype=torch.float64, requires_grad=True)
    pair, negs = np.array([[0, 1]]), np.array([[2, 3, 4]])
    vn, vm, vr = v[0], v[1], v[[2, 3, 4]]
    j = (
        torch.nn.functional.logsigmoid(vn @ vm)
        + (torch.nn.functional.logsigmoid(-(vr @ vn)) + torch.nn.functional.logsigmoid(-(vr @ vm))).sum()
    )
    j.backward()
    vv = v.detach().numpy()
    j = j.detach()
    np.testing.assert_allclose(v.grad[0].numpy(), grad_eq12(vv[0], vv[1], list(vv[[2, 3, 4]])), rtol=1e-10)
    np.testing.assert_allclose(v.grad[1].numpy(), grad_eq13(vv[0], vv[1], list(vv[[2, 3, 4]])), rtol=1e-10)
    # objective() computes the same summed Eq 1, and the printed product form is a different number
    assert objective(vv, pair, negs) == pytest.approx(float(j), rel=1e-12)
    assert objective_sum_literal(vv, pair, negs) == pytest.approx(float(j), rel=1e-12)
    assert objective_printed_literal(vv, pair, negs) != pytest.approx(float(j), rel=1e-3)


def test_objective_matches_literal_loop() -> None:
    idx, _, d_epochs, neg_epochs = _setup(epochs=1)
    v = np.random.default_rng(1).normal(0, 0.3, (48, 7))
    assert objective(v, d_epochs[0], neg_epochs[0]) == pytest.approx(
        objective_sum_literal(v, d_epochs[0], neg_epochs[0]), rel=1e-9
    )


def test_batch_of_one_equals_literal_per_pair_updates() -> None:
    _, _, d_epochs, neg_epochs = _setup(epochs=2)
    v0 = init_vectors(48, 6, seed=2) * 20  # larger start so that updates are not trivially small
    lit = algorithm1_literal(v0.double().numpy(), d_epochs, neg_epochs, lr=0.05, sequential=False)
    v = v0.clone()
    for d, negs in zip(d_epochs, neg_epochs, strict=True):
        sgd_pass(v, torch.as_tensor(d), torch.as_tensor(negs), 0.05, batch_size=1)
    np.testing.assert_allclose(v.numpy(), lit, rtol=1e-4, atol=1e-6)


def test_compiled_pass_equals_literal_algorithm1() -> None:
    """The numba backend's inner loop is Algorithm 1 itself: same D, negatives and start → same vectors."""
    _, _, d_epochs, neg_epochs = _setup(epochs=3)
    v0 = init_vectors(48, 6, seed=2).double().numpy() * 20
    lit = algorithm1_literal(v0, d_epochs, neg_epochs, lr=0.05, sequential=True)
    v = v0.copy()
    total = [algorithm1_pass(v, d, negs, 0.05) for d, negs in zip(d_epochs, neg_epochs, strict=True)]
    np.testing.assert_allclose(v, lit, rtol=1e-10, atol=1e-12)
    assert np.isfinite(total).all()
    # the running objective it returns is Eq 1 of each pair at the vectors that pair saw
    v1 = v0.copy()
    for i in range(5):
        expected = objective_sum_literal(v1, d_epochs[0][i : i + 1], neg_epochs[0][i : i + 1])
        got = algorithm1_pass(v1, d_epochs[0][i : i + 1], neg_epochs[0][i : i + 1], 0.05)
        assert got == pytest.approx(expected, rel=1e-12)


@pytest.fixture(scope="module")
def literal_run():
    """Algorithm 1 run literally (one pair at a time) for 30 epochs on a re-paired D — shared by two tests."""
    idx, _, d_epochs, neg_epochs = _setup(epochs=30)
    v0 = init_vectors(48, 10, seed=0)
    lit = algorithm1_literal(v0.double().numpy(), d_epochs, neg_epochs, lr=0.05, sequential=True)
    rng = np.random.default_rng(99)  # evaluation: all pairs seen, fresh R=3 negatives, 4 draws each
    d_eval = np.tile(np.concatenate(d_epochs), (4, 1))
    n_eval = rng.integers(0, 48, (len(d_eval), 3))
    return idx, d_epochs, neg_epochs, v0, lit, d_eval, n_eval


@pytest.mark.parametrize("batch_size", [8, 64])
def test_minibatch_reaches_literal_objective_on_same_d(literal_run, batch_size: int) -> None:
    """Same D, same negatives, same init: vectorised SGD ends at an equal or better Eq 1 than Algorithm 1."""
    _, d_epochs, neg_epochs, v0, lit, d_eval, n_eval = literal_run
    v = v0.clone()
    for d, negs in zip(d_epochs, neg_epochs, strict=True):
        sgd_pass(v, torch.as_tensor(d), torch.as_tensor(negs), 0.05, batch_size=batch_size)
    j_lit = objective(lit, d_eval, n_eval)
    j_vec = objective(v.numpy(), d_eval, n_eval)
    j_0 = objective(v0.numpy(), d_eval, n_eval)
    assert j_lit > j_0  # the literal run did learn
    # equal or better, within 5 % of what Algorithm 1 gained over the start
    assert j_vec >= j_lit - 0.05 * (j_lit - j_0), (j_vec, j_lit, j_0)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_trainer_reaches_literal_objective_with_same_budget(literal_run, backend: str) -> None:
    """The full trainer (its own pairings and negatives, same E, R, α) reaches Algorithm 1's objective.

    Pairings and negatives are random streams, so the objective is evaluated on 20 fresh pairings of D with
    fresh negatives, averaged over 3 trainer seeds, and may trail by at most 15 % of Algorithm 1's gain.
    """
    idx, d_epochs, _, v0, lit, _, _ = literal_run
    rng = np.random.default_rng(5)
    d_eval = np.concatenate([coactivated_pairs(idx, 300, rng) for _ in range(20)])
    n_eval = rng.integers(0, 48, (len(d_eval), 3))
    j_lit, j_0 = objective(lit, d_eval, n_eval), objective(v0.numpy(), d_eval, n_eval)
    runs = [
        train_neuron_embedding(idx, 300, dim=10, epochs=30, seed=s, batch_size=16, backend=backend)
        for s in range(3)
    ]
    j_vec = float(np.mean([objective(e.vectors, d_eval, n_eval) for e in runs]))
    assert j_vec >= j_lit - 0.15 * (j_lit - j_0), (j_vec, j_lit, j_0)
    emb = runs[0]
    assert emb.pairs_per_epoch == len(d_epochs[0])
    assert emb.objective_per_epoch.shape == (30,)
    assert emb.objective_per_epoch[-5:].mean() > emb.objective_per_epoch[:5].mean()


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_seeded_and_progress(backend: str) -> None:
    idx, _, _, _ = _setup()
    seen: list[tuple[int, int, float]] = []
    kw = {"dim": 5, "epochs": 3, "backend": backend}
    a = train_neuron_embedding(idx, 300, seed=4, progress=lambda e, n, j: seen.append((e, n, j)), **kw)
    b = train_neuron_embedding(idx, 300, seed=4, **kw)
    c = train_neuron_embedding(idx, 300, seed=5, **kw)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.array_equal(a.vectors, c.vectors)
    assert a.vectors.dtype == np.float32 and a.vectors.shape == (48, 5)
    assert [s[0] for s in seen] == [1, 2, 3] and seen[-1][2] == pytest.approx(a.objective_per_epoch[-1])


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_concept_groups_separate(backend: str) -> None:
    rng = np.random.default_rng(0)
    idx, groups, _ = grouped_stimuli(96, 8, 2000, 6, 30, rng)
    emb = train_neuron_embedding(idx, 2000, dim=16, epochs=150, seed=0, batch_size=256, backend=backend)
    assert knn_purity(emb.vectors, groups) > 0.9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim": 0},
        {"epochs": -1},
        {"lr": 0.0},
        {"negatives": -1},
        {"batch_size": 0},
        {"backend": "gpu"},
        {"backend": "numba", "device": "meta"},
    ],
)
def test_bad_hyper_parameters(kwargs: dict) -> None:
    idx, _, _, _ = _setup()
    with pytest.raises(ConceptEvoError):
        train_neuron_embedding(idx, 300, **kwargs)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_no_shared_images_is_an_error(backend: str) -> None:
    with pytest.raises(ConceptEvoError, match="empty"):
        train_neuron_embedding(np.arange(12).reshape(4, 3), 12, epochs=1, backend=backend)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trainer_on_cuda_learns_groups_and_matches_cpu_objective() -> None:
    rng = np.random.default_rng(0)
    idx, groups, _ = grouped_stimuli(96, 8, 2000, 6, 30, rng)
    gpu = train_neuron_embedding(idx, 2000, dim=16, epochs=150, seed=0, batch_size=256, device="cuda")
    cpu = train_neuron_embedding(idx, 2000, dim=16, epochs=150, seed=0, batch_size=256, backend="torch")
    assert gpu.vectors.dtype == np.float32 and np.isfinite(gpu.vectors).all()
    assert knn_purity(gpu.vectors, groups) > 0.9
    # different random streams, same algorithm: final objectives within 2 %
    assert gpu.objective_per_epoch[-10:].mean() == pytest.approx(
        cpu.objective_per_epoch[-10:].mean(), rel=0.02
    )
