"""The demo world's three training runs of the demo net on the demo data.

- ``healthy``: Adam with a one-cycle schedule, dropout and augmentation on all training images, in batches
  of 256 (16 steps an epoch on the 4,000 default images), so that its first epoch, still in the warm-up,
  stays near chance (train top-1 0.15–0.28 over seeds 0–2) and the paper's accuracy milestones fall at
  distinct epochs after the initialisation (0.25 at epoch 1, 0.5 at epoch 2 for seeds 0–2; issue 14);
  accuracy then climbs over 10 epochs.
- ``high-lr``: plain SGD at a learning rate far too high (0.5, constant): accuracy stays low.
- ``overfit``: no dropout, no augmentation, 180 training images (15 per class), 20 epochs: train
  top-1 near 1.0 (0.98) while val stays far lower (~0.74).

All three are made on the CPU within the demo world's budget (≤ 4 minutes including the data) and
are deterministic by seed. Each run is written by :func:`worker.training.train` into
``runs_root/<name>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from worker.errors import ConceptEvoError
from worker.training import TrainConfig, is_complete, train

logger = logging.getLogger(__name__)

#: The three demo runs (seed 0; :func:`train_demo_runs` replaces the seed).
DEMO_RUNS: dict[str, TrainConfig] = {
    "healthy": TrainConfig(
        arch="demo-vgg",
        epochs=10,
        # 16 steps an epoch: with the one-cycle warm-up, epoch 1 stays near chance and the accuracy
        # milestones 0.25 / 0.5 / 0.75 fall at distinct epochs after the initialisation (issue 14).
        batch_size=256,
        optimizer="adam",
        lr=2e-3,
        schedule="onecycle",
        weight_decay=0.0,
        dropout=0.3,
        augment=True,
        channels_last=True,
    ),
    "high-lr": TrainConfig(
        arch="demo-vgg",
        epochs=6,
        batch_size=64,
        optimizer="sgd",
        lr=0.5,
        momentum=0.9,
        schedule="constant",
        dropout=0.3,
        augment=True,
        channels_last=True,
    ),
    "overfit": TrainConfig(
        arch="demo-vgg",
        epochs=20,
        batch_size=16,
        optimizer="adam",
        lr=2e-3,
        schedule="onecycle",
        dropout=0.0,
        augment=False,
        train_subset=180,
        channels_last=True,
    ),
}


def train_demo_runs(
    dataset_root: str | Path,
    runs_root: str | Path,
    names: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
    on_epoch: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Train the demo runs into ``runs_root/<name>``, skipping runs already complete there.

    Args:
        dataset_root: the demo dataset (holding ``train/`` and ``val/``).
        runs_root: parent directory of the run directories.
        names: which runs (default: all of :data:`DEMO_RUNS`, in order).
        seed: training seed of every run.
        progress: show progress bars.
        on_epoch: called as ``on_epoch(run name, history entry)`` after each epoch that is trained (see
            :func:`worker.training.train`); not called for a skipped run.

    Returns:
        Run name → its history (read back from ``history.json`` for a skipped run).

    Raises:
        ConceptEvoError: an unknown run name, or any training error.
    """
    names = list(DEMO_RUNS) if names is None else list(names)
    unknown = [n for n in names if n not in DEMO_RUNS]
    if unknown:
        raise ConceptEvoError(f"unknown demo run {unknown[0]!r}; valid runs: {', '.join(DEMO_RUNS)}")
    runs_root = Path(runs_root)
    results: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        out_dir = runs_root / name
        config = replace(DEMO_RUNS[name], seed=seed)
        if is_complete(out_dir) and _same_config(out_dir, config):
            logger.info("demo run %s already complete in %s; skipped", name, out_dir)
            results[name] = json.loads((out_dir / "history.json").read_text())
            continue
        results[name] = train(
            config,
            dataset_root,
            out_dir,
            progress=progress,
            overwrite=True,
            name=name,
            on_epoch=None if on_epoch is None else partial(on_epoch, name),
        )
    return results


def _same_config(out_dir: Path, config: TrainConfig) -> bool:
    """Whether the finished run in ``out_dir`` was trained with exactly ``config``."""
    try:
        saved = json.loads((out_dir / "run.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return False
    return saved == config.to_json()
