"""Glue: write one snapshot's example patches as files, and return the rows that reference them.

Layout: one JPEG sprite per (snapshot, neuron) — ``patches/s<snapshot id>/n<neuron id>.jpg`` under the
data directory — holding the neuron's k patches side by side as square tiles (tile ``r`` = stimulus of
rank ``r``, each ``TILE`` pixels). One file per neuron instead of per patch keeps the demo world at
~20k small files instead of ~200k, and lets the page show a neuron's patches with one request.

Why JPEG (issue 12): encoding was the largest cost of a snapshot besides its stimuli pass — WebP at its
fastest setting took ~4 ms per 640×64 sprite, 15 s of a ResNet18 snapshot's 29 s of patches; JPEG takes
~0.4 ms, for files of about the same size (10.7 KB against 11.1 KB on the demo's sprites). Tiles are 64 px,
a multiple of JPEG's 16-px blocks, so no tile bleeds into its neighbour. Threads do not help: Pillow holds
the GIL while it encodes JPEG, and two threads took twice as long per sprite. Sprites written by earlier
versions (``.webp``) are still served: rows name their files.

Sprites are cut and encoded a chunk of neurons at a time (:func:`sprite_chunk`), so that the pixels held at
once stay bounded whatever the model's size; chunking changes no byte of any sprite.

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
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from backend.store import data_dir
from worker.data.imagefolder import ImageFolderDataset
from worker.engine.layers import LayerSpec
from worker.engine.patches import make_sprites
from worker.engine.receptive_field import ReceptiveField, receptive_fields
from worker.engine.stimuli import Stimuli
from worker.jobs.common import write_file_atomically

TILE = 64
#: JPEG quality of the sprites (mean error ~6 grey levels on the demo world's patches, as WebP at 85).
SPRITE_QUALITY = 85
#: Sprite pixels held at once (8,738 neurons at k = 10): one array for a whole snapshot grew with the model —
#: 590 MB for ResNet18's 4,800 neurons, 3.1 GiB for ResNet50's 26,560. Not smaller: each chunk repeats the
#: crop path's per-size work and, where images are not preloaded, decodes its images again.
SPRITE_BYTES = 1 << 30

log = logging.getLogger(__name__)


def sprite_path(snapshot_id: int, neuron_id: int) -> str:
    """The sprite's path relative to the data directory."""
    return f"patches/s{snapshot_id}/n{neuron_id}.jpg"


def write_patch_files(
    snapshot_id: int,
    neuron_ids: np.ndarray,
    stimuli: Stimuli,
    model: nn.Module,
    layers: list[LayerSpec],
    dataset: ImageFolderDataset,
    progress: Callable[[float, str], None] | None = None,
    staging: Path | None = None,
    fields: Mapping[str, ReceptiveField] | None = None,
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
        fields: the layers' receptive fields when known (:func:`worker.jobs.common.receptive_fields_of`);
            None measures them here.

    Returns:
        One dict per patch for :func:`backend.store.write_patches`.
    """
    if fields is None:
        first = dataset.load_pil(0)
        fields = receptive_fields(model, layers, (first.height, first.width))
    decoded = dataset.preloaded_rgb()  # decoded by the stimuli pass when the data set is small: cut at once
    crops_share = 0.2 if decoded is not None else 0.6  # of the stage's time, roughly (the rest: encoding)
    rows: list[dict] = []
    root = Path(staging) if staging is not None else Path(data_dir())
    (root / sprite_path(snapshot_id, 0)).parent.mkdir(parents=True, exist_ok=True)
    total = len(neuron_ids)
    chunk = sprite_chunk(stimuli.k)
    for start in range(0, total, chunk):
        part = np.arange(start, min(start + chunk, total))

        def report(within: float, message: str, start: int = start, size: int = part.size) -> None:
            """Progress over the whole stage: this chunk spans neurons start … start + size of ``total``."""
            if progress is not None:
                progress((start + size * within) / max(1, total), message)

        sprites = make_sprites(
            stimuli,
            fields,
            dataset.load_pil,
            tile=TILE,
            neurons=part,
            progress=lambda done, report=report: report(crops_share * done, f"patches: crops {done:.0%}"),
            images=decoded,
        )
        rows.extend(
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
        )
        for encoded, neuron in enumerate(part, start=1):
            buffer = io.BytesIO()
            Image.fromarray(sprites.pixels[encoded - 1]).save(buffer, format="JPEG", quality=SPRITE_QUALITY)
            path = root / sprite_path(snapshot_id, int(neuron_ids[neuron]))
            if staging is not None:  # a private scratch folder: publish_files is the atomic step
                path.write_bytes(buffer.getvalue())
            else:
                write_file_atomically(path, buffer.getvalue())
            if encoded % 64 == 0 or encoded == part.size:
                within = crops_share + (1 - crops_share) * encoded / part.size
                report(within, f"patches: sprites {int(neuron) + 1}/{total} neurons")
        del sprites  # the next chunk's pixels reuse the memory
    return rows


def sprite_chunk(k: int) -> int:
    """How many neurons' sprites are cut and encoded together: their pixels stay under :data:`SPRITE_BYTES`."""
    return max(1, SPRITE_BYTES // (TILE * TILE * max(1, k) * 3))


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
