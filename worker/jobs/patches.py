"""Glue: write one snapshot's example patches as files, and return the rows that reference them.

Sprites: one JPEG per (snapshot, neuron) holding the neuron's k patches side by side as square tiles (tile ``r``
= stimulus of rank ``r``, each ``TILE`` pixels); the page shows a neuron's patches with one request.

Packs (issue 12): the sprites are not files of their own but byte ranges of a few *pack* files per snapshot,
``patches/s<snapshot id>/<attempt>-<part>.pack`` under the data directory, each holding the sprites of one part
of the neurons one after another; a neuron's patch set row names its pack and the sprite's
``byte_offset``/``byte_length`` (schema v5; one row per neuron since v6), and the API serves those bytes. Creating, writing and renaming a file cost this machine about
0.35 ms each, more than encoding the sprite into it (0.16 ms): ResNet18's 4,800 sprites took 2.2–2.6 s as
files against 0.44 s as 18 packs (two threads). A data folder also keeps 18 files per ResNet18 snapshot instead
of 4,800. The ``<attempt>`` is random per call, so a recomputed snapshot's packs never overwrite the ones its
current rows name: the job unlinks those once its rows are replaced (``superseded_patch_files``).

Why JPEG: encoding was the largest cost of a snapshot besides its stimuli pass — WebP at its fastest setting
took ~4 ms per 640×64 sprite; JPEG takes 0.12–0.18 ms, for files of about the same size. Tiles are 64 px, a
multiple of JPEG's 16-px blocks, so no tile bleeds into its neighbour. Sprites written by earlier versions (one
``.jpg`` or ``.webp`` file per neuron, rows without a byte range) are still served: rows name their files.

Sprites are cut and encoded by :data:`SPRITE_THREADS` threads, each thread into its own pack: numpy's copies
release the GIL, and so does the JPEG encoder (:func:`encode_sprite`). The bytes of each sprite are those of
one thread encoding it alone (tested).

The pixels held at once stay bounded whatever the model's size: with the images decoded in memory, each thread
holds one part of at most :data:`PART_BYTES` of sprites; with images decoded as needed, one chunk of up to
:data:`SPRITE_BYTES` of pixels is cut at a time (large, so that an image many neurons share is decoded few
times) and its sprites encoded by all threads, one pack each. Neither changes a byte of any sprite.

A job writes its packs into its scratch folder (``staging``, see :attr:`worker.jobs.context.JobContext.scratch`),
mirroring that layout, and :func:`publish_files` renames them into place as the last step of the transaction that
writes the rows referencing them. A job cancelled, failed or killed before that leaves its files in the scratch
folder, which the worker removes — never sprites without rows.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import simplejpeg
from torch import nn

from backend.store import PATCH_PACK_SUFFIX, data_dir
from worker.data.imagefolder import ImageFolderDataset
from worker.engine.layers import LayerSpec
from worker.engine.patches import Sprites, make_sprites
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


def pack_path(snapshot_id: int, attempt: str, part: int) -> str:
    """The path, relative to the data directory, of pack ``part`` written by one call of
    :func:`write_patch_files` (``attempt``: its random name)."""
    return f"patches/s{snapshot_id}/{attempt}-{part:04d}{PATCH_PACK_SUFFIX}"


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
    """Crop every stimulus under its neuron's receptive field, write the sprites into packs, return patch sets.

    Args:
        snapshot_id: the snapshot the stimuli belong to.
        neuron_ids: database id of each stimuli row (same order).
        stimuli: the snapshot's stimuli.
        model: the snapshot's model (for its receptive fields).
        layers: its analysed layers.
        dataset: the images (each decoded once here).
        progress: ``f(fraction, message)``.
        staging: write the packs under this folder (same relative paths) for :func:`publish_files` to move
            into place with the rows; None writes them in place at once (each appears by one rename).
        fields: the layers' receptive fields when known (:func:`worker.jobs.common.receptive_fields_of`);
            None measures them here.

    Returns:
        One patch set per neuron for :func:`backend.store.write_patches`, with its pack's byte range.
    """
    if fields is None:
        first = dataset.load_pil(0)
        fields = receptive_fields(model, layers, (first.height, first.width))
    decoded = dataset.preloaded_rgb()  # decoded by the stimuli pass when the data set is small: cut at once
    root = Path(staging) if staging is not None else Path(data_dir())
    attempt = secrets.token_hex(4)
    (root / pack_path(snapshot_id, attempt, 0)).parent.mkdir(parents=True, exist_ok=True)
    neuron_ids = np.asarray(neuron_ids)
    total = len(neuron_ids)
    # a private scratch folder: publish_files is the atomic step; else each pack appears by one rename
    atomically = staging is None

    def cut(part: np.ndarray, crops: Callable[[float], None] | None = None) -> Sprites:
        return make_sprites(
            stimuli, fields, dataset.load_pil, tile=TILE, neurons=part, progress=crops, images=decoded
        )

    def pack(number: int, sprites: np.ndarray) -> tuple[str, list[tuple[int, int]]]:
        relative = pack_path(snapshot_id, attempt, number)
        return relative, _write_pack(sprites, root / relative, atomically)

    def report(done: float, message: str) -> None:
        if progress is not None:
            progress(done / max(1, total), message)

    rows: list[dict] = []
    # Not `with`: its exit waits for every queued task, and a stop must not first make the rest of the sprites.
    pool = ThreadPoolExecutor(SPRITE_THREADS)
    try:
        if decoded is not None:
            # Parts of at most PART_BYTES of pixels, each cut and packed by one thread: numpy's copies release the
            # GIL as Pillow's encoder does, so the threads overlap; a part's pixels are freed once it is packed.
            def cut_and_pack(number: int, part: np.ndarray) -> tuple[np.ndarray, str, list[tuple[int, int]]]:
                sprites = cut(part)
                return (sprites.boxes(), *pack(number, sprites.pixels))

            parts = _parts(total, sprite_chunk(stimuli.k, PART_BYTES))
            packed = pool.map(cut_and_pack, range(len(parts)), parts)
            for part, (boxes, file, spans) in zip(parts, packed, strict=True):
                rows.extend(_patch_rows(neuron_ids[part], boxes, [(file, *span) for span in spans]))
                report(int(part[-1]) + 1, f"patches: sprites {int(part[-1]) + 1}/{total} neurons")
            return rows
        # Images decoded as needed: each chunk is cut by one thread (as large as SPRITE_BYTES allows, so that an
        # image shared by many neurons is decoded as few times as possible), its sprites packed by all, one each.
        packs = 0
        for chunk in _parts(total, sprite_chunk(stimuli.k)):
            first = int(chunk[0])

            def crops(done: float, first: int = first, size: int = chunk.size) -> None:
                report(first + size * CROPS_SHARE * done, f"patches: crops {done:.0%}")

            sprites = cut(chunk, crops)
            shares = [s for s in np.array_split(np.arange(chunk.size), SPRITE_THREADS) if s.size]
            numbers = range(packs, packs + len(shares))
            packs += len(shares)
            # contiguous shares: views of the chunk's pixels, not copies
            packed = pool.map(pack, numbers, [sprites.pixels[share[0] : share[-1] + 1] for share in shares])
            encoded, places = 0, []
            for share, (file, spans) in zip(shares, packed, strict=True):
                places.extend((file, *span) for span in spans)  # shares in order: places in chunk order
                encoded += share.size
                done = first + chunk.size * (CROPS_SHARE + (1 - CROPS_SHARE) * encoded / chunk.size)
                report(done, f"patches: sprites {first + encoded}/{total} neurons")
            rows.extend(_patch_rows(neuron_ids[chunk], sprites.boxes(), places))
            del sprites  # the next chunk's pixels reuse the memory
    finally:  # a stop (progress raises when the job is cancelled) drops the parts not started yet
        pool.shutdown(wait=True, cancel_futures=True)
    return rows


def _parts(total: int, size: int) -> list[np.ndarray]:
    """Neuron rows ``0 … total-1`` in consecutive parts of at most ``size``."""
    return [np.arange(start, min(start + size, total)) for start in range(0, total, size)]


def _patch_rows(neuron_ids: np.ndarray, boxes: np.ndarray, places: list[tuple[str, int, int]]) -> list[dict]:
    """The patch sets (see :func:`backend.store.write_patches`) of consecutive sprites: each neuron's database
    id, its ``(k, 5)`` boxes and its sprite's ``(pack file, byte offset, byte length)``, all in sprite order."""
    return [
        {"neuron_id": int(neuron), "boxes": box, "file": file, "byte_offset": start, "byte_length": length}
        for neuron, box, (file, start, length) in zip(neuron_ids.tolist(), boxes, places, strict=True)
    ]


