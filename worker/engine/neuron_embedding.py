"""Base neuron embedding (paper Eq 1, gradients Eq 12–13, Algorithm 1) by vectorised mini-batch SGD.

Objective. Eq 1 (= Eq 11) as printed *multiplies* the two negative log terms, ``log(1−σ(v_n·v_r)) ·
log(1−σ(v_m·v_r))``. That product is not the log of the likelihood Eq 10 (whose log turns the product
``(1−P(n,r))(1−P(m,r))`` into a **sum**), and the gradients the paper derives, Eq 12–13, are those of the
sum. We therefore maximise the standard skip-gram negative-sampling form

    J_1 = Σ_{(n,m)∈D} [ log σ(v_n·v_m) + Σ_{r=1..R} ( log(1−σ(v_n·v_r)) + log(1−σ(v_m·v_r)) ) ]

whose gradients are exactly Eq 12 (w.r.t. v_n) and Eq 13 (w.r.t. v_m). As in Algorithm 1, only v_n and v_m
are updated by a pair; the random neurons r are not (Eq 12–13 give no update for them).

Negatives. For every pair (n, m) we draw R neurons uniformly at random (with replacement, over all neurons)
once, and the *same* r's serve both Eq 12 (for n) and Eq 13 (for m), as Eq 10 pairs each r with both n and
m.

Optimisation. Each epoch re-samples D (Appendix A.1) with a fresh shuffle, visits images in random order,
and runs SGD over mini-batches of pairs: gather the rows, batched dot products, and ``index_add_`` of the Eq
12–13 steps. Within a batch all gradients are computed from the batch's starting vectors and accumulated
(Hogwild-style); with batches much smaller than D this tracks Algorithm 1's one-pair-at-a-time ascent (the
tests compare the objective reached with a literal transcription).

Backends. ``backend="torch"`` is the vectorised mini-batch path above and runs on any torch device (it is
the one used on CUDA). On the CPU, per-op overhead and memory traffic of gathers dominate at this tiny
dimension, so ``backend="auto"`` picks ``"numba"`` there: one compiled loop that runs whole epochs — the
per-image shuffles (Fisher–Yates within each image's neurons, images in random order), the R negatives, and
Algorithm 1's exact one-pair-at-a-time Eq 12–13 updates (Eq 13 sees the already-updated v_n, as the
pseudocode reads) — with no Python per pair or per batch. It equals the literal transcription to rounding
(tested) and needs no Hogwild approximation. numba ships with umap-learn; its first call compiles (~2 s,
cached on disk after).

Initialisation: every coordinate uniform in ``[−0.5, 0.5) / dim`` (word2vec's input-vector init), drawn from
a CPU generator seeded by ``seed`` so that CPU and CUDA runs start from the same vectors. Pairings and
negatives are drawn on the device with a generator seeded by ``seed`` (CPU and CUDA streams differ).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from worker.engine.pairs import Incidences, chain_pairs, epoch_pairs, group_incidences, validate_indices
from worker.errors import ConceptEvoError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, float], None]
"""``progress(epochs_done, epochs_total, objective_of_last_epoch)``."""

_KEY_BITS = 31


@dataclass
class NeuronEmbedding:
    """Result of :func:`train_neuron_embedding`.

    Attributes:
        vectors: ``(n_neurons, dim)`` float32 neuron embeddings ``v_n`` of the base model.
        objective_per_epoch: ``(epochs,)`` float64 — summed Eq 1 over each epoch's D, each pair's term
            evaluated with the vectors its mini-batch (torch) or the pair itself (numba) started from
            (free during training, like word2vec's running loss). Use :func:`objective` for an exact value
            at fixed vectors.
        pairs_per_epoch: ``|D|``, the same for every pairing (see :mod:`worker.engine.pairs`).
    """

    vectors: np.ndarray
    objective_per_epoch: np.ndarray
    pairs_per_epoch: int


def objective(vectors: np.ndarray | torch.Tensor, pairs: np.ndarray, negatives: np.ndarray) -> float:
    """Summed Eq 1 (sum form of the negative terms, see module docstring) at fixed vectors.

    Args:
        vectors: ``(n_neurons, dim)`` neuron embeddings.
        pairs: ``(P, 2)`` neuron pairs D.
        negatives: ``(P, R)`` random neurons r for each pair.

    Returns:
        ``Σ_(n,m) [log σ(v_n·v_m) + Σ_r log(1−σ(v_n·v_r)) + log(1−σ(v_m·v_r))]`` in float64.
    """
    v = torch.as_tensor(
        np.asarray(vectors) if not torch.is_tensor(vectors) else vectors.cpu(), dtype=torch.float64
    )
    p = torch.as_tensor(np.asarray(pairs), dtype=torch.int64)
    r = torch.as_tensor(np.asarray(negatives), dtype=torch.int64)
    if p.ndim != 2 or p.shape[1] != 2 or r.ndim != 2 or r.shape[0] != p.shape[0]:
        raise ConceptEvoError(
            f"pairs must be (P, 2) and negatives (P, R); got {tuple(p.shape)}, {tuple(r.shape)}"
        )
    vn, vm, vr = v[p[:, 0]], v[p[:, 1]], v[r]
    pos = F.logsigmoid((vn * vm).sum(-1)).sum()
    neg_n = F.logsigmoid(-torch.einsum("pd,prd->pr", vn, vr)).sum()
    neg_m = F.logsigmoid(-torch.einsum("pd,prd->pr", vm, vr)).sum()
    return float(pos + neg_n + neg_m)


def sgd_pass(
    vectors: torch.Tensor, pairs: torch.Tensor, negatives: torch.Tensor, lr: float, batch_size: int
) -> torch.Tensor:
    """One pass of Eq 12–13 gradient ascent over ``pairs`` in mini-batches, updating ``vectors`` in place.

    Args:
        vectors: ``(n_neurons, dim)`` float tensor on the device, updated in place.
        pairs: ``(P, 2)`` int64 neuron pairs (n, m) on the same device.
        negatives: ``(P, R)`` int64 random neurons r on the same device, shared by n (Eq 12) and m (Eq 13).
        lr: learning rate α of Algorithm 1.
        batch_size: pairs per mini-batch; steps inside a batch are accumulated with ``index_add_``.

    Returns:
        0-d tensor: summed Eq 1 over the pass, each term at its batch's starting vectors.
    """
    dim = vectors.shape[1]
    total = torch.zeros((), dtype=torch.float64, device=vectors.device)
    for s in range(0, pairs.shape[0], batch_size):
        pb = pairs[s : s + batch_size]  # (b, 2)
        rb = negatives[s : s + batch_size]  # (b, R)
        vnm = vectors[pb]  # (b, 2, d): v_n, v_m
        vr = vectors[rb]  # (b, R, d)
        pos = (vnm[:, 0] * vnm[:, 1]).sum(-1)  # (b,)   v_n·v_m
        neg = torch.bmm(vnm, vr.transpose(1, 2))  # (b, 2, R)  v_n·v_r, v_m·v_r
        g_pos = torch.sigmoid(-pos)  # 1 − σ(v_n·v_m)
        # Eq 12 / Eq 13: (1−σ(n·m)) v_other − Σ_r σ(·, r) v_r
        grad = g_pos[:, None, None] * vnm.flip(1) - torch.bmm(torch.sigmoid(neg), vr)
        vectors.index_add_(0, pb.reshape(-1), grad.reshape(-1, dim), alpha=lr)
        total += (F.logsigmoid(pos).sum() + F.logsigmoid(-neg).sum()).to(torch.float64)
    return total


class _Pairer:
    """Device-side re-pairing of D (Appendix A.1) for every epoch, one sort per epoch.

    An epoch draws a random order of the used images and a random key per incidence, sorts the composite int64
    key once, and hands the incidences in that order to :func:`~worker.engine.pairs.chain_pairs`.
    """

    def __init__(self, incidences: Incidences, device: torch.device, gen: torch.Generator) -> None:
        self.n_groups = incidences.n_groups
        self.n_pairs = incidences.n_pairs
        self.group = torch.as_tensor(incidences.group, dtype=torch.int64, device=device)
        self.neurons = torch.as_tensor(incidences.neurons, dtype=torch.int64, device=device)
        self.device = device
        self.gen = gen

    def sample(self) -> torch.Tensor:
        """Returns one pairing of D as a ``(P, 2)`` int64 tensor, images in random order."""
        rank = torch.randperm(self.n_groups, generator=self.gen, device=self.device)
        noise = torch.randint(0, 2**_KEY_BITS, self.group.shape, generator=self.gen, device=self.device)
        key = (rank[self.group] << _KEY_BITS) | noise
        order = torch.argsort(key)
        return chain_pairs(self.neurons[order], rank[self.group][order])


try:  # numba comes with umap-learn; without it the CPU falls back to the torch path
    import numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a dependency of umap-learn
    _HAVE_NUMBA = False


def _sigmoids(x):  # pragma: no cover - compiled by numba below
    """Returns ``(σ(x), σ(−x))`` from one exp, both accurate for any x."""
    e = math.exp(-abs(x))
    big = 1.0 / (1.0 + e)
    small = e / (1.0 + e)
    if x >= 0:
        return big, small
    return small, big


_TINY = 1e-250  # the running product of likelihood factors is folded into the log before it can underflow


def _pair_step_py(v, n, m, rs, lr, gn, gm):  # pragma: no cover - compiled by numba below
    """Algorithm 1 for one pair (n, m), negatives rs: Eq 12, then Eq 13 with the new v_n.

    Returns the pair's Eq 1 term at the vectors it started from. Its 1 + 2R log-factors are multiplied and
    logged once (folded early if the product nears underflow): one log per pair instead of 1 + 2R.
    """
    dim = v.shape[1]
    s_nm = 0.0
    for d in range(dim):
        s_nm += v[n, d] * v[m, d]
    sig, g_pos = _sig(s_nm)  # σ(n·m), 1 − σ(n·m)
    term = 0.0
    prod = sig
    for d in range(dim):
        gn[d] = g_pos * v[m, d]
    for j in range(rs.shape[0]):
        r = rs[j]
        s_nr = 0.0
        for d in range(dim):
            s_nr += v[n, d] * v[r, d]
        sig, one_minus = _sig(s_nr)
        prod *= one_minus  # 1 − σ(n·r)
        if prod < _TINY:
            term += math.log(prod)
            prod = 1.0
        for d in range(dim):
            gn[d] -= sig * v[r, d]
    for d in range(dim):
        gn[d] = v[n, d] + lr * gn[d]  # gn now holds the new v_n
    s_nm2 = 0.0
    for d in range(dim):
        s_nm2 += gn[d] * v[m, d]
    _, g_pos2 = _sig(s_nm2)
    for d in range(dim):
        gm[d] = g_pos2 * gn[d]
    for j in range(rs.shape[0]):
        r = rs[j]
        s_mr = 0.0
        for d in range(dim):
            s_mr += v[m, d] * v[r, d]
        sig, one_minus = _sig(s_mr)
        prod *= one_minus  # 1 − σ(m·r)
        if prod < _TINY:
            term += math.log(prod)
            prod = 1.0
        for d in range(dim):
            gm[d] -= sig * v[r, d]
    for d in range(dim):
        v[n, d] = gn[d]
        v[m, d] += lr * gm[d]
    return term + math.log(prod)


def _pairs_pass_py(v, pairs, negatives, lr):  # pragma: no cover - compiled by numba below
    """Algorithm 1's inner loop over given pairs and negatives; returns summed Eq 1 terms."""
    gn = np.empty(v.shape[1])
    gm = np.empty(v.shape[1])
    total = 0.0
    for i in range(pairs.shape[0]):
        total += _pair_step(v, pairs[i, 0], pairs[i, 1], negatives[i], lr, gn, gm)
    return total


def _shuffle_and_draw_py(neurons, starts, order, negatives, n_neurons):  # pragma: no cover - numba
    """One epoch's random draws, in place: Algorithm 4's shuffles, then the pairs' R negatives each.

    ``neurons`` is shuffled within each image (Fisher-Yates) and ``order`` (the image visiting order) is
    shuffled; both carry over from the previous epoch. ``negatives`` ``(P, R)`` is filled in pair order.
    Uniform integers are drawn as ``int(random() * n)`` (bias below 2⁻⁴⁰ for n < 2¹³, far faster than
    numba's ``randint``).
    """
    n_groups = starts.shape[0] - 1
    for g in range(n_groups):  # Fisher-Yates within each image's neurons
        a = starts[g]
        for i in range(starts[g + 1] - 1, a, -1):
            j = a + int(np.random.random() * (i - a + 1))
            t = neurons[i]
            neurons[i] = neurons[j]
            neurons[j] = t
    for i in range(n_groups - 1, 0, -1):  # images in random order
        j = int(np.random.random() * (i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t
    for p in range(negatives.shape[0]):
        for j in range(negatives.shape[1]):
            negatives[p, j] = int(np.random.random() * n_neurons)


def _seed_py(seed):  # pragma: no cover - numba
    np.random.seed(seed)


if _HAVE_NUMBA:
    _sig = numba.njit(cache=True, fastmath=True, inline="always")(_sigmoids)
    _pair_step = numba.njit(cache=True, fastmath=True)(_pair_step_py)
    _pairs_pass_nb = numba.njit(cache=True)(_pairs_pass_py)
    _shuffle_and_draw_nb = numba.njit(cache=True)(_shuffle_and_draw_py)
    _seed_nb = numba.njit(cache=True)(_seed_py)


def algorithm1_pass(vectors: np.ndarray, pairs: np.ndarray, negatives: np.ndarray, lr: float) -> float:
    """Algorithm 1 exactly (compiled, one pair at a time) over given pairs and negatives, in place.

    Args:
        vectors: ``(n_neurons, dim)`` float64 C-contiguous array, updated in place.
        pairs: ``(P, 2)`` int64 pairs D.
        negatives: ``(P, R)`` int64 random neurons, shared by Eq 12 and Eq 13.
        lr: learning rate α.

    Returns:
        Summed Eq 1 terms, each at the vectors its pair saw.
    """
    if not _HAVE_NUMBA:  # pragma: no cover
        raise ConceptEvoError("the compiled CPU path needs numba (pip install numba)")
    if vectors.dtype != np.float64 or not vectors.flags.c_contiguous:
        raise ConceptEvoError("algorithm1_pass needs a C-contiguous float64 vectors array")
    return float(
        _pairs_pass_nb(
            vectors,
            np.ascontiguousarray(pairs, dtype=np.int64),
            np.ascontiguousarray(negatives, dtype=np.int64),
            lr,
        )
    )


def _train_numba(
    incidences: Incidences,
    vectors: np.ndarray,
    negatives: int,
    lr: float,
    epochs: int,
    seed: int,
    progress: ProgressFn | None,
) -> np.ndarray:
    """Run ``epochs`` compiled epochs in place on float64 ``vectors``; returns the per-epoch objective.

    Each epoch: the compiled shuffles and negatives, the pairing by :func:`~worker.engine.pairs.epoch_pairs`,
    and Algorithm 1 over it. Progress is reported in bursts of about 2 M pair updates.
    """
    n_neurons = vectors.shape[0]
    neurons = incidences.neurons.copy()
    order = np.arange(incidences.n_groups, dtype=np.int64)
    negs = np.empty((incidences.n_pairs, negatives), dtype=np.int64)
    objs = np.zeros(epochs)
    _seed_nb(int(seed) % (2**32))
    chunk = max(1, 2_000_000 // max(incidences.n_pairs, 1))
    reported = 0
    for e in range(epochs):
        _shuffle_and_draw_nb(neurons, incidences.starts, order, negs, n_neurons)
        objs[e] = _pairs_pass_nb(vectors, epoch_pairs(incidences, neurons, order), negs, lr)
        if progress is not None and ((e + 1) % chunk == 0 or e + 1 == epochs):
            for done in range(reported, e + 1):
                progress(done + 1, epochs, float(objs[done]))
            reported = e + 1
    return objs


def init_vectors(n_neurons: int, dim: int, seed: int) -> torch.Tensor:
    """Random initial embeddings (Sec 3.2 "we randomly initialize"): uniform in ``[−0.5, 0.5) / dim``.

    Args:
        n_neurons: number of neurons.
        dim: embedding dimension.
        seed: seed of the CPU generator.

    Returns:
        ``(n_neurons, dim)`` float32 CPU tensor.
    """
    gen = torch.Generator().manual_seed(int(seed))
    return (torch.rand(n_neurons, dim, generator=gen) - 0.5) / dim


def train_neuron_embedding(
    indices: np.ndarray,
    n_images: int,
    dim: int = 30,
    epochs: int = 10_000,
    lr: float = 0.05,
    negatives: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 4096,
    progress: ProgressFn | None = None,
    backend: str = "auto",
) -> NeuronEmbedding:
    """Learn the base semantic space: maximise Eq 1 (sum form) by Eq 12–13 mini-batch SGD (Algorithm 1).

    Args:
        indices: ``(n_neurons, k)`` stimuli of the base model's neurons (all layers), image indices.
        n_images: number of images of the dataset.
        dim: embedding dimension (paper: 30).
        epochs: E, passes over a freshly re-paired D (paper: 10,000).
        lr: learning rate α (paper: 0.05).
        negatives: R, random neurons per pair (paper: 3).
        seed: seeds the initial vectors, the pairings and the negatives.
        device: torch device ("cpu", "cuda", …).
        batch_size: pairs per mini-batch.
        progress: optional ``f(epochs_done, epochs, objective)`` called after every epoch (the numba backend
            reports in bursts, every ~2 M pair updates).
        backend: "torch" (vectorised mini-batches, any device), "numba" (compiled exact Algorithm 1, CPU
            only) or "auto" (numba on the CPU when available, else torch).

    Returns:
        :class:`NeuronEmbedding` with float32 vectors, the per-epoch Eq 1 objective and ``|D|``.

    Raises:
        ConceptEvoError: invalid stimuli or hyper-parameters, or no image shared by two neurons (D empty).
    """
    idx = validate_indices(indices, n_images)
    if dim < 1 or epochs < 0 or negatives < 0 or batch_size < 1 or not lr > 0:
        raise ConceptEvoError(
            f"bad embedding hyper-parameters: dim={dim}, epochs={epochs}, R={negatives}, "
            f"batch_size={batch_size}, lr={lr}"
        )
    dev = torch.device(device)
    n_neurons = idx.shape[0]
    if backend not in ("auto", "torch", "numba"):
        raise ConceptEvoError(f"unknown embedding backend {backend!r} (auto, torch or numba)")
    if backend == "numba" and (dev.type != "cpu" or not _HAVE_NUMBA):
        raise ConceptEvoError("the numba embedding backend runs on the CPU only and needs numba")
    incidences = group_incidences(idx)
    if incidences.n_pairs == 0:
        raise ConceptEvoError("no image is shared by two neurons' stimuli: the pair set D is empty")
    if backend == "numba" or (backend == "auto" and dev.type == "cpu" and _HAVE_NUMBA):
        v64 = init_vectors(n_neurons, dim, seed).double().numpy().copy()
        log.info(
            "neuron embedding (numba, CPU): %d neurons, dim=%d, R=%d, E=%d", n_neurons, dim, negatives, epochs
        )
        objs_np = _train_numba(incidences, v64, negatives, lr, epochs, seed, progress)
        return NeuronEmbedding(
            vectors=v64.astype(np.float32), objective_per_epoch=objs_np, pairs_per_epoch=incidences.n_pairs
        )
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    pairer = _Pairer(incidences, dev, gen)
    vectors = init_vectors(n_neurons, dim, seed).to(dev)
    objs = torch.zeros(epochs, dtype=torch.float64, device=dev)
    log.info(
        "neuron embedding: %d neurons, |D|=%d pairs/epoch, dim=%d, R=%d, E=%d on %s",
        n_neurons,
        pairer.n_pairs,
        dim,
        negatives,
        epochs,
        dev,
    )
    with torch.no_grad():
        for e in range(epochs):
            pairs = pairer.sample()
            negs = torch.randint(0, n_neurons, (pairs.shape[0], negatives), generator=gen, device=dev)
            objs[e] = sgd_pass(vectors, pairs, negs, lr, batch_size)
            if progress is not None:
                progress(e + 1, epochs, float(objs[e]))
    out = objs.cpu().numpy()
    if epochs:
        log.info("neuron embedding done: objective %.4g → %.4g", out[0], out[-1])
    return NeuronEmbedding(
        vectors=vectors.cpu().numpy().astype(np.float32),
        objective_per_epoch=out,
        pairs_per_epoch=pairer.n_pairs,
    )
