"""Glue: write one snapshot's example patches as files, and return the rows that reference them.

Layout: one WebP sprite per (snapshot, neuron) — ``patches/s<snapshot id>/n<neuron id>.webp`` under the
data directory — holding the neuron's k patches side by side as square tiles (tile ``r`` = stimulus of
rank ``r``, each ``TILE`` pixels). One file per neuron instead of per patch keeps the demo world at
~20k small files instead of ~200k, and lets the page show a neuron's patches with one request.

A job writes its sprites into its scratch folder (``staging``, see :attr:`worker.jobs.context.JobContext.scratch`),
mirroring that layout, and :func:`publish_files` renames them into place as the last step of the transaction that
writes the rows referencing them; rewriting a snapshot simply replaces them. A job cancelled, failed or killed
before that leaves its files in the scratch folder, which the worker removes — never sprites without rows.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from backend.store import data_dir
from worker.data.imagefolder import ImageFolderDataset
from worker.engine.layers import LayerSpec
from worker.engine.patches import make_sprites
from worker.engine.receptive_field import receptive_fields
from worker.engine.stimuli import Stimuli
from worker.jobs.common import write_file_atomically

TILE = 64

log = logging.getLogger(__name__)


def sprite_path(snapshot_id: int, neuron_id: int) -> str:
    """The sprite's path relative to the data directory."""
    return f"patches/s{snapshot_id}/n{neuron_id}.webp"


def write_patch_files(
    snapshot_id: int,
    neuron_ids: np.ndarray,
    stimuli: Stimuli,
    model: nn.Module,
    layers: list[LayerSpec],
    dataset: ImageFolderDataset,
    progress: Callable[[float, str], None] | None = None,
    staging: Path | None = None,
) -> list[dict]:
    """Crop every stimulus under its neuron's receptive field, write the sprites, return patch rows.

    Args:
        snapshot_id: the snapshot the stimuli belong to.
        neuron_ids: database id of each stimuli row (same order).
        stimuli: the snapshot's stimuli.
        model: the snapshot's model (for its receptive fields).
        layers: its analysed layers.
        dataset: the images (each decoded once here).
        progress: ``f(fraction, message)``.
        staging: write the sprites under this folder (same relative paths) for :func:`publish_files` to move
            into place with the rows; None writes them in place at once.

    Returns:
        One dict per patch for :func:`backend.store.write_patches`.
    """
    first = dataset.load_pil(0)
    fields = receptive_fields(model, layers, (first.height, first.width))
    sprites = make_sprites(stimuli, fields, dataset.load_pil, tile=TILE)
    rows = [
        {
            "neuron_id": int(neuron_ids[patch.neuron]),
            "rank": patch.rank,
            "image_idx": patch.image_index,
            "y0": patch.box[0],
            "x0": patch.box[1],
            "y1": patch.box[2],
            "x1": patch.box[3],
            "file": sprite_path(snapshot_id, int(neuron_ids[patch.neuron])),
        }
        for patch in sprites.patches
    ]
    root = Path(staging) if staging is not None else Path(data_dir())
    for row_index, neuron_id in enumerate(neuron_ids):
        buffer = io.BytesIO()
        Image.fromarray(sprites.pixels[row_index]).save(buffer, format="WEBP", quality=85, method=0)
        write_file_atomically(root / sprite_path(snapshot_id, int(neuron_id)), buffer.getvalue())
        if progress is not None and row_index % 64 == 0:
            progress(row_index / len(neuron_ids), f"patches {row_index}/{len(neuron_ids)} neurons")
    return rows


def publish_files(staging: Path, root: Path | None = None) -> int:
    """Move every file under ``staging`` to the same relative path under ``root`` (the data directory), each by
    one rename (replacing what is there); returns how many. Call it last in the transaction that writes the rows
    referencing the files, so that they appear together."""
    root = Path(root) if root is not None else Path(data_dir())
    staging = Path(staging)
    moved = 0
    for folder, _dirs, files in os.walk(staging):
        for name in files:
            source = Path(folder) / name
            target = root / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # the data directory spans file systems: copy, then rename
                    raise
                shutil.copyfile(source, target.with_name(f".{target.name}.part"))
                os.replace(target.with_name(f".{target.name}.part"), target)
            moved += 1
    log.debug("published %d file(s) from %s", moved, staging)
    return moved
