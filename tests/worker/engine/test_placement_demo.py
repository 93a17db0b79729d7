"""Issue 13's placement oracles on the tiny demo world: λ chosen by held-out error, the gradient-descent
solve of Eq 3 by Eq 4 (literal form checked in ``test_placement.py``), split-half stability, base R².

Measured on this world (432 base neurons, 288 images, k = 10; the stimulus matrix has rank ~262): the issue's
goals (held-out cosine ≥ 0.9, split-half ≥ 0.9, base R² ≥ 0.95) are out of reach of any Eq 3 solution here —
the base R² ceiling (least squares, λ → 0) is ~0.90 and the held-out cosine peaks near 0.8 — so these tests
pin what the chosen λ achieves and that it beats the old constant λ = 1e-3; the README gives the figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.worker.engine.oracles_placement import GD_STEPS, eq4_gradient_descent
from worker.engine.image_embedding import (
    choose_damping,
    fit_image_embedding,
    fit_uncovered_rule,
    image_vectors_for_all,
    neuron_vectors_from_stimuli,
    row_cosines,
)
from worker.engine.neuron_embedding import train_neuron_embedding
from worker.engine.stability import split_half_stability

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Fewer Eq 1 epochs than the demo's 2000 keep this module cheap; the figures move by ~0.01.
EMBEDDING_EPOCHS = 500


@pytest.fixture(scope="module")
def demo_placement(tiny_demo_world):
    """Base = last healthy epoch; its stimuli, responses, Eq 1 vectors; other snapshots' stimuli; the chosen
    λ and the image vectors at it and at the old λ = 1e-3."""
    from worker.models.checkpoints import load_model
    from worker.models.layers import resolve_layers
    from worker.pipeline import input_shape, open_dataset, snapshot_stimuli

    data = open_dataset(tiny_demo_world / "dataset", split="train")
    runs = tiny_demo_world / "runs"
    last = sorted((runs / "healthy").glob("epoch_*.pt"))[-1]
    base = load_model(None, None, last)
    layers = resolve_layers(base, None, input_shape(data))
    stimuli = snapshot_stimuli(base, data, layers, 10, keep_responses=True)
    embedding = train_neuron_embedding(
        stimuli.indices, stimuli.n_images, dim=30, epochs=EMBEDDING_EPOCHS, seed=0
    )
    others = {
        path.parent.name + "/" + path.stem: snapshot_stimuli(
            load_model(None, None, path), data, layers, 10
        ).indices
        for path in (
            runs / "healthy" / "epoch_000.pt",
            runs / "healthy" / "epoch_001.pt",
            runs / "high-lr" / "epoch_002.pt",
        )
    }
    idx, nv, resp, n_images = stimuli.indices, embedding.vectors, stimuli.responses, stimuli.n_images
    choice = choose_damping(idx, nv, resp, seed=0)
    placed = {}
    for lam in (1e-3, choice.damping):
        fit = fit_image_embedding(idx, nv, n_images, damping=lam)
        rule = fit_uncovered_rule(resp, idx, nv, fit, seed=0)
        placed[lam] = (fit, image_vectors_for_all(fit, rule, resp))
    return idx, nv, n_images, others, choice, placed


def test_lambda_chosen_by_heldout_error_beats_the_old_constant(demo_placement) -> None:
    _idx, _nv, _n, _others, choice, _placed = demo_placement
    r2_old, cos_old = choice.grid[1e-3]
    print(
        f"chosen λ {choice.damping}: held-out R² {choice.heldout_r2:.3f} cosine {choice.heldout_cosine:.3f}; "
        f"λ=1e-3: R² {r2_old:.3f} cosine {cos_old:.3f}"
    )
    assert choice.damping > 1e-3
    assert choice.heldout_r2 > r2_old + 0.5 and choice.heldout_cosine > cos_old + 0.1
    assert choice.heldout_cosine >= 0.75  # issue goal 0.9: not reachable here (see the module docstring)


def test_chosen_solve_agrees_with_gradient_descent_on_eq3(demo_placement) -> None:
    idx, nv, n_images, others, choice, placed = demo_placement
    fit, every = placed[choice.damping]
    gd = eq4_gradient_descent(idx, nv, n_images, steps=GD_STEPS)
    gd[~fit.covered] = every[~fit.covered]  # Eq 3 says nothing of images no base neuron uses: same rule
    for name, other in others.items():
        agree = float(
            np.median(row_cosines(neuron_vectors_from_stimuli(other, every), gd[other].mean(axis=1)))
        )
        print(f"{name}: chosen vs gradient descent, median cosine {agree:.3f}")
        assert agree >= 0.95, name


def test_split_half_stability_and_base_r2(demo_placement) -> None:
    idx, nv, _n, others, choice, placed = demo_placement
    old = {name: split_half_stability(other, placed[1e-3][1]).cosine for name, other in others.items()}
    new = {
        name: split_half_stability(other, placed[choice.damping][1]).cosine for name, other in others.items()
    }
    print("split-half cosine, λ=1e-3:", old, "chosen:", new)
    for name in others:
        assert new[name] > old[name] + 0.1, name  # issue goal 0.9: not reachable here (module docstring)
    ceiling, r2 = placed[1e-3][0].r2, placed[choice.damping][0].r2
    print(f"base neurons by Eq 2: R² {r2:.3f} (least-squares ceiling {ceiling:.3f})")
    assert r2 >= 0.8 and r2 >= ceiling - 0.08  # issue goal 0.95: above the ceiling here