def sprite_chunk(k: int, budget: int | None = None) -> int:
    """How many neurons' sprites of ``k`` tiles fit in ``budget`` bytes of pixels (default :data:`SPRITE_BYTES`:
    how many are cut and encoded together when the images are decoded as needed); at least one."""
    return max(1, (SPRITE_BYTES if budget is None else budget) // (TILE * TILE * max(1, k) * 3))


def encode_sprite(pixels: np.ndarray) -> bytes:
    """One sprite, ``(tile, tile · k, 3)`` uint8 RGB, as a JPEG of :data:`SPRITE_QUALITY` (4:2:0 chroma, accurate
    DCT: what Pillow writes at that quality, within 0.01 grey levels of mean error on ResNet18's sprites).

    simplejpeg (libjpeg-turbo on the array itself, without the GIL), not Pillow: Pillow first unpacks every
    array into an image of its own and encoded ResNet18's 4,800 sprites in 0.175 ms each against 0.123 ms, and
    two threads of it were barely faster than one (0.98 s against 0.66 s for the whole patch stage, measured).
    """
    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(pixels), quality=SPRITE_QUALITY, colorspace="RGB", colorsubsampling="420"
    )


def _write_pack(sprites: np.ndarray, path: Path, atomically: bool) -> list[tuple[int, int]]:
    """Encode each sprite as JPEG (:func:`encode_sprite`) and write them one after another into the pack file
    ``path``, in one write; their ``(offset, length)``. With ``atomically`` the pack is written under a
    temporary name beside ``path`` and renamed into place.
    """
    encoded = [encode_sprite(pixels) for pixels in sprites]
    ends = np.cumsum([len(jpeg) for jpeg in encoded]).tolist()
    spans = [(end - len(jpeg), len(jpeg)) for end, jpeg in zip(ends, encoded, strict=True)]
    target = path.with_name(f".{path.name}.{threading.get_ident()}.part") if atomically else path
    try:
        target.write_bytes(b"".join(encoded))
        if atomically:
            os.replace(target, path)
    except BaseException:
        if atomically:
            target.unlink(missing_ok=True)
        raise
    return spans


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
