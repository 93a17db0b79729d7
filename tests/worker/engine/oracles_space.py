"""Literal, slow transcriptions of the paper's semantic-space equations — the oracles of the fast engine code.

Each function follows the paper's pseudocode or equation term by term with plain Python loops; none is
vectorised. Also holds the synthetic "concept group" generators shared by the tests and the benchmarks.
"""

from __future__ import annotations

import math

import numpy as np

# ------------------------------------------------------------------------------------------------------------
# Appendix A.1: Eq 8, Algorithms 3 and 4
# ------------------------------------------------------------------------------------------------------------


def get_strongly_coactivated_neurons(x: int, stimuli: list[list[int]], neurons: list[int]) -> list[int]:
    """Algorithm 3 / Eq 8: ``N_x = {n ∈ N | x ∈ X_n}``."""
    return [n for n in neurons if x in stimuli[n]]


def sample_neuron_pairs(
    d: list[tuple[int, int]], n_x: list[int], key_of: dict[int, float]
) -> list[tuple[int, int]]:
    """Algorithm 4: order N_x randomly (by the given keys), slide a window of length 2 (step 1), add to D."""
    shuffled = sorted(n_x, key=lambda n: key_of[n])
    for i in range(len(shuffled) - 1):
        d.append((shuffled[i], shuffled[i + 1]))
    return d


def pairs_literal(indices: np.ndarray, n_images: int, keys: np.ndarray) -> list[tuple[int, int]]:
    """Algorithm 1's "Sample neuron pairs" loop over all images, with incidence keys as the shuffle."""
    stimuli = [list(map(int, row)) for row in indices]
    neurons = list(range(len(stimuli)))
    d: list[tuple[int, int]] = []
    for x in range(n_images):
        n_x = get_strongly_coactivated_neurons(x, stimuli, neurons)
        key_of = {n: float(keys[n][stimuli[n].index(x)]) for n in n_x}
        d = sample_neuron_pairs(d, n_x, key_of)
    return d


# ------------------------------------------------------------------------------------------------------------
# Eq 1 / 11 and Algorithm 1 (Eq 12–13)
# ------------------------------------------------------------------------------------------------------------


