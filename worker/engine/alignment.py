"""Alignment of a neuron space measured against ground truth instead of asked of people (paper §4.2, Fig 5).

The demo world knows every image's concepts (``attributes.json``: shape, colour, texture, background). So:

1. **Ground-truth labels** (:func:`label_neurons`): a neuron's label for attribute ``a`` is the majority value of
   ``a`` over its k stimuli (ties: the lower value code), its **purity** the share of stimuli having that value;
   ``shares[n, a, v]`` is the share of neuron n's stimuli whose attribute ``a`` is ``v``.
2. **kNN agreement** (:func:`knn_agreement`): for each query neuron, its k nearest candidates in a space; the
   mean over neighbours and attributes of [neighbour's label == query's label].
3. **Simulated intruder test** (:func:`intruder_auc`), the paper's questionnaire (Fig 4) with a ground-truth judge:
   a group is a query neuron, its 4 nearest candidates and one random candidate (the intruder). The judge scores
   each member by how well it fits the *other five*: the mean over attributes of the member's share of the others'
   consensus value (the value with the largest summed share among the other five). Members are positives, the
   intruder the negative; the ROC AUC over all groups is the Fig-5 number. A space that groups nothing (shuffled)
   scores ≈ 0.5.

Pure numpy; the settings (which queries, which candidates) are the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from worker.errors import ConceptEvoError

#: The categorical ground-truth attributes of a demo image used for labels.
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "texture", "background")
#: Group size of the paper's questionnaire: five similar neurons (the query and 4 neighbours) + one intruder.
GROUP = 5


@dataclass(frozen=True)
class NeuronLabels:
    """Ground-truth labels of neurons from their stimuli.

    Attributes:
        values: ``(n, A)`` int majority value code per attribute.
        purity: ``(n, A)`` share of stimuli having that value.
        shares: ``(n, A, V)`` share of stimuli per value (V = the largest vocabulary).
    """

    values: np.ndarray
    purity: np.ndarray
    shares: np.ndarray

    def take(self, rows: np.ndarray) -> NeuronLabels:
        """The labels of ``rows`` only (in that order)."""
        return NeuronLabels(self.values[rows], self.purity[rows], self.shares[rows])

    @staticmethod
    def concat(parts: Sequence[NeuronLabels]) -> NeuronLabels:
        """The labels of several neuron sets, end to end."""
        return NeuronLabels(
            np.concatenate([p.values for p in parts]),
            np.concatenate([p.purity for p in parts]),
            np.concatenate([p.shares for p in parts]),
        )


def attribute_codes(
    records: Sequence[dict], attributes: Sequence[str] = ATTRIBUTES
) -> tuple[np.ndarray, list[list[str]]]:
    """Per image and attribute, the code of its value (codes follow the sorted vocabulary).

    Args:
        records: one attributes record per image, in dataset order.
        attributes: which attributes.

    Returns:
        ``(codes (n_images, A) int32, vocabulary per attribute)``.

    Raises:
        ConceptEvoError: a record lacks an attribute.
    """
    vocab: list[list[str]] = []
    codes = np.zeros((len(records), len(attributes)), dtype=np.int32)
    for a, name in enumerate(attributes):
        try:
            column = [str(r[name]) for r in records]
        except KeyError:
            raise ConceptEvoError(f"an image record has no {name!r} attribute") from None
        values = sorted(set(column))
        index = {v: i for i, v in enumerate(values)}
        codes[:, a] = [index[v] for v in column]
        vocab.append(values)
    return codes, vocab


def label_neurons(stimuli: np.ndarray, codes: np.ndarray) -> NeuronLabels:
    """Label each neuron by the majority value of each attribute over its stimuli.

    Args:
        stimuli: ``(n, k)`` image indices of each neuron's stimuli.
        codes: ``(n_images, A)`` value codes (:func:`attribute_codes`).

    Returns:
        :class:`NeuronLabels`.

    Raises:
        ConceptEvoError: a stimulus index outside the images.
    """
    stimuli = np.asarray(stimuli, dtype=np.int64)
    if stimuli.ndim != 2 or stimuli.shape[1] == 0:
        raise ConceptEvoError(f"stimuli must be an (n_neurons, k) array, got shape {stimuli.shape}")
    if stimuli.size and (stimuli.min() < 0 or stimuli.max() >= codes.shape[0]):
        raise ConceptEvoError(f"a stimulus index is outside the {codes.shape[0]} images with attributes")
    n, k = stimuli.shape
    n_attr = codes.shape[1]
    n_values = int(codes.max()) + 1 if codes.size else 1
    picked = codes[stimuli]  # (n, k, A)
    counts = np.zeros((n, n_attr, n_values))
    rows = np.repeat(np.arange(n), k * n_attr)
    cols = np.tile(np.arange(n_attr), n * k)
    np.add.at(counts, (rows, cols, picked.reshape(-1)), 1.0)
    shares = counts / k
    values = shares.argmax(axis=2)  # first maximum: the lower code wins a tie
    purity = np.take_along_axis(shares, values[..., None], axis=2)[..., 0]
    return NeuronLabels(values.astype(np.int32), purity, shares)


def nearest(
    queries: np.ndarray, candidates: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """The ``k`` nearest candidates (Euclidean) of each query, nearest first.

    Args:
        queries: ``(q, d)`` vectors.
        candidates: ``(c, d)`` vectors.
        k: neighbours per query (at most the candidates not excluded).
        exclude: optional ``(q, c)`` bool, True where a candidate may not be a query's neighbour.

    Returns:
        ``(q, k)`` candidate indices.

    Raises:
        ConceptEvoError: fewer than ``k`` candidates left for some query.
    """
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(candidates, dtype=np.float64)
    d2 = (q * q).sum(1)[:, None] - 2.0 * q @ c.T + (c * c).sum(1)[None, :]
    if exclude is not None:
        d2 = np.where(exclude, np.inf, d2)
    available = np.isfinite(d2).sum(axis=1)
    if available.size and available.min() < k:
        raise ConceptEvoError(f"only {int(available.min())} candidate neurons for {k} neighbours")
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(d2, part, axis=1).argsort(axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def knn_agreement(query_values: np.ndarray, candidate_values: np.ndarray, neighbours: np.ndarray) -> float:
    """Mean over queries, neighbours and attributes of [neighbour's label == query's label].

    Args:
        query_values: ``(q, A)`` label codes of the queries.
        candidate_values: ``(c, A)`` label codes of the candidates.
        neighbours: ``(q, k)`` candidate indices (:func:`nearest`).

    Returns:
        The agreement in [0, 1].
    """
    same = candidate_values[neighbours] == query_values[:, None, :]
    return float(same.mean())


def chance_agreement(query_values: np.ndarray, candidate_values: np.ndarray) -> float:
    """The agreement expected of random neighbours: per attribute, ``sum_v P_q(v) P_c(v)``, averaged."""
    out = []
    for a in range(query_values.shape[1]):
        n_values = int(max(query_values[:, a].max(), candidate_values[:, a].max())) + 1
        pq = np.bincount(query_values[:, a], minlength=n_values) / len(query_values)
        pc = np.bincount(candidate_values[:, a], minlength=n_values) / len(candidate_values)
        out.append(float(pq @ pc))
    return float(np.mean(out))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney U / (n+ n−), ties counted half).

    Raises:
        ConceptEvoError: no positives or no negatives.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ConceptEvoError("ROC AUC needs both positives and negatives")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def judge_groups(shares: np.ndarray) -> np.ndarray:
    """The ground-truth judge: each member's fit to the consensus of the other members of its group.

    Args:
        shares: ``(g, m, A, V)`` value shares of the m members of g groups.

    Returns:
        ``(g, m)`` score: mean over attributes of the member's share of the others' consensus value.
    """
    total = shares.sum(axis=1, keepdims=True)
    others = total - shares
    consensus = others.argmax(axis=3)  # (g, m, A)
    return np.take_along_axis(shares, consensus[..., None], axis=3)[..., 0].mean(axis=2)


def intruder_auc(
    query_shares: np.ndarray,
    candidate_shares: np.ndarray,
    neighbours: np.ndarray,
    rng: np.random.Generator,
    exclude: np.ndarray | None = None,
) -> float:
    """The simulated intruder test: ROC AUC of the judge telling a group's members from its intruder.

    Args:
        query_shares: ``(q, A, V)`` shares of the queries.
        candidate_shares: ``(c, A, V)`` shares of the candidates.
        neighbours: ``(q, >= GROUP-1)`` nearest candidates of each query (the first GROUP-1 are used).
        rng: draws each group's intruder among the candidates not in the group (nor excluded).
        exclude: optional ``(q, c)`` bool of candidates that may not be a query's intruder.

    Returns:
        The AUC in [0, 1].
    """
    members = neighbours[:, : GROUP - 1]
    n_q, n_c = members.shape[0], candidate_shares.shape[0]
    allowed = np.ones((n_q, n_c), dtype=bool) if exclude is None else ~exclude
    allowed[np.arange(n_q)[:, None], members] = False
    # A uniform allowed candidate per query: the argmax of random keys over the allowed ones.
    keys = np.where(allowed, rng.random((n_q, n_c)), -1.0)
    intruders = keys.argmax(axis=1)
    group = np.concatenate(
        [query_shares[:, None], candidate_shares[members], candidate_shares[intruders][:, None]], axis=1
    )
    scores = judge_groups(group)
    truth = np.zeros_like(scores, dtype=bool)
    truth[:, :GROUP] = True
    return roc_auc(scores, truth)


def shuffled(labels: NeuronLabels, rng: np.random.Generator) -> NeuronLabels:
    """The labels dealt to the neurons at random: the geometry of a space that groups nothing."""
    return labels.take(rng.permutation(labels.values.shape[0]))
