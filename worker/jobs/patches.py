"""Glue: write one snapshot's example patches as files, and return the rows that reference them.

Layout: one JPEG sprite per (snapshot, neuron) — ``patches/s<snapshot id>/n<neuron id>.jpg`` under the
data directory — holding the neuron's k patches side by side as square tiles (tile ``r`` = stimulus of
rank ``r``, each ``TILE`` pixels). One file per neuron instead of per patch keeps the demo world at
~20k small files instead of ~200k, and lets the page show a neuron's patches with one request.

Why JPEG (issue 12): encoding was the largest cost of a snapshot besides its stimuli pass — WebP at its
fastest setting took ~4 ms per 640×64 sprite, 15 s of a ResNet18 snapshot's 29 s of patches; JPEG takes
~0.4 ms, for files of about the same size (10.7 KB against 11.1 KB on the demo's sprites). Tiles are 64 px,
a multiple of JPEG's 16-px blocks, so no tile bleeds into its neighbour. Sprites written by earlier
versions (``.webp``) are still served: rows name their files.

Sprites are cut and encoded by :data:`SPRITE_THREADS` threads, each sprite straight into its file: numpy's
copies release the GIL, and so does Pillow while it encodes into a file (``ImageFile._save`` →
``encode_to_file``), though not into a ``BytesIO`` — which is why threads once looked useless here. On
ResNet18's 4,800 sprites two threads cut in 1.8–2.1 s instead of 2.7–2.8 and encode in 0.96 s instead of
1.2–1.6 (2 cores). The bytes are those of one thread encoding into memory (tested).

The pixels held at once stay bounded whatever the model's size: with the images decoded in memory, each thread
holds one part of at most :data:`PART_BYTES` of sprites; with images decoded as needed, one chunk of up to
:data:`SPRITE_BYTES` of pixels is cut at a time (large, so that an image many neurons share is decoded few
times) and its sprites encoded by all threads. Neither changes a byte of any sprite.

A job writes its sprites into its scratch folder (``staging``, see :attr:`worker.jobs.context.JobContext.scratch`),
mirroring that layout, and :func:`publish_files` renames them into place as the last step of the transaction that
writes the rows referencing them; rewriting a snapshot simply replaces them. A job cancelled, failed or killed
before that leaves its files in the scratch folder, which the worker removes — never sprites without rows.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from backend.store import data_dir
from worker.data.imagefolder import ImageFolderDataset
from worker.engine.layers import LayerSpec
from worker.engine.patches import PatchRef, Sprites, make_sprites
from worker.engine.receptive_field import ReceptiveField, receptive_fields
from worker.engine.stimuli import Stimuli

TILE = 64
#: JPEG quality of the sprites (mean error ~6 grey levels on the demo world's patches, as WebP at 85).
SPRITE_QUALITY = 85
#: Sprite pixels held at once (8,738 neurons at k = 10): one array for a whole snapshot grew with the model —
#: 590 MB for ResNet18's 4,800 neurons, 3.1 GiB for ResNet50's 26,560. Not smaller: each chunk repeats the
#: crop path's per-size work and, where images are not preloaded, decodes its images again.
SPRITE_BYTES = 1 << 30
#: Threads cutting and encoding sprites (the stimuli pass is over by then, so its cores are free).
SPRITE_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Sprite pixels per part when the images are decoded in memory: parts are spread over the threads, each holding
#: one at a time (k = 10: 273 neurons a part; ResNet18's 4,800 neurons make 18 parts).
PART_BYTES = 32 << 20
#: Share of a chunk's time spent cutting crops when images are decoded as needed (the rest: encoding).
CROPS_SHARE = 0.6

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
    root = Path(staging) if staging is not None else Path(data_dir())
    (root / sprite_path(snapshot_id, 0)).parent.mkdir(parents=True, exist_ok=True)
    total = len(neuron_ids)
    # a private scratch folder: publish_files is the atomic step; else each file appears by one rename
    save = _save_sprite if staging is not None else _save_sprite_atomically

    def cut(part: np.ndarray, crops: Callable[[float], None] | None = None) -> Sprites:
        return make_sprites(
            stimuli, fields, dataset.load_pil, tile=TILE, neurons=part, progress=crops, images=decoded
        )

    def paths(part: np.ndarray) -> list[Path]:
        return [root / sprite_path(snapshot_id, int(neuron_ids[neuron])) for neuron in part]

    def report(done: float, message: str) -> None:
        if progress is not None:
            progress(done / max(1, total), message)

    rows: list[dict] = []
    # Not `with`: its exit waits for every queued task, and a stop must not first make the rest of the sprites.
    pool = ThreadPoolExecutor(SPRITE_THREADS)
    try:
        if decoded is not None:
            # Parts of at most PART_BYTES of pixels, each cut and encoded by one thread: numpy's copies release the GIL
            # as Pillow's encoder does, so the threads overlap; a part's pixels are freed once it is encoded.
            def cut_and_save(part: np.ndarray) -> list[PatchRef]:
                sprites = cut(part)
                for pixels, path in zip(sprites.pixels, paths(part), strict=True):
                    save(pixels, path)
                return sprites.patches

            parts = _parts(total, sprite_chunk(stimuli.k, PART_BYTES))
            for part, patches in zip(parts, pool.map(cut_and_save, parts), strict=True):
                rows.extend(_patch_rows(snapshot_id, neuron_ids, patches))
                report(int(part[-1]) + 1, f"patches: sprites {int(part[-1]) + 1}/{total} neurons")
            return rows
        # Images decoded as needed: each chunk is cut by one thread (as large as SPRITE_BYTES allows, so that an
        # image shared by many neurons is decoded as few times as possible), its sprites encoded by all.
        for part in _parts(total, sprite_chunk(stimuli.k)):
            first = int(part[0])

            def crops(done: float, first: int = first, size: int = part.size) -> None:
                report(first + size * CROPS_SHARE * done, f"patches: crops {done:.0%}")

            sprites = cut(part, crops)
            rows.extend(_patch_rows(snapshot_id, neuron_ids, sprites.patches))
            saved = pool.map(save, sprites.pixels, paths(part))
            for encoded, _saved in enumerate(saved, start=1):
                if encoded % 64 == 0 or encoded == part.size:
                    done = first + part.size * (CROPS_SHARE + (1 - CROPS_SHARE) * encoded / part.size)
                    report(done, f"patches: sprites {first + encoded}/{total} neurons")
            del sprites  # the next chunk's pixels reuse the memory
    finally:  # a stop (progress raises when the job is cancelled) drops the parts not started yet
        pool.shutdown(wait=True, cancel_futures=True)
    return rows


def _parts(total: int, size: int) -> list[np.ndarray]:
    """Neuron rows ``0 … total-1`` in consecutive parts of at most ``size``."""
    return [np.arange(start, min(start + size, total)) for start in range(0, total, size)]


def _patch_rows(snapshot_id: int, neuron_ids: np.ndarray, patches: list[PatchRef]) -> list[dict]:
    """The patch rows (see :func:`backend.store.write_patches`) of one part's patches."""
    return [
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
        for patch in patches
    ]


def sprite_chunk(k: int, budget: int | None = None) -> int:
    """How many neurons' sprites of ``k`` tiles fit in ``budget`` bytes of pixels (default :data:`SPRITE_BYTES`:
    how many are cut and encoded together when the images are decoded as needed); at least one."""
    return max(1, (SPRITE_BYTES if budget is None else budget) // (TILE * TILE * max(1, k) * 3))


def _save_sprite(pixels: np.ndarray, path: Path) -> None:
    """Encode one sprite as JPEG straight into its file (Pillow releases the GIL while it encodes into a file)."""
    Image.fromarray(pixels).save(path, format="JPEG", quality=SPRITE_QUALITY)


def _save_sprite_atomically(pixels: np.ndarray, path: Path) -> None:
    """:func:`_save_sprite` under a temporary name beside ``path``, then renamed into place."""
    partial = path.with_name(f".{path.name}.{threading.get_ident()}.part")
    try:
        _save_sprite(pixels, partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


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
