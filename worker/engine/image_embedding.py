"""Image embeddings on the base semantic space (paper Eq 2–4) and a vector for every image.

Eq 2 approximates a neuron's vector by the mean of its stimuli's image vectors, ``ṽ_n = (1/|X_n|) Σ_{x∈X_n}
v_x``. Eq 3 as printed, ``J_2 = 1/(2|N|) Σ_n ‖v_n − v_n‖²``, carries the same symbol twice (a typo, repeated
in Eq 4's gradient); the intended objective is ``J_2 = 1/(2|N|) Σ_n ‖v_n − ṽ_n‖²`` with ṽ_n from Eq 2, and
Eq 4 is its gradient ``(1/|N|) Σ_{n∈N_x} (1/|X_n|)(ṽ_n − v_n)``. Minimising J_2 is the linear least-squares
problem ``A V ≈ N`` with ``A`` the ``(n_neurons × n_images)`` sparse matrix holding ``1/k`` at each neuron's
stimuli, V the image vectors and N the neuron vectors. Instead of Eq 4's gradient descent from a random
start we solve it exactly, all dimensions at once, with a small ridge (damping) λ:

    V = argmin ‖A V − N‖² + λ²‖V‖²  =  Aᵀ (A Aᵀ + λ² I)⁻¹ N

``A Aᵀ`` is only ``n_neurons × n_neurons`` and sparse (neurons sharing stimuli), so one sparse LU
factorisation solves every dimension. As λ → 0 this is the minimum-norm least-squares solution (what
``numpy.linalg.lstsq`` returns); images no base neuron uses get the zero vector from Eq 3 and are marked
*not covered*.

The system is nearly singular (on the small demo world rank ~262 for 432 neurons), so a tiny λ returns image
vectors of large norm that fit the base neurons but place any other neuron badly. λ is therefore chosen by
held-out error (:func:`choose_damping`): K-fold cross-validation over base neurons — fit the image vectors
without a fold, place its neurons by Eq 2, score them against their Eq 1 vectors — and the smallest held-out
squared error wins. This differs from the authors' code, which runs Eq 4's gradient descent from a small
random start for a fixed number of steps: early stopping is an implicit damping, and the chosen ridge agrees
with such a descent (median cosine ≥ 0.95 of the placed snapshots on the demo world, see
``tests/worker/engine/test_placement_demo.py``).

Every image gets a vector (:func:`fit_uncovered_rule`, :func:`image_vectors_for_all`): an image outside the
base stimuli is placed from the base model's own response to it — the base neurons it excites most, relative
to their own range, their neuron vectors averaged with softmax weights. The normalisation, the number of
neurons m, the temperature and a global scale are chosen on covered images (where Eq 3 gives the target) and
the error is reported on held-out covered images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import threadpool_limits

from worker.engine.pairs import validate_indices
from worker.errors import ConceptEvoError

log = logging.getLogger(__name__)


@dataclass
class ImageEmbedding:
    """Eq 3 solution.

    Attributes:
        vectors: ``(n_images, dim)`` float32 image vectors ``v_x`` (zero for images not covered).
        covered: ``(n_images,)`` bool, True where some base neuron has the image among its stimuli.
        rmse: root-mean-square of ``ṽ_n − v_n`` over all neurons and dimensions (Eq 3 residual).
        r2: ``1 − Σ‖ṽ_n − v_n‖² / Σ‖v_n − mean_n v_n‖²``.
    """

    vectors: np.ndarray
    covered: np.ndarray
    rmse: float
    r2: float


def stimulus_matrix(indices: np.ndarray, n_images: int) -> sp.csr_matrix:
    """The Eq 2 averaging operator A: ``(A V)[n] = (1/|X_n|) Σ_{x∈X_n} v_x``.

    Args:
        indices: ``(n_neurons, k)`` stimuli (validated).
        n_images: number of images.

    Returns:
        ``(n_neurons, n_images)`` CSR float64 matrix with ``1/k`` at each stimulus.
    """
    n, k = indices.shape
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    data = np.full(n * k, 1.0 / k)
    return sp.csr_matrix((data, indices.ravel(), indptr), shape=(n, n_images))


def _check_vectors(vectors: np.ndarray, rows: int, what: str) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[0] != rows or arr.shape[1] == 0:
        raise ConceptEvoError(f"{what} must be a ({rows}, dim) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConceptEvoError(f"{what} contain NaN or infinite values")
    return arr


def fit_image_embedding(
    indices_base: np.ndarray, neuron_vectors: np.ndarray, n_images: int, damping: float = 1e-3
) -> ImageEmbedding:
    """Solve Eq 3 (intended form, see module docstring) for all image vectors at once.

    Args:
        indices_base: ``(n_neurons, k)`` the base model's stimuli.
        neuron_vectors: ``(n_neurons, dim)`` base neuron embeddings (Eq 1).
        n_images: number of images of the dataset.
        damping: λ > 0 of the ridge term ``λ²‖V‖²`` (lsqr's ``damp``); it fixes neurons with identical
            stimuli and leaves uncovered images at zero.

    Returns:
        :class:`ImageEmbedding` with vectors, coverage mask and the reconstruction RMSE / R².

    Raises:
        ConceptEvoError: bad shapes, non-finite vectors or ``damping <= 0``.
    """
    idx = validate_indices(indices_base, n_images)
    nv = _check_vectors(neuron_vectors, idx.shape[0], "neuron vectors").astype(np.float64)
    if not damping > 0:
        raise ConceptEvoError(f"damping must be > 0, got {damping}")
    a = stimulus_matrix(idx, n_images)
    gram = (a @ a.T).tocsc() + (damping**2) * sp.identity(idx.shape[0], format="csc")
    lu = spla.splu(
        gram, permc_spec="MMD_AT_PLUS_A"
    )  # symmetric fill-reducing order: far less fill than COLAMD
    v = np.asarray(a.T @ lu.solve(nv))
    approx = a @ v
    res = approx - nv
    ss_res = float((res**2).sum())
    ss_tot = float(((nv - nv.mean(axis=0)) ** 2).sum())
    covered = np.zeros(n_images, dtype=bool)
    covered[idx.ravel()] = True
    rmse = math.sqrt(ss_res / res.size)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    log.info(
        "image embedding: %d covered of %d images, RMSE %.3g, R² %.4f", covered.sum(), n_images, rmse, r2
    )
    return ImageEmbedding(vectors=v.astype(np.float32), covered=covered, rmse=rmse, r2=r2)


def neuron_vectors_from_stimuli(indices: np.ndarray, image_vectors: np.ndarray) -> np.ndarray:
    """Eq 2 for any model at any epoch: a neuron's vector is the mean of its stimuli's image vectors.

    Args:
        indices: ``(n_neurons, k)`` the snapshot's stimuli.
        image_vectors: ``(n_images, dim)`` image vectors (from :func:`image_vectors_for_all`).

    Returns:
        ``(n_neurons, dim)`` float32 neuron vectors on the unified semantic space.
    """
    iv = np.asarray(image_vectors)
    if iv.ndim != 2:
        raise ConceptEvoError(f"image vectors must be (n_images, dim), got shape {iv.shape}")
    idx = validate_indices(indices, iv.shape[0])
    return iv[idx].mean(axis=1, dtype=np.float64).astype(np.float32)


def coverage(indices_other: np.ndarray, covered_mask: np.ndarray) -> float:
    """Share of a snapshot's stimulus incidences whose image vectors came straight from Eq 3.

    Args:
        indices_other: ``(n_neurons, k)`` stimuli of any snapshot.
        covered_mask: ``(n_images,)`` bool from :class:`ImageEmbedding`.

    Returns:
        Fraction in [0, 1].
    """
    mask = np.asarray(covered_mask, dtype=bool)
    idx = validate_indices(indices_other, mask.shape[0])
    return float(mask[idx].mean())


# ------------------------------------------------------------------------------------------------------------
# A vector for every image: the base model's response, calibrated on covered images.
# ------------------------------------------------------------------------------------------------------------

NORMALISATIONS = ("kth", "std")
DEFAULT_M_GRID = (1, 2, 3, 5, 10, 20, 50)
DEFAULT_TEMPERATURES = (0.03, 0.1, 0.3, 1.0, 3.0, math.inf)


@dataclass
class UncoveredRule:
    """Places an image on the base space from the base model's response to it.

    For image x with base responses ``a_n(x)`` (spatial max of neuron n's map):
    ``z_n(x) = (a_n(x) − μ_n) / s_n`` where μ_n is n's mean response over the dataset and s_n is either
    ``t_n − μ_n`` with t_n the n's k-th stimulus maximum (``"kth"``: z = 1 exactly at the stimulus
    threshold) or
    n's response standard deviation (``"std"``). With ``T`` the m neurons of largest z,
    ``v_x = α · Σ_{n∈T} softmax(z/τ)_n v_n`` (τ = ∞: plain mean).

    Attributes:
        normalisation: "kth" or "std".
        m: neurons averaged per image.
        temperature: τ of the softmax weights (``inf`` = uniform).
        scale: global factor α (least squares on the calibration images).
        shift: ``(n_neurons,)`` μ_n.
        spread: ``(n_neurons,)`` s_n (clipped away from 0).
        neuron_vectors: ``(n_neurons, dim)`` base neuron vectors v_n.
        train_rmse / heldout_rmse / heldout_r2: error vs Eq 3 vectors on calibration / held-out covered
            images.
        n_train / n_heldout: number of covered images in each fold.
        grid: ``{(normalisation, m, temperature): train_rmse}`` of every candidate tried.
    """

    normalisation: str
    m: int
    temperature: float
    scale: float
    shift: np.ndarray
    spread: np.ndarray
    neuron_vectors: np.ndarray
    train_rmse: float = float("nan")
    heldout_rmse: float = float("nan")
    heldout_r2: float = float("nan")
    n_train: int = 0
    n_heldout: int = 0
    grid: dict[tuple[str, int, float], float] = field(default_factory=dict)

    def top_m(self, responses: np.ndarray, m: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sparse top-m form of a block of responses.

        Args:
            responses: ``(b, n_neurons)`` raw responses of b images.
            m: how many neurons to keep (default ``self.m``).

        Returns:
            ``(ids (b, m) int64, z (b, m) float32)``: the neurons of largest normalised response, descending.
        """
        m = self.m if m is None else m
        z = (np.asarray(responses, dtype=np.float32) - self.shift) / self.spread
        return _top_m(z, m)

    def apply_sparse(self, ids: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Vectors from the top-m form (only the first ``self.m`` columns are used).

        Args:
            ids: ``(b, ≥m)`` neuron ids, descending z.
            z: ``(b, ≥m)`` normalised responses.

        Returns:
            ``(b, dim)`` float32 image vectors.
        """
        ids, z = ids[:, : self.m], np.asarray(z[:, : self.m], dtype=np.float64)
        w = _weights(z, self.temperature)
        out = np.einsum("bm,bmd->bd", w, self.neuron_vectors[ids].astype(np.float64))
        return (self.scale * out).astype(np.float32)

    def apply(
        self, responses: np.ndarray, rows: np.ndarray | None = None, chunk_rows: int = 4096
    ) -> np.ndarray:
        """Vectors for images from their full response rows, chunk by chunk.

        Memory: ``chunk_rows × n_neurons`` float32 of work space plus the ``(len(rows), dim)`` output, so
        ``responses`` may be a ``numpy.memmap`` far larger than RAM (only the requested rows are read).

        Args:
            responses: ``(n_images, n_neurons)`` (or a block of it).
            rows: which rows to embed (default: all).
            chunk_rows: rows processed at a time.

        Returns:
            ``(len(rows), dim)`` float32.
        """
        n_rows = responses.shape[0]
        rows = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.neuron_vectors.shape[1]), dtype=np.float32)
        for s in range(0, rows.size, chunk_rows):
            block = np.asarray(responses[rows[s : s + chunk_rows]], dtype=np.float32)
            out[s : s + chunk_rows] = self.apply_sparse(*self.top_m(block))
        return out


def _top_m(z: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    m = min(m, z.shape[1])
    part = (
        np.argpartition(-z, m - 1, axis=1)[:, :m]
        if m < z.shape[1]
        else np.tile(np.arange(z.shape[1]), (len(z), 1))
    )
    val = np.take_along_axis(z, part, axis=1)
    order = np.argsort(-val, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(val, order, axis=1)


def _weights(z: np.ndarray, temperature: float) -> np.ndarray:
    if math.isinf(temperature):
        return np.full(z.shape, 1.0 / z.shape[1])
    e = np.exp((z - z[:, :1]) / temperature)  # z is sorted descending: column 0 is the max
    return e / e.sum(axis=1, keepdims=True)


def neuron_response_stats(
    responses: np.ndarray, indices_base: np.ndarray, chunk_rows: int = 8192
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-neuron mean, standard deviation and k-th stimulus maximum of the base responses, in one
    chunked pass.

    Args:
        responses: ``(n_images, n_neurons)`` spatial maxima (array or memmap).
        indices_base: ``(n_neurons, k)`` base stimuli, best first.
        chunk_rows: rows read at a time.

    Returns:
        ``(mean, std, kth)`` each ``(n_neurons,)`` float64.
    """
    n_images, n_neurons = responses.shape
    s1 = np.zeros(n_neurons)
    s2 = np.zeros(n_neurons)
    for s in range(0, n_images, chunk_rows):
        block = np.asarray(responses[s : s + chunk_rows], dtype=np.float64)
        s1 += block.sum(axis=0)
        s2 += (block**2).sum(axis=0)
    mean = s1 / n_images
    std = np.sqrt(np.maximum(s2 / n_images - mean**2, 0.0))
    kth = np.asarray(responses[indices_base[:, -1], np.arange(n_neurons)], dtype=np.float64)
    return mean, std, kth


def fit_uncovered_rule(
    responses: np.ndarray,
    indices_base: np.ndarray,
    neuron_vectors: np.ndarray,
    embedding: ImageEmbedding,
    seed: int = 0,
    holdout: float = 0.2,
    m_grid: tuple[int, ...] = DEFAULT_M_GRID,
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES,
    max_calibration: int = 20_000,
    chunk_rows: int = 8192,
    log_level: int = logging.INFO,
) -> UncoveredRule:
    """Choose the response → vector rule for images outside the base stimuli, calibrated on covered images.

    Covered images are split at random into a calibration fold and a held-out fold (``holdout`` share). Every
    candidate (normalisation × m × temperature, each with its least-squares global scale α) is scored by RMSE
    against the Eq 3 vectors on the calibration fold; the best is reported with its RMSE and R² on the
    held-out fold.

    Args:
        responses: ``(n_images, n_neurons)`` base responses (spatial max per neuron per image); may be a
            memmap.
        indices_base: ``(n_neurons, k)`` base stimuli, best first.
        neuron_vectors: ``(n_neurons, dim)`` base neuron vectors.
        embedding: the Eq 3 solution (:func:`fit_image_embedding`).
        seed: seeds the fold split and the calibration subsample.
        holdout: share of covered images held out for the reported error.
        m_grid: candidate numbers of neurons.
        temperatures: candidate softmax temperatures (``inf`` = uniform weights).
        max_calibration: at most this many calibration images are used (subsampled).
        chunk_rows: rows read at a time for the per-neuron statistics.
        log_level: level of the log line reporting the choice (cross-validation fits many: DEBUG there).

    Returns:
        The chosen :class:`UncoveredRule`.

    Raises:
        ConceptEvoError: shapes disagree or fewer than 10 covered images.
    """
    n_images = embedding.vectors.shape[0]
    idx = validate_indices(indices_base, n_images)
    n_neurons = idx.shape[0]
    nv = _check_vectors(neuron_vectors, n_neurons, "neuron vectors").astype(np.float32)
    if responses.ndim != 2 or responses.shape != (n_images, n_neurons):
        raise ConceptEvoError(f"responses must be ({n_images}, {n_neurons}), got shape {responses.shape}")
    if not 0 < holdout < 1:
        raise ConceptEvoError(f"holdout must lie in (0, 1), got {holdout}")
    cov = np.flatnonzero(embedding.covered)
    if cov.size < 10:
        raise ConceptEvoError(
            f"only {cov.size} covered images: too few to calibrate the uncovered-image rule"
        )
    rng = np.random.default_rng(seed)
    cov = rng.permutation(cov)
    n_hold = max(1, int(round(holdout * cov.size)))
    held, train = np.sort(cov[:n_hold]), np.sort(cov[n_hold:][:max_calibration])
    mean, std, kth = neuron_response_stats(responses, idx, chunk_rows)
    eps = 1e-6 * max(1.0, float(np.abs(mean).max()))
    spreads = {"kth": np.maximum(kth - mean, eps), "std": np.maximum(std, eps)}
    m_grid = tuple(sorted({min(m, n_neurons) for m in m_grid if m >= 1}))
    if not m_grid:
        raise ConceptEvoError("m_grid must hold at least one m >= 1")
    m_max = m_grid[-1]
    y_train = embedding.vectors[train].astype(np.float64)
    train_resp = np.asarray(responses[train], dtype=np.float32)
    best: tuple[float, str, int, float, float] | None = None
    grid: dict[tuple[str, int, float], float] = {}
    for norm in NORMALISATIONS:
        z_full = (train_resp - mean.astype(np.float32)) / spreads[norm].astype(np.float32)
        ids, z = _top_m(z_full, m_max)
        z = z.astype(np.float64)
        for temp in temperatures:
            w = np.ones_like(z) if math.isinf(temp) else np.exp((z - z[:, :1]) / temp)
            num = np.zeros_like(y_train)
            den = np.zeros(len(train))
            for j in range(m_max):
                num += w[:, j : j + 1] * nv[ids[:, j]]
                den += w[:, j]
                if j + 1 in m_grid:
                    pred = num / den[:, None]
                    pp = float((pred * pred).sum())
                    alpha = float((pred * y_train).sum()) / pp if pp > 0 else 1.0
                    rmse = math.sqrt(float(((alpha * pred - y_train) ** 2).mean()))
                    grid[(norm, j + 1, temp)] = rmse
                    if best is None or rmse < best[0]:
                        best = (rmse, norm, j + 1, temp, alpha)
    assert best is not None
    rmse, norm, m, temp, alpha = best
    rule = UncoveredRule(
        normalisation=norm,
        m=m,
        temperature=temp,
        scale=alpha,
        shift=mean.astype(np.float32),
        spread=spreads[norm].astype(np.float32),
        neuron_vectors=nv,
        train_rmse=rmse,
        n_train=len(train),
        n_heldout=len(held),
        grid=grid,
    )
    y_held = embedding.vectors[held].astype(np.float64)
    pred_held = rule.apply(responses, held).astype(np.float64)
    ss_res = float(((pred_held - y_held) ** 2).sum())
    ss_tot = float(((y_held - y_held.mean(axis=0)) ** 2).sum())
    rule.heldout_rmse = math.sqrt(ss_res / y_held.size)
    rule.heldout_r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    log.log(
        log_level,
        "uncovered-image rule: %s, m=%d, τ=%s, α=%.3g; RMSE train %.3g, held-out %.3g (R² %.3f)",
        norm,
        m,
        temp,
        alpha,
        rmse,
        rule.heldout_rmse,
        rule.heldout_r2,
    )
    return rule


def image_vectors_for_all(
    embedding: ImageEmbedding, rule: UncoveredRule, responses: np.ndarray, chunk_rows: int = 4096
) -> np.ndarray:
    """A vector for every image: Eq 3 where covered, the calibrated response rule elsewhere.

    Args:
        embedding: Eq 3 solution.
        rule: :func:`fit_uncovered_rule` result.
        responses: ``(n_images, n_neurons)`` base responses (array or memmap; only uncovered rows are read,
            ``chunk_rows`` at a time).
        chunk_rows: rows per chunk.

    Returns:
        ``(n_images, dim)`` float32.
    """
    out = embedding.vectors.copy()
    if responses.shape[0] != out.shape[0]:
        raise ConceptEvoError(
            f"responses have {responses.shape[0]} rows but the space has {out.shape[0]} images"
        )
    rows = np.flatnonzero(~embedding.covered)
    if rows.size:
        out[rows] = rule.apply(responses, rows, chunk_rows)
    return out


# ------------------------------------------------------------------------------------------------------------
# Choosing the damping λ by held-out placement error of base neurons (cross-validation).
# ------------------------------------------------------------------------------------------------------------

DEFAULT_DAMPINGS = (1e-3, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
"""Candidate λ. The stimulus matrix of a small net is nearly singular, so λ → 0 returns image vectors of
huge norm that place unseen neurons badly; held-out error picks the damping instead of a constant."""


@dataclass
class DampingChoice:
    """The λ chosen by K-fold cross-validation over base neurons, and its held-out placement error.

    Attributes:
        damping: the chosen λ (largest held-out R²).
        heldout_r2: ``1 − Σ‖ṽ_n − v_n‖² / Σ‖v_n − mean v‖²`` over held-out base neurons of every fold, each
            placed by Eq 2 from image vectors fitted without it (uncovered images by the rule refitted on the
            fold).
        heldout_cosine: median cosine between a held-out neuron's Eq 2 placement and its Eq 1 vector.
        folds: number of folds.
        grid: ``{λ: (heldout_r2, heldout_cosine)}`` of every candidate.
    """

    damping: float
    heldout_r2: float
    heldout_cosine: float
    folds: int
    grid: dict[float, tuple[float, float]]

    def to_json(self) -> dict[str, float | int | list[list[float]]]:
        """The choice as plain JSON numbers (for the space's stats)."""
        return {
            "damping": float(self.damping),
            "heldout_r2": float(self.heldout_r2),
            "heldout_cosine": float(self.heldout_cosine),
            "folds": int(self.folds),
            "grid": [[float(lam), float(r2), float(c)] for lam, (r2, c) in sorted(self.grid.items())],
        }


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b`` (0 where either row is zero).

    Args:
        a, b: ``(n, dim)`` arrays.

    Returns:
        ``(n,)`` cosines.
    """
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def ridge_path(a: sp.csr_matrix, targets: np.ndarray, dampings: tuple[float, ...]) -> list[np.ndarray]:
    """``(AᵀA + λ² I)⁻¹ Aᵀ N = Aᵀ (A Aᵀ + λ² I)⁻¹ N`` for every λ from one dense eigendecomposition of the
    smaller Gram matrix: ``A Aᵀ`` (n_neurons²) or ``AᵀA`` (n_images²) — a ResNet's 4,000 neurons over a
    few hundred images would otherwise pay for a 4,000² decomposition per fold.

    Args:
        a: ``(n, n_images)`` stimulus matrix of the fold's training neurons.
        targets: ``(n, dim)`` their Eq 1 vectors.
        dampings: the λ values.

    Returns:
        One ``(n_images, dim)`` float64 solution per λ (same as :func:`fit_image_embedding`).
    """
    # One BLAS thread: a multi-threaded eigh of a few hundred rows runs ~100× slower on a loaded 2-core box.
    with threadpool_limits(limits=1, user_api="blas"):
        if a.shape[0] <= a.shape[1]:
            evals, evecs = np.linalg.eigh((a @ a.T).toarray())
            proj = evecs.T @ targets
            evals = np.maximum(evals, 0.0)
            return [np.asarray(a.T @ (evecs @ (proj / (evals + lam**2)[:, None]))) for lam in dampings]
        evals, evecs = np.linalg.eigh((a.T @ a).toarray())
        proj = evecs.T @ np.asarray(a.T @ targets)
        evals = np.maximum(evals, 0.0)
        return [evecs @ (proj / (evals + lam**2)[:, None]) for lam in dampings]


def fold_of_neurons(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """The cross-validation fold of each of ``n`` base neurons (as :func:`choose_damping` draws them)."""
    return np.random.default_rng(seed).permutation(n) % folds


def choose_damping(
    indices_base: np.ndarray,
    neuron_vectors: np.ndarray,
    responses: np.ndarray,
    dampings: tuple[float, ...] = DEFAULT_DAMPINGS,
    folds: int = 5,
    seed: int = 0,
    max_dense: int = 6000,
) -> DampingChoice:
    """Pick λ by K-fold cross-validation over base neurons: fit image vectors on the other folds, place the
    held-out neurons by Eq 2, score against their Eq 1 vectors.

    Images that no training neuron uses get the uncovered-image rule, refitted on each fold at the candidate
    λ with the (normalisation, m, τ) the rule chooses on the full base at the median candidate λ, so that its
    cost stays one calibration per fold and λ (only α is refitted).

    Args:
        indices_base: ``(n_neurons, k)`` base stimuli, best first.
        neuron_vectors: ``(n_neurons, dim)`` base Eq 1 vectors.
        responses: ``(n_images, n_neurons)`` base responses (may be a memmap).
        dampings: candidate λ (all > 0).
        folds: K (≥ 2; at most the number of neurons).
        seed: seeds the fold assignment.
        max_dense: above this many training neurons each fold solves by sparse LU per λ instead of one
            dense eigendecomposition.

    Returns:
        The :class:`DampingChoice`.

    Raises:
        ConceptEvoError: bad shapes, no candidate, a λ ≤ 0 or fewer neurons than folds.
    """
    n_images = responses.shape[0]
    idx = validate_indices(indices_base, n_images)
    n = idx.shape[0]
    nv = _check_vectors(neuron_vectors, n, "neuron vectors").astype(np.float64)
    if not dampings or min(dampings) <= 0:
        raise ConceptEvoError(f"dampings must be a non-empty list of λ > 0, got {dampings}")
    if not 2 <= folds <= n:
        raise ConceptEvoError(f"folds must lie in [2, {n}] (the number of base neurons), got {folds}")
    reference = fit_image_embedding(idx, nv, n_images, damping=float(np.median(dampings)))
    shape = fit_uncovered_rule(responses, idx, nv, reference, seed=seed, log_level=logging.DEBUG)
    assign = fold_of_neurons(n, folds, seed)
    sq_err = np.zeros(len(dampings))
    cosines: list[list[np.ndarray]] = [[] for _ in dampings]
    for fold in range(folds):
        held, train = np.flatnonzero(assign == fold), np.flatnonzero(assign != fold)
        a = stimulus_matrix(idx[train], n_images)
        if len(train) <= max_dense:
            solutions = ridge_path(a, nv[train], dampings)
        else:
            solutions = [
                fit_image_embedding(idx[train], nv[train], n_images, lam).vectors.astype(np.float64)
                for lam in dampings
            ]
        covered = np.zeros(n_images, dtype=bool)
        covered[idx[train].ravel()] = True
        train_resp = responses[:, train]
        for j, v in enumerate(solutions):
            emb = ImageEmbedding(vectors=v.astype(np.float32), covered=covered, rmse=math.nan, r2=math.nan)
            if covered[idx[held]].all():
                every = emb.vectors
            else:
                rule = fit_uncovered_rule(
                    train_resp,
                    idx[train],
                    nv[train],
                    emb,
                    seed=seed,
                    m_grid=(shape.m,),
                    temperatures=(shape.temperature,),
                    log_level=logging.DEBUG,
                )
                every = image_vectors_for_all(emb, rule, train_resp)
            placed = neuron_vectors_from_stimuli(idx[held], every).astype(np.float64)
            sq_err[j] += float(((placed - nv[held]) ** 2).sum())
            cosines[j].append(row_cosines(placed, nv[held]))
    ss_tot = float(((nv - nv.mean(axis=0)) ** 2).sum())
    r2 = 1.0 - sq_err / ss_tot if ss_tot > 0 else np.full(len(dampings), np.nan)
    med = [float(np.median(np.concatenate(c))) for c in cosines]
    best = int(np.nanargmax(r2)) if np.isfinite(r2).any() else 0
    grid = {float(lam): (float(r2[j]), med[j]) for j, lam in enumerate(dampings)}
    log.info(
        "damping by %d-fold CV: λ = %g, held-out R² %.3f, median cosine %.3f",
        folds,
        dampings[best],
        r2[best],
        med[best],
    )
    return DampingChoice(
        damping=float(dampings[best]),
        heldout_r2=float(r2[best]),
        heldout_cosine=med[best],
        folds=folds,
        grid=grid,
    )
