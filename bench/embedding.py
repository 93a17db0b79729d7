"""Benchmark: vectorised neuron-embedding SGD (Eq 1, 12–13) vs Algorithm 1 one pair at a time.

Part 1 — same D, same negatives, same start: Algorithm 1 literally (one pair at a time, numpy over the
embedding dimension only) on a slice of D, its time extrapolated per pair, vs the vectorised ``sgd_pass`` on
the whole D; both are then run for the same epochs on a small D and their Eq 1 objectives compared. Part 2 —
VGG16-scale synthetic base model: 4,224 neurons, k = 10, 50,000 images, neurons in 100 concept groups
sharing 100-image pools (|D| ≈ 32,000 pairs per epoch), dim 30, R = 3: seconds per epoch (pairing included)
and the extrapolation to E = 10,000 epochs.

Usage: ``.venv/bin/python bench/embedding.py [--quick] [--device cuda]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "worker" / "engine"))

from oracles_space import algorithm1_literal, grouped_stimuli  # noqa: E402

from worker.engine.neuron_embedding import (  # noqa: E402
    _HAVE_NUMBA,
    algorithm1_pass,
    init_vectors,
    objective,
    sgd_pass,
    train_neuron_embedding,
)
from worker.engine.pairs import coactivated_pairs  # noqa: E402

log = logging.getLogger("bench.embedding")


def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-x))


def algorithm1_per_pair(v: np.ndarray, d: np.ndarray, negs: np.ndarray, lr: float) -> None:
    """Algorithm 1's inner loop, one pair at a time (Eq 12, then Eq 13 with the new v_n), in place."""
    for i in range(len(d)):
        n, m = int(d[i, 0]), int(d[i, 1])
        vn, vm = v[n], v[m]
        vr = v[negs[i]]
        g_n = (1 - _sigmoid(vn @ vm)) * vm - _sigmoid(vr @ vn) @ vr
        vn = vn + lr * g_n
        g_m = (1 - _sigmoid(vn @ vm)) * vn - _sigmoid(vr @ vm) @ vr
        vm = vm + lr * g_m
        v[n] = vn
        v[m] = vm


def part1(quick: bool, device: torch.device, batch_size: int) -> dict:
    rng = np.random.default_rng(0)
    n_neurons, n_images = 1024, 12_000
    idx, _, _ = grouped_stimuli(n_neurons, 10, n_images, 40, 60, rng)
    d = coactivated_pairs(idx, n_images, rng)
    negs = rng.integers(0, n_neurons, (len(d), 3))
    v0 = init_vectors(n_neurons, 30, seed=0)
    # literal rate on a slice of D
    n_slice = 1_000 if quick else 5_000
    v_lit = v0.double().numpy().copy()
    t = time.perf_counter()
    algorithm1_per_pair(v_lit, d[:n_slice], negs[:n_slice], 0.05)
    lit_rate = n_slice / (time.perf_counter() - t)
    # the oracle of the tests: pure Python (no numpy in the inner products), on a smaller slice
    n_py = 200 if quick else 1_000
    t = time.perf_counter()
    algorithm1_literal(v0.double().numpy(), [d[:n_py]], [negs[:n_py]], 0.05)
    py_rate = n_py / (time.perf_counter() - t)
    # vectorised rate on the whole D (median of several passes)
    v = v0.to(device)
    dt, nt = torch.as_tensor(d, device=device), torch.as_tensor(negs, device=device)
    sgd_pass(v, dt, nt, 0.05, batch_size)  # warm-up
    times = []
    for _ in range(5 if quick else 15):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        sgd_pass(v, dt, nt, 0.05, batch_size)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    torch_rate = len(d) / float(np.median(times))
    numba_rate = float("nan")
    if device.type == "cpu" and _HAVE_NUMBA:
        v64 = v0.double().numpy().copy()
        algorithm1_pass(v64, d[:10], negs[:10], 0.05)  # compile / load from cache
        nt_times = []
        for _ in range(5 if quick else 15):
            t = time.perf_counter()
            algorithm1_pass(v64, d, negs, 0.05)
            nt_times.append(time.perf_counter() - t)
        numba_rate = len(d) / float(np.median(nt_times))
    use_numba = math.isfinite(numba_rate)
    vec_rate = numba_rate if use_numba else torch_rate
    # objective reached with the same D and negatives, same epochs, same start (small case)
    idx_s, _, _ = grouped_stimuli(256, 10, 3000, 16, 40, rng)
    epochs = 3 if quick else 10
    d_ep = [coactivated_pairs(idx_s, 3000, rng) for _ in range(epochs)]
    n_ep = [rng.integers(0, 256, (len(x), 3)) for x in d_ep]
    vs0 = init_vectors(256, 30, seed=1)
    v_lit = vs0.double().numpy().copy()
    v_vec = vs0.clone().to(device)
    v_nb = vs0.double().numpy().copy()
    for de, ne in zip(d_ep, n_ep, strict=True):
        algorithm1_per_pair(v_lit, de, ne, 0.05)
        sgd_pass(v_vec, torch.as_tensor(de, device=device), torch.as_tensor(ne, device=device), 0.05, 256)
        if use_numba:
            algorithm1_pass(v_nb, de, ne, 0.05)
    d_eval = np.tile(np.concatenate(d_ep), (4, 1))
    n_eval = rng.integers(0, 256, (len(d_eval), 3))
    return {
        "part1_pairs": int(len(d)),
        "literal_slice_pairs": n_slice,
        "literal_note": "Algorithm 1 one pair at a time (numpy over dim), timed on a slice of D, per pair",
        "literal_pairs_per_s": round(lit_rate, 1),
        "literal_pure_python_pairs_per_s": round(py_rate, 1),
        "speedup_vs_pure_python": None,
        "backend": "numba" if use_numba else "torch",
        "pairs_per_s": round(vec_rate, 1),
        "speedup": round(vec_rate / lit_rate, 1),
        "torch_pairs_per_s": round(torch_rate, 1),
        "torch_speedup": round(torch_rate / lit_rate, 1),
        "objective_epochs": epochs,
        "objective_start": round(objective(vs0.numpy(), d_eval, n_eval), 2),
        "objective_literal": round(objective(v_lit, d_eval, n_eval), 2),
        "objective": round(objective(v_nb if use_numba else v_vec.cpu().numpy(), d_eval, n_eval), 2),
        "objective_torch_batch256": round(objective(v_vec.cpu().numpy(), d_eval, n_eval), 2),
    }


