"""Where the demo world lives and whether it is complete — cheap to import (no torch), so that
``conceptevo demo`` decides at once whether to queue the build or to register what is there.
"""

from __future__ import annotations

from pathlib import Path

from backend.store.config import data_dir

#: The demo runs, in training order (their configs: :data:`worker.demo.runs.DEMO_RUNS`).
DEMO_RUN_NAMES: tuple[str, ...] = ("healthy", "high-lr", "overfit")


def demo_root() -> Path:
    """The demo world's folder: ``<data dir>/demo`` (``dataset/`` and ``runs/<name>/`` inside)."""
    return Path(data_dir()) / "demo"


def demo_world_ready(root: Path) -> bool:
    """The demo dataset and every demo run are completely written under ``root``.

    Args:
        root: the demo world's folder.

    Returns:
        True when ``dataset/attributes.json`` (written last by the generator) and every run's checkpoints and
        ``run.json`` (written last by the training) exist.
    """
    if not (Path(root) / "dataset" / "attributes.json").exists():
        return False  # the usual answer on a fresh clone, given without importing torch
    from worker.training import is_complete

    return all(is_complete(Path(root) / "runs" / name) for name in DEMO_RUN_NAMES)
