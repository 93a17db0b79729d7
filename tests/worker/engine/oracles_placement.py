"""Literal, slow transcriptions used as oracles for placing neurons on the unified space (issue 13).

* :func:`eq4_gradient_descent_literal`: Eq 3 solved by Eq 4's gradient as printed, one image and one neuron at
  a time; :func:`eq4_gradient_descent` is the same update written with a matrix (checked against the literal
  one on a few steps) so that the demo-world oracle can run it for a thousand steps;
* :func:`cross_validated_placement_literal`: K-fold held-out placement of base neurons, one fold and one λ at a
  time with the dense stacked least-squares solve of ``oracles_space.eq3_dense``;
* :func:`split_half_literal`: the two half placements, one neuron and one stimulus at a time;
* :func:`tied_literal`: the tie rule as written in ``worker/engine/ties.py``;
* :func:`post_relu_sensitivities_literal`: Eq 5 on the post-ReLU maps, one image and one neuron at a time.
Nothing here is imported from the functions under test except the uncovered-image rule (tested on its own).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from tests.worker.engine.oracles_importance import h_of, layer_output, without_inplace
from tests.worker.engine.oracles_space import eq2_loop, eq3_dense

#: The gradient-descent oracle's settings: a small random start like the authors' fit (uniform ±0.5/dim),
#: step 50 on Eq 4's (1/|N|)-scaled gradient, 1000 steps. Longer descent drifts towards the minimum-norm
#: solution (λ → 0); these settings stop where J_2 is within ~2 % of its least-squares optimum.
GD_LR = 50.0
GD_STEPS = 1000


def _gd_start(n_images: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n_images, dim)) / dim


def eq4_gradient_descent_literal(
    stimuli: np.ndarray,
    neuron_vectors: np.ndarray,
    n_images: int,
    steps: int,
    lr: float = GD_LR,
    seed: int = 0,
) -> np.ndarray:
    """Eq 4 as printed: ``∂J_2/∂v_x = (1/|N|) Σ_{n∈N_x} (1/|X_n|)(ṽ_n − v_n)``, descended from a random start.

    ``N_x`` is the set of base neurons having image x among their stimuli, ``ṽ_n`` Eq 2's mean.
    """
    n_neurons, dim = neuron_vectors.shape
    v = _gd_start(n_images, dim, seed)
    users = [[n for n in range(n_neurons) if x in set(stimuli[n].tolist())] for x in range(n_images)]
    for _ in range(steps):
        approx = eq2_loop(stimuli, v)
        grad = np.zeros_like(v)
        for x in range(n_images):
            for n in users[x]:
                grad[x] += (approx[n] - neuron_vectors[n]) / len(stimuli[n])
            grad[x] /= n_neurons
        v = v - lr * grad
    return v


def eq4_gradient_descent(
    stimuli: np.ndarray,
    neuron_vectors: np.ndarray,
    n_images: int,
    steps: int,
    lr: float = GD_LR,
    seed: int = 0,
) -> np.ndarray:
    """:func:`eq4_gradient_descent_literal` with the sums written as products with the incidence matrix."""
    n_neurons, k = stimuli.shape
    rows = np.repeat(np.arange(n_neurons), k)
    # sparse: a dense product would pay multi-threaded BLAS contention on a loaded 2-core box every step
    a = sp.csr_matrix((np.full(rows.size, 1.0 / k), (rows, stimuli.ravel())), shape=(n_neurons, n_images))
    target = np.asarray(neuron_vectors, dtype=np.float64)
    v = _gd_start(n_images, target.shape[1], seed)
    for _ in range(steps):
        v = v - lr * (a.T @ (a @ v - target)) / n_neurons
    return v


def cross_validated_placement_literal(
    stimuli: np.ndarray,
    neuron_vectors: np.ndarray,
    n_images: int,
    damping: float,
    fold_of: np.ndarray,
    every_image,
) -> tuple[float, np.ndarray]:
    """Held-out R² and per-neuron cosines of base neurons placed by Eq 2 from image vectors fitted without them.

    Args:
        stimuli, neuron_vectors, n_images: the base space.
        damping: λ.
        fold_of: fold of each neuron.
        every_image: ``f(train_ids, eq3_vectors, covered) -> (n_images, dim)`` the vector of every image
            (the uncovered-image rule for images no training neuron uses).
    """
    nv = np.asarray(neuron_vectors, dtype=np.float64)
    placed = np.zeros_like(nv)
    for fold in np.unique(fold_of):
        train = np.flatnonzero(fold_of != fold)
        held = np.flatnonzero(fold_of == fold)
        v = eq3_dense(stimuli[train], nv[train], n_images, damping)
        covered = np.zeros(n_images, dtype=bool)
        for n in train:
            for x in stimuli[n]:
                covered[int(x)] = True
        v_all = every_image(train, v, covered)
        for n in held:
            placed[n] = eq2_loop(stimuli[n : n + 1], v_all)[0]
    r2 = 1.0 - float(((placed - nv) ** 2).sum()) / float(((nv - nv.mean(axis=0)) ** 2).sum())
    cosines = np.array(
        [float(p @ t) / float(np.linalg.norm(p) * np.linalg.norm(t)) for p, t in zip(placed, nv, strict=True)]
    )
    return r2, cosines


def split_half_literal(
    stimuli: np.ndarray, image_vectors: np.ndarray, in_a: np.ndarray, min_per_half: int = 2
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(neuron, placement from half A, placement from half B)`` for each neuron with enough stimuli in both."""
    out = []
    for n, row in enumerate(stimuli):
        a = [image_vectors[int(x)] for x in row if in_a[int(x)]]
        b = [image_vectors[int(x)] for x in row if not in_a[int(x)]]
        if len(a) >= min_per_half and len(b) >= min_per_half:
            out.append((n, sum(a) / len(a), sum(b) / len(b)))
    return out


def tied_literal(maxima: np.ndarray, rtol: float = 1e-6) -> list[bool]:
    """A neuron is tied when its largest and smallest stimulus maxima differ by ≤ rtol·max(1, |largest|)."""
    out = []
    for row in maxima:
        values = [float(m) for m in row]
        if not all(np.isfinite(values)):
            out.append(True)
            continue
        top = max(values)
        out.append(top - min(values) <= rtol * max(1.0, abs(top)))
    return out


def post_relu_sensitivities_literal(
    model_t: torch.nn.Module, model_t2: torch.nn.Module, layers: list[str], images: torch.Tensor, c: int
) -> np.ndarray:
    """Eq 5–6 with ``Z := relu(layer output)``: ``S[x, n] = Σ ∇h_l(relu(Z^t)) ⊙ ΔZ_n`` with
    ``ΔZ_n = relu(Z^{t'}) − relu(Z^t)`` on channel n (zero elsewhere) and ``h_l`` the network from layer l's
    output on (which applies the layer's following ReLU again: a no-op on a post-ReLU map)."""
    m_t, m_t2 = without_inplace(model_t), without_inplace(model_t2)
    rows = []
    for i in range(images.shape[0]):
        x = images[i : i + 1]
        row = []
        for layer in layers:
            z_t = torch.relu(layer_output(m_t, layer, x)[0])
            z_t2 = torch.relu(layer_output(m_t2, layer, x)[0])
            leaf = z_t.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(h_of(m_t, layer, x, leaf)[0, c], leaf)
            for n in range(z_t.shape[1]):
                delta = torch.zeros_like(z_t)
                delta[:, n] = z_t2[:, n] - z_t[:, n]
                row.append(float((grad * delta).sum()))
        rows.append(row)
    return np.array(rows)