def part2(quick: bool, device: torch.device, batch_size: int) -> dict:
    rng = np.random.default_rng(1)
    idx, _, _ = grouped_stimuli(4224, 10, 50_000, 100, 100, rng)
    epochs = 20 if quick else 100
    stamps: list[float] = []

    def tick(_e: int, _n: int, _j: float) -> None:
        stamps.append(time.perf_counter())

    def run(backend: str, n_ep: int) -> tuple[np.ndarray, float, object]:
        stamps.clear()
        t0 = time.perf_counter()
        emb = train_neuron_embedding(
            idx,
            50_000,
            dim=30,
            epochs=n_ep,
            negatives=3,
            device=device,
            batch_size=batch_size,
            progress=tick,
            backend=backend,
        )
        total = time.perf_counter() - t0
        # the numba backend reports progress in bursts: time per epoch = total / epochs (after a warm-up run)
        return np.diff(np.array([t0, *stamps])), total, emb

    results: dict = {}
    backends = ["auto", "torch"] if device.type == "cpu" else ["torch"]
    for _rep in range(2):  # alternate A B A B; report medians
        for b in backends:
            run(b, 1)  # warm-up (numba compile / cache load, torch allocations)
            per, total, emb = run(b, epochs)
            results.setdefault(b, []).append((total / epochs, emb))
    out: dict = {}
    for b, runs in results.items():
        sec = float(np.median([r[0] for r in runs]))
        emb = runs[-1][1]
        tag = "" if b == backends[0] else "_torch"
        out[f"vgg16_epoch_s{tag}"] = round(sec, 5)
        out[f"vgg16_E10000_min{tag}"] = round(sec * 10_000 / 60, 2)
        out[f"vgg16_objective_first_last{tag}"] = [
            round(float(emb.objective_per_epoch[0]), 1),
            round(float(emb.objective_per_epoch[-1]), 1),
        ]
        out["pairs_per_epoch"] = emb.pairs_per_epoch
    out["vgg16_epochs_run"] = epochs
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs and a shorter literal slice")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    out = {"device": str(device), "threads": torch.get_num_threads(), "batch_size": args.batch_size}
    out.update(part1(args.quick, device, args.batch_size))
    out["speedup_vs_pure_python"] = round(out["pairs_per_s"] / out["literal_pure_python_pairs_per_s"], 1)
    out.update(part2(args.quick, device, args.batch_size))
    out["goal_speedup_met"] = out["speedup"] >= 100
    out["goal_E10000_met"] = out["vgg16_E10000_min"] <= 5
    assert math.isfinite(out["objective"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