def sigmoid(x: float) -> float:
    """σ(x) = 1 / (1 + e^{−x})."""
    return 1.0 / (1.0 + math.exp(-x))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Plain-Python dot product."""
    return float(sum(float(p) * float(q) for p, q in zip(a, b, strict=True)))


def objective_sum_literal(v: np.ndarray, d: np.ndarray, negatives: np.ndarray) -> float:
    """Eq 1 with the sum of the negative log terms (the form whose gradients are Eq 12–13)."""
    total = 0.0
    for (n, m), rs in zip(d, negatives, strict=True):
        total += math.log(sigmoid(dot(v[n], v[m])))
        for r in rs:
            total += math.log(1 - sigmoid(dot(v[n], v[r]))) + math.log(1 - sigmoid(dot(v[m], v[r])))
    return total


def objective_printed_literal(v: np.ndarray, d: np.ndarray, negatives: np.ndarray) -> float:
    """Eq 1 exactly as printed: the two negative log terms multiplied."""
    total = 0.0
    for (n, m), rs in zip(d, negatives, strict=True):
        total += math.log(sigmoid(dot(v[n], v[m])))
        for r in rs:
            total += math.log(1 - sigmoid(dot(v[n], v[r]))) * math.log(1 - sigmoid(dot(v[m], v[r])))
    return total


def grad_eq12(vn: np.ndarray, vm: np.ndarray, vrs: list[np.ndarray]) -> np.ndarray:
    """Eq 12: ∂J1/∂v_n = (1 − σ(v_n·v_m)) v_m − Σ_r σ(v_n·v_r) v_r."""
    g = (1 - sigmoid(dot(vn, vm))) * vm
    for vr in vrs:
        g = g - sigmoid(dot(vn, vr)) * vr
    return g


def grad_eq13(vn: np.ndarray, vm: np.ndarray, vrs: list[np.ndarray]) -> np.ndarray:
    """Eq 13: ∂J1/∂v_m = (1 − σ(v_n·v_m)) v_n − Σ_r σ(v_m·v_r) v_r."""
    g = (1 - sigmoid(dot(vn, vm))) * vn
    for vr in vrs:
        g = g - sigmoid(dot(vm, vr)) * vr
    return g


def algorithm1_literal(
    v0: np.ndarray,
    d_epochs: list[np.ndarray],
    negatives_epochs: list[np.ndarray],
    lr: float,
    sequential: bool = True,
) -> np.ndarray:
    """Algorithm 1's learning loop, one pair at a time.

    ``sequential=True`` is the literal reading: ``v_n`` is updated first and Eq 13 then sees the new ``v_n``;
    ``False`` evaluates both gradients at the pair's starting vectors.
    """
    v = [np.array(row, dtype=np.float64) for row in v0]
    for d, negs in zip(d_epochs, negatives_epochs, strict=True):
        for (n, m), rs in zip(d, negs, strict=True):
            vn = v[n]
            vm = v[m]
            vrs = [v[r] for r in rs]
            new_vn = vn + lr * grad_eq12(vn, vm, vrs)
            new_vm = vm + lr * grad_eq13(new_vn if sequential else vn, vm, vrs)
            v[n] = new_vn
            v[m] = new_vm
    return np.stack(v)


# ------------------------------------------------------------------------------------------------------------
# Eq 2–4
# ------------------------------------------------------------------------------------------------------------


def eq2_loop(indices: np.ndarray, image_vectors: np.ndarray) -> np.ndarray:
    """Eq 2: ṽ_n = (1/|X_n|) Σ_{x∈X_n} v_x, one neuron and one image at a time."""
    out = []
    for row in indices:
        acc = np.zeros(image_vectors.shape[1])
        for x in row:
            acc = acc + image_vectors[int(x)]
        out.append(acc / len(row))
    return np.stack(out)


def eq3_dense(indices: np.ndarray, neuron_vectors: np.ndarray, n_images: int, damping: float) -> np.ndarray:
    """Eq 3 (intended form) + ridge λ²‖V‖² by dense ``numpy.linalg.lstsq`` on the stacked system [A; λI]."""
    n, k = indices.shape
    a = np.zeros((n, n_images))
    for i in range(n):
        for x in indices[i]:
            a[i, int(x)] += 1.0 / k
    big_a = np.vstack([a, damping * np.eye(n_images)])
    big_b = np.vstack([neuron_vectors, np.zeros((n_images, neuron_vectors.shape[1]))])
    sol, *_ = np.linalg.lstsq(big_a, big_b, rcond=None)
    return sol


def eq3_objective(indices: np.ndarray, neuron_vectors: np.ndarray, image_vectors: np.ndarray) -> float:
    """J_2 = 1/(2|N|) Σ_n ‖v_n − ṽ_n‖² with ṽ_n from Eq 2."""
    approx = eq2_loop(indices, image_vectors)
    return float(sum(np.sum((neuron_vectors[i] - approx[i]) ** 2) for i in range(len(indices)))) / (
        2 * len(indices)
    )


# ------------------------------------------------------------------------------------------------------------
# §4.5 health
# ------------------------------------------------------------------------------------------------------------


def vasicek_entropy_hand(x: np.ndarray) -> float:
    """Vasicek (1976): H = (1/n) Σ_i log( n/(2m) (x_(i+m) − x_(i−m)) ), order statistics clamped at the ends,
    m = round(√n)."""
    xs = sorted(float(t) for t in x)
    n = len(xs)
    m = math.floor(math.sqrt(n) + 0.5)
    total = 0.0
    for i in range(n):
        hi = xs[min(i + m, n - 1)]
        lo = xs[max(i - m, 0)]
        total += math.log(n / (2 * m) * (hi - lo))
    return total / n


def ebrahimi_entropy_hand(x: np.ndarray) -> float:
    """Ebrahimi et al. (1994): like Vasicek with the end windows' widths corrected by c_i."""
    xs = sorted(float(t) for t in x)
    n = len(xs)
    m = math.floor(math.sqrt(n) + 0.5)
    total = 0.0
    for i in range(1, n + 1):
        if i <= m:
            c = 1 + (i - 1) / m
        elif i >= n - m + 1:
            c = 1 + (n - i) / m
        else:
            c = 2.0
        hi = xs[min(i - 1 + m, n - 1)]
        lo = xs[max(i - 1 - m, 0)]
        total += math.log(n * (hi - lo) / (c * m))
    return total / n


# ------------------------------------------------------------------------------------------------------------
# Synthetic concept groups
# ------------------------------------------------------------------------------------------------------------


def grouped_stimuli(
    n_neurons: int, k: int, n_images: int, n_groups: int, pool_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neurons in concept groups; each neuron's k stimuli are drawn from its group's image pool.

    Returns:
        ``(indices (n_neurons, k), group of each neuron (n_neurons,), pools (n_groups, pool_size))``.
    """
    pools = rng.permutation(n_images)[: n_groups * pool_size].reshape(n_groups, pool_size)
    groups = np.arange(n_neurons) % n_groups
    keys = rng.random((n_neurons, pool_size))
    pick = np.argsort(keys, axis=1)[:, :k]
    indices = np.take_along_axis(pools[groups], pick, axis=1).astype(np.int64)
    return indices, groups, pools


def grouped_responses(
    n_images: int, groups: np.ndarray, pools: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic base response matrix where neurons fire on their group's pool, and its top-k stimuli.

    Returns:
        ``(responses (n_images, n_neurons) float32, indices (n_neurons, k) top-k per neuron, best first)``.
    """
    n_neurons = len(groups)
    resp = rng.normal(0.0, 0.3, (n_images, n_neurons)).astype(np.float32)
    for n in range(n_neurons):
        pool = pools[groups[n]]
        resp[pool, n] += 2.0 + rng.random(len(pool)).astype(np.float32)
    order = np.argsort(-resp, axis=0, kind="stable")[:k].T
    return resp, np.ascontiguousarray(order, dtype=np.int64)


def knn_purity(vectors: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Mean share of each point's k nearest neighbours (self excluded) carrying its label."""
    d = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    return float((labels[nn] == labels[:, None]).mean())


def cross_knn_purity(
    queries: np.ndarray, query_labels: np.ndarray, base: np.ndarray, base_labels: np.ndarray, k: int = 5
) -> float:
    """Mean share of each query's k nearest base points that carry the query's label."""
    d = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    nn = np.argsort(d, axis=1)[:, :k]
    return float((base_labels[nn] == query_labels[:, None]).mean())
