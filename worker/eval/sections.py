"""Each finding of the report, computed from :class:`~worker.eval.inputs.EvalInputs` with the pure engine.

Every function returns a JSON-ready dict (the section of ``results.json``); none touches the store or the disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from worker.engine.alignment import (
    GROUP,
    NeuronLabels,
    chance_agreement,
    intruder_auc,
    knn_agreement,
    label_neurons,
    nearest,
    shuffled,
)
from worker.engine.health import movement
from worker.engine.milestones import epochs_at_milestones
from worker.engine.reversion import BIN_LABELS, METRICS, ReversionTable, rank_bins
from worker.engine.ties import tied_stimuli, ties_per_layer
from worker.engine.warning import assess_run
from worker.errors import ConceptEvoError
from worker.eval.inputs import EvalInputs, SnapshotData

#: Accuracy milestones of the paper's footnote 1 (train top-1).
MILESTONES = (0.25, 0.5, 0.75)
#: Neighbours of the kNN agreement, and the values of k and dim the sensitivity plot sweeps.
KNN_K = 10
SENSITIVITY_K = (5, 10, 15, 20, 30)
SENSITIVITY_DIM = (5, 10, 30, 100)
#: Epochs per run the alignment pools (and their baselines) use at most: evenly spread, last included.
ALIGNMENT_EPOCHS = 4


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def milestone_epochs(records: Sequence[dict[str, Any]]) -> list[int]:
    """The epochs whose train top-1 is closest to 25 %, 50 %, 75 % (the paper's footnote), over records that
    have one."""
    history = [r for r in records if _finite(r.get("train_top1")) is not None]
    return epochs_at_milestones(history, MILESTONES, key="train_top1")


def milestone_stages(epochs: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive milestone pairs ``(t, t')`` with ``t < t'`` (milestones falling on one epoch merge)."""
    distinct = sorted(set(epochs))
    return list(zip(distinct, distinct[1:], strict=False))


# ---- 1. reversion ----------------------------------------------------------------------------------------------


def order_holds(table: dict[str, Any], metric: str = "train_top1") -> bool:
    """The paper's ordering (Table 1): reverting the most important quarter lowers accuracy the most — more than
    each other quarter and more than a random quarter."""
    column = table["columns"].index(metric)
    mean = np.asarray(table["mean"])[:, column]
    most, others, random = mean[0], mean[1:4], mean[4]
    return bool(most < others.min() and most < random)


def reversion_section(
    stages: Sequence[tuple[int, int]], tables: Sequence[ReversionTable], channels: dict[str, int]
) -> dict[str, Any]:
    """Table 1 per stage with its verdict; ``bins`` gives each layer's bin sizes (they partition the layer)."""
    out = []
    for (t, t2), table in zip(stages, tables, strict=True):
        data = table.to_dict()
        data.update(
            epoch_from=t,
            epoch_to=t2,
            order_holds={metric: order_holds(data, metric) for metric in METRICS},
            markdown=table.to_markdown(),
        )
        out.append(data)
    bins = {
        name: [int(len(b)) for b in rank_bins(np.zeros(c))] + [int(round(c * 0.25))]
        for name, c in channels.items()
    }
    return {"stages": out, "bins": bins, "channels": channels, "rows": list(BIN_LABELS)}


# ---- 2. diversity, 3. movement -----------------------------------------------------------------------------------


def diversity_section(inputs: EvalInputs) -> dict[str, Any]:
    """Diversity per epoch of every run and the early-warning rule (warning.ts) against the base run."""
    reference = inputs.metrics[inputs.base_run]
    runs = {
        name: [
            {
                "epoch": r["epoch"],
                "diversity": r["diversity"],
                "val_top1": r["val_top1"],
                "computed": r["computed"],
            }
            for r in records
        ]
        for name, records in inputs.metrics.items()
    }
    warnings = {}
    for name, records in inputs.metrics.items():
        if name == inputs.base_run:
            continue
        a = assess_run(records, reference)
        warnings[name] = {
            "kind": a.kind,
            "early_warning": a.early_warning,
            "diversity_epoch": a.diversity_epoch,
            "accuracy_epoch": a.accuracy_epoch,
            "accuracy": a.accuracy,
            "lead_epochs": a.lead,
            "threshold": a.threshold,
            "collapsed": a.collapsed,
        }
    return {"reference": inputs.base_run, "runs": runs, "warnings": warnings, "seeds": 1}


def movement_section(inputs: EvalInputs) -> dict[str, Any]:
    """Mean movement of neuron vectors between each run's own accuracy milestones (computed epochs nearest them),
    and the mean per-epoch movement stored for the run."""
    out = {}
    for name, records in inputs.metrics.items():
        computed = inputs.epochs(name)
        if len(computed) < 2:
            continue
        try:
            wanted = milestone_epochs(records)
        except ConceptEvoError:
            wanted = []
        epochs = sorted({min(computed, key=lambda e, w=w: (abs(e - w), e)) for w in wanted})
        stages = []
        for t, t2 in zip(epochs, epochs[1:], strict=False):
            a, b = inputs.snapshots[(name, t)], inputs.snapshots[(name, t2)]
            mean, _ = movement(a.states.vectors, b.states.vectors)
            stages.append({"epoch_from": t, "epoch_to": t2, "mean": mean})
        steps = [r["movement"] for r in records if _finite(r["movement"]) is not None]
        out[name] = {
            "milestones": epochs,
            "stages": stages,
            "milestone_mean": float(np.mean([s["mean"] for s in stages])) if stages else None,
            "per_epoch": [{"epoch": r["epoch"], "movement": r["movement"]} for r in records],
            "per_epoch_mean": float(np.mean(steps)) if steps else None,
        }
    return out


# ---- 6. tied stimuli ----------------------------------------------------------------------------------------------


def ties_section(inputs: EvalInputs) -> dict[str, Any]:
    """Share of neurons whose k stimuli all tie, per run, epoch and layer, by the rule of
    :mod:`worker.engine.ties` applied to the stored maxima (so snapshots computed before the tie flag count too)."""
    out: dict[str, Any] = {}
    for (name, epoch), snap in sorted(inputs.snapshots.items()):
        layers = inputs.layers[name]
        tied = tied_stimuli(snap.states.maxima)
        counts = np.asarray(ties_per_layer(tied, snap.layer_of, len(layers)), dtype=np.float64)
        sizes = np.bincount(snap.layer_of, minlength=len(layers))[: len(layers)]
        shares = np.where(sizes > 0, counts / np.maximum(sizes, 1), np.nan)
        out.setdefault(name, []).append(
            {
                "epoch": epoch,
                "share": float(tied.mean()),
                "layers": {layer: _finite(v) for layer, v in zip(layers, shares.tolist(), strict=True)},
            }
        )
    return out


# ---- 4. alignment, 5. sensitivity ----------------------------------------------------------------------------------


def alignment_snapshots(inputs: EvalInputs, per_run: int = ALIGNMENT_EPOCHS) -> list[SnapshotData]:
    """The snapshots the alignment pools use: per run up to ``per_run`` computed epochs, evenly spread, the last
    and (for the base run) the base epoch included."""
    chosen = []
    for name in inputs.metrics:
        epochs = inputs.epochs(name)
        if not epochs:
            continue
        picks = {epochs[round(i)] for i in np.linspace(0, len(epochs) - 1, min(per_run, len(epochs)))}
        if name == inputs.base_run and inputs.base_epoch in epochs:
            picks.add(inputs.base_epoch)
        chosen.extend(inputs.snapshots[(name, e)] for e in sorted(picks))
    return chosen


class Pool:
    """The neurons of several snapshots end to end, with who they are (for the settings' exclusions)."""

    def __init__(self, snapshots: Sequence[SnapshotData], labels: Sequence[NeuronLabels]) -> None:
        self.snapshots = list(snapshots)
        self.labels = NeuronLabels.concat(labels)
        self.snap = np.concatenate([np.full(len(s.rows), i) for i, s in enumerate(self.snapshots)])
        runs = sorted({s.run for s in self.snapshots})
        self.run = np.concatenate([np.full(len(s.rows), runs.index(s.run)) for s in self.snapshots])
        self.identity = np.concatenate([s.rows for s in self.snapshots]) + 1_000_000 * self.run

    def vectors(self, geometry: dict[int, np.ndarray]) -> np.ndarray:
        """The pool's vectors in a geometry (snapshot id → ``(n, d)`` in the snapshot's state order)."""
        return np.concatenate([geometry[s.snapshot_id] for s in self.snapshots])


def _setting_masks(pool: Pool, setting: str, base_index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(queries allowed (n,), exclude (n, n))`` of a setting on the pool."""
    n = len(pool.snap)
    same = np.eye(n, dtype=bool)
    if setting == "within_base":
        inside = pool.snap == base_index
        return inside, ~inside[None, :] | same
    if setting == "within_model":
        inside = pool.run == pool.run[base_index_run(pool, base_index)]
        exclude = (
            ~inside[None, :]
            | (pool.snap[:, None] == pool.snap[None, :])
            | (pool.identity[:, None] == pool.identity)
        )
        return inside, exclude
    # across: neighbours from other models, any epoch
    return np.ones(n, dtype=bool), pool.run[:, None] == pool.run[None, :]


def base_index_run(pool: Pool, base_index: int) -> int:
    """A pool row of the base snapshot."""
    return int(np.flatnonzero(pool.snap == base_index)[0])


def score_geometry(
    pool: Pool,
    vectors: np.ndarray,
    setting: str,
    base_index: int,
    queries: int,
    seed: int,
    k: int = KNN_K,
    labels: NeuronLabels | None = None,
) -> dict[str, float] | None:
    """kNN agreement and intruder AUC of one geometry in one setting (None when the setting has no queries)."""
    allowed, exclude = _setting_masks(pool, setting, base_index)
    labels = labels or pool.labels
    rng = np.random.default_rng([seed, len(setting)])
    candidates = np.flatnonzero(allowed)
    enough = (~exclude[candidates]).sum(axis=1) >= max(k, GROUP)
    candidates = candidates[enough]
    if candidates.size == 0:
        return None
    picked = np.sort(rng.choice(candidates, size=min(queries, candidates.size), replace=False))
    nbrs = nearest(vectors[picked], vectors, max(k, GROUP - 1), exclude[picked])
    agreement = knn_agreement(labels.values[picked], labels.values, nbrs[:, :k])
    auc = intruder_auc(labels.shares[picked], labels.shares, nbrs, rng, exclude[picked])
    return {"agreement": agreement, "auc": auc, "queries": int(picked.size)}


def alignment_section(
    inputs: EvalInputs,
    codes: np.ndarray,
    geometries: dict[str, dict[int, np.ndarray]],
    queries: int,
    seed: int,
    progress: Callable[[float, str], None] | None = None,
    per_run: int = ALIGNMENT_EPOCHS,
) -> tuple[dict[str, Any], Pool]:
    """Agreement and AUC per setting and geometry (the unified space, its shuffled baseline and the baselines).

    Args:
        inputs: the store's data.
        codes: ``(n_images, A)`` attribute value codes of the space's images.
        geometries: name → (snapshot id → vectors in state order); must hold ``"unified"``.
        queries: query neurons per setting.
        seed: seeds the samples and the shuffle.
        progress: optional ``f(fraction, message)``.
        per_run: epochs per run in the pools (:func:`alignment_snapshots`).
    """
    snaps = alignment_snapshots(inputs, per_run)
    labels = [label_neurons(s.states.stimuli, codes) for s in snaps]
    pool = Pool(snaps, labels)
    base_index = next(
        i for i, s in enumerate(snaps) if (s.run, s.epoch) == (inputs.base_run, inputs.base_epoch)
    )
    settings = ("within_base", "within_model", "across")
    results: dict[str, Any] = {}
    steps = len(settings) * (len(geometries) + 1)
    done = 0
    for setting in settings:
        row: dict[str, Any] = {}
        for name, geometry in geometries.items():
            row[name] = score_geometry(pool, pool.vectors(geometry), setting, base_index, queries, seed)
            done += 1
            if progress:
                progress(done / steps, f"alignment {setting}: {name}")
        row["shuffled"] = score_geometry(
            pool,
            pool.vectors(geometries["unified"]),
            setting,
            base_index,
            queries,
            seed,
            labels=shuffled(pool.labels, np.random.default_rng([seed, 7])),
        )
        done += 1
        results[setting] = row
    purity = pool.labels.purity
    return {
        "settings": results,
        "chance_agreement": chance_agreement(pool.labels.values, pool.labels.values),
        "mean_purity": float(purity.mean()),
        "snapshots": [{"run": s.run, "epoch": s.epoch} for s in snaps],
        "k": KNN_K,
    }, pool


def sensitivity_k(
    pool: Pool, geometry: dict[int, np.ndarray], base_index: int, queries: int, seed: int
) -> dict:
    """Agreement of the unified space across models and epochs, and within the base model, for each k."""
    vectors = pool.vectors(geometry)
    out: dict[str, list[float | None]] = {}
    for setting in ("within_base", "across"):
        scores = [
            score_geometry(pool, vectors, setting, base_index, queries, seed, k=k) for k in SENSITIVITY_K
        ]
        out[setting] = [s["agreement"] if s else None for s in scores]
    return {"k": list(SENSITIVITY_K), **out}
