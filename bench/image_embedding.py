"""Benchmark: the Eq 3 least-squares solve for image vectors at VGG16 scale, and the every-image rule.

VGG16-like synthetic base: 4,224 neurons, k = 10 (42,240 stimulus incidences) over 50,000 images, neurons in
100 concept groups sharing 100-image pools (a clustered, harder structure for the sparse factorisation than
ImageNet's mostly distinct stimuli), plus a second case with stimuli drawn uniformly (ImageNet-like); dim
30. Reports the solve time (median of alternating repeats), RMSE and R² of the Eq 3 fit. With ``--rule``
(off in ``--quick``) it also calibrates the uncovered-image rule on a synthetic response matrix and reports
its held-out error and the time to give all 50,000 images a vector.

Usage: ``.venv/bin/python bench/image_embedding.py [--quick]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "worker" / "engine"))

from oracles_space import grouped_stimuli  # noqa: E402

from worker.engine.image_embedding import (  # noqa: E402
    fit_image_embedding,
    fit_uncovered_rule,
    image_vectors_for_all,
)


def _neuron_vectors(groups: np.ndarray, n_groups: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(0, 1, (n_groups, dim))
    return (centres[groups] + 0.3 * rng.normal(0, 1, (len(groups), dim))).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no rule calibration")
    ap.add_argument("--rule", action="store_true", help="also calibrate and apply the uncovered-image rule")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n_neurons, k, n_images, dim, n_groups = 4224, 10, 50_000, 30, 100
    rng = np.random.default_rng(0)
    idx_g, groups, pools = grouped_stimuli(n_neurons, k, n_images, n_groups, 100, rng)
    nv = _neuron_vectors(groups, n_groups, dim, rng)
    idx_u = np.stack([rng.choice(n_images, k, replace=False) for _ in range(n_neurons)])
    reps = 2 if args.quick else 4
    times: dict[str, list[float]] = {"grouped": [], "uniform": []}
    fits = {}
    for _ in range(reps):  # alternate A B A B
        for name, idx in (("grouped", idx_g), ("uniform", idx_u)):
            t = time.perf_counter()
            fits[name] = fit_image_embedding(idx, nv, n_images)
            times[name].append(time.perf_counter() - t)
    out = {
        "neurons": n_neurons,
        "k": k,
        "images": n_images,
        "dim": dim,
        "vgg16_s": round(float(np.median(times["grouped"])), 4),
        "rmse": round(fits["grouped"].rmse, 6),
        "r2": round(fits["grouped"].r2, 6),
        "covered": int(fits["grouped"].covered.sum()),
        "vgg16_uniform_s": round(float(np.median(times["uniform"])), 4),
        "rmse_uniform": round(fits["uniform"].rmse, 6),
        "r2_uniform": round(fits["uniform"].r2, 6),
    }
    if args.rule and not args.quick:
        # synthetic base responses: each neuron fires on its group's pool; stimuli = its top-k
        resp = rng.normal(0, 0.3, (n_images, n_neurons)).astype(np.float32)
        for g in range(n_groups):
            cols = np.flatnonzero(groups == g)
            resp[np.ix_(pools[g], cols)] += 2.0 + rng.random((len(pools[g]), len(cols))).astype(np.float32)
        idx_r = np.argsort(-resp, axis=0)[:k].T.copy()
        emb = fit_image_embedding(idx_r, nv, n_images)
        t = time.perf_counter()
        rule = fit_uncovered_rule(resp, idx_r, nv, emb, seed=0)
        t_fit = time.perf_counter() - t
        t = time.perf_counter()
        allv = image_vectors_for_all(emb, rule, resp)
        t_all = time.perf_counter() - t
        out.update(
            {
                "rule": f"{rule.normalisation}, m={rule.m}, tau={rule.temperature}, alpha={rule.scale:.3g}",
                "rule_heldout_rmse": round(rule.heldout_rmse, 5),
                "rule_heldout_r2": round(rule.heldout_r2, 4),
                "rule_fit_s": round(t_fit, 3),
                "all_images_s": round(t_all, 3),
                "all_finite": bool(np.isfinite(allv).all()),
            }
        )
    out["goal_vgg16_s_met"] = out["vgg16_s"] <= 5
    print(json.dumps(out))


if __name__ == "__main__":
    main()
