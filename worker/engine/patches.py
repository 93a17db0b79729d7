"""Example patches: for each stimulus, the crop of the input under the neuron's true receptive field.

DESIGN.md §4 item 7, issue 3 item 7; the paper's "example patches, cropped images that maximally
activate the neuron" (§3.3). For stimulus ``r`` of neuron ``n`` the crop is the receptive-field box
(:meth:`~worker.engine.receptive_field.ReceptiveField.input_box`) of the map location where the
neuron's activation on that image is largest (``Stimuli.argmax_yx``), clipped to the image.

* Each image is decoded **once** per pass: stimuli are grouped by image index and all patches of one
  image are cut from the same decoded picture. Patches come out ordered by image index, then neuron,
  then rank.
* If the model saw images resized to ``input_size`` (a plain resize of the whole image, no crop), boxes
  are computed in input coordinates and scaled back to the original image
  (``y0·H/H_in`` rounded down, ``y1·H/H_in`` rounded up).
* Crops are resized so that their longer side is the tile side (aspect kept, :func:`fit_tile`). Early
  layers' crops are tiny (3×3 px for the first 3×3 conv): they are **upscaled with NEAREST**, so each
  input pixel shows as a sharp block rather than a blur; larger crops are reduced with a BOX filter.
* :func:`make_sprites` lays each neuron's k patches side by side as square tiles of one sprite (tile
  ``r`` = stimulus of rank ``r``, the resized crop centred on black). This is the one path from stimuli to
  patch pixels; encoding the sprites and where the bytes go is the caller's business
  (:mod:`worker.jobs.patches`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from worker.engine.receptive_field import ReceptiveField
from worker.engine.stimuli import Stimuli
from worker.errors import ConceptEvoError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchRef:
    """Where one example patch comes from.

    Attributes:
        neuron: row of the neuron in the :class:`~worker.engine.stimuli.Stimuli` arrays.
        rank: position among the neuron's stimuli (0 = strongest); also its tile in the neuron's sprite.
        image_index: dataset index of the image.
        box: ``(y0, x0, y1, x1)`` half-open, in the original image's pixel coordinates.
    """

    neuron: int
    rank: int
    image_index: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Sprites:
    """Every neuron's patches as one sprite each (see :func:`make_sprites`).

    Attributes:
        pixels: ``(n_rows, tile, tile · k, 3)`` uint8 RGB; row i is the sprite of the i-th requested neuron.
        table: ``(n_patches, 8)`` int64, one row per stimulus ``(sprite row, neuron, rank, image index, y0, x0,
            y1, x1)``, ordered by image index, then neuron, then rank (arrays, not 48,000 objects on ResNet18).
        tile: side of a tile in pixels.
    """

    pixels: np.ndarray
    table: np.ndarray
    tile: int

    @property
    def patches(self) -> list[PatchRef]:
        """One :class:`PatchRef` per stimulus, in :attr:`table`'s order."""
        return [PatchRef(n, r, m, (y0, x0, y1, x1)) for _, n, r, m, y0, x0, y1, x1 in self.table.tolist()]

    def boxes(self) -> np.ndarray:
        """``(n_rows, k, 5)`` int64: each sprite row's ``(image index, y0, x0, y1, x1)`` by rank (its tiles)."""
        k = self.pixels.shape[2] // self.tile if self.pixels.ndim == 4 else 0
        out = np.zeros((self.pixels.shape[0], k, 5), dtype=np.int64)
        out[self.table[:, 0], self.table[:, 2]] = self.table[:, 3:]
        return out


def patch_box(
    field: ReceptiveField,
    yx: tuple[int, int],
    input_size: tuple[int, int],
    image_size: tuple[int, int],
) -> tuple[int, int, int, int]:
    """The patch box of map location ``yx``: its field in the model input, mapped to the image.

    Args:
        field: the layer's receptive field.
        yx: ``(y, x)`` in the layer's map.
        input_size: ``(H_in, W_in)`` of the model input.
        image_size: ``(H, W)`` of the original image.

    Returns:
        Half-open ``(y0, x0, y1, x1)`` in image coordinates, at least one pixel, clipped to the image.
    """
    y0, x0, y1, x1 = field.input_box(int(yx[0]), int(yx[1]), input_size)
    if tuple(input_size) == tuple(image_size):
        return (y0, x0, y1, x1)
    sy, sx = image_size[0] / input_size[0], image_size[1] / input_size[1]
    top, left = min(math.floor(y0 * sy), image_size[0] - 1), min(math.floor(x0 * sx), image_size[1] - 1)
    bottom = max(min(math.ceil(y1 * sy), image_size[0]), top + 1)
    right = max(min(math.ceil(x1 * sx), image_size[1]), left + 1)
    return (top, left, bottom, right)


def fit_tile(crop: Image.Image, side: int) -> np.ndarray:
    """Resize a crop so its longer side is ``side`` (aspect kept): NEAREST up, so tiny crops stay sharp; BOX down.

    Args:
        crop: the crop (any PIL mode; converted to RGB).
        side: the tile side in pixels.

    Returns:
        ``(h, w, 3)`` uint8 with ``max(h, w) == side``.
    """
    scale = side / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    if crop.mode != "RGB":
        crop = crop.convert("RGB")
    if size != crop.size:
        crop = crop.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX)
    return np.asarray(crop)


@dataclass(frozen=True)
class Crop:
    """One stimulus's crop before encoding (see :func:`iter_crops`)."""

    neuron: int
    rank: int
    image_index: int
    box: tuple[int, int, int, int]
    image: Image.Image


def make_sprites(
    stimuli: Stimuli,
    fields: Mapping[str, ReceptiveField],
    load_image: Callable[[int], Image.Image],
    tile: int = 64,
    input_size: int | tuple[int, int] | None = None,
    neurons: Sequence[int] | None = None,
    progress: Callable[[float], None] | None = None,
    images: np.ndarray | None = None,
) -> Sprites:
    """Cut every stimulus's patch (of ``neurons``, default all) and lay each neuron's k patches out as a sprite.

    Args:
        stimuli: the stimuli (with ``argmax_yx`` and ``map_sizes``).
        fields: receptive field of each of ``stimuli.layer_names``.
        load_image: ``f(image index) → PIL image``; called once per distinct image.
        tile: side of each square tile in pixels; the crop's longer side is resized to it, centred.
        input_size: the model input ``(H_in, W_in)`` the stimuli were computed at, when images were
            resized for the model; ``None`` means the images were fed at their own size.
        neurons: rows of ``stimuli`` to make sprites for (sprite row i ↔ ``neurons[i]``).
        progress: ``f(fraction of the crops done)``, called every few hundred crops.
        images: every image as ``load_image`` decodes it, as one ``(N, H, W, 3)`` uint8 array (all one size),
            when at hand: the crops are then cut and enlarged many at a time (:func:`_sprites_from_array`),
            with exactly the same pixels.

    Returns:
        :class:`Sprites`.

    Raises:
        ConceptEvoError: a tile side below 1, a layer without a field, a neuron out of range.
    """
    if tile < 1:
        raise ConceptEvoError(f"patch tile size must be positive, got {tile}")
    if images is not None:
        return _sprites_from_array(stimuli, fields, images, tile, input_size, neurons, progress)
    rows = np.arange(stimuli.n_neurons) if neurons is None else np.asarray(neurons, dtype=np.int64)
    sprite_row = {int(n): i for i, n in enumerate(rows)}
    pixels = np.zeros((rows.size, tile, tile * stimuli.k, 3), dtype=np.uint8)
    patches: list[tuple[int, ...]] = []
    total = rows.size * stimuli.k
    for crop in iter_crops(stimuli, fields, load_image, input_size, rows):
        if progress is not None and len(patches) % 512 == 0:
            progress(len(patches) / total)
        _place_tile(pixels[sprite_row[crop.neuron]], crop.rank, fit_tile(crop.image, tile))
        patches.append((sprite_row[crop.neuron], crop.neuron, crop.rank, crop.image_index, *crop.box))
    table = np.asarray(patches, dtype=np.int64).reshape(-1, 8)
    return Sprites(pixels=pixels, table=table, tile=tile)


def _place_tile(sprite: np.ndarray, rank: int, fitted: np.ndarray) -> None:
    """Write a fitted crop centred into tile ``rank`` of one sprite row (``tile × tile·k × 3``)."""
    tile = sprite.shape[0]
    top = (tile - fitted.shape[0]) // 2
    left = rank * tile + (tile - fitted.shape[1]) // 2
    sprite[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted


def iter_crops(
    stimuli: Stimuli,
    fields: Mapping[str, ReceptiveField],
    load_image: Callable[[int], Image.Image],
    input_size: int | tuple[int, int] | None = None,
    neurons: Sequence[int] | None = None,
) -> Iterator[Crop]:
    """Yield the un-encoded crop of every stimulus (of ``neurons``, default all), one image decode each.

    The arguments are those of :func:`make_sprites`.

    Yields:
        :class:`Crop`, ordered by image index, then neuron, then rank.
    """
    rows, layer_fields = _checked(stimuli, fields, neurons)
    in_size = (input_size, input_size) if isinstance(input_size, int) else input_size
    neuron_of, rank_of, image_of, order = _incidences(stimuli, rows)
    boundaries = np.flatnonzero(np.diff(image_of[order])) + 1
    n_patches = 0
    for group in np.split(order, boundaries) if order.size else []:
        image_index = int(image_of[group[0]])
        image = load_image(image_index)
        if image.mode != "RGB":
            image = image.convert("RGB")
        image_size = (image.height, image.width)
        model_size = tuple(in_size) if in_size is not None else image_size
        for position in group:
            neuron, rank = int(neuron_of[position]), int(rank_of[position])
            field = layer_fields[int(stimuli.layer_of[neuron])]
            box = patch_box(field, tuple(stimuli.argmax_yx[neuron, rank]), model_size, image_size)
            yield Crop(neuron, rank, image_index, box, image.crop((box[1], box[0], box[3], box[2])))
            n_patches += 1
    logger.info("patches: %d crops from %d images", n_patches, len(np.unique(image_of)))


def _checked(
    stimuli: Stimuli, fields: Mapping[str, ReceptiveField], neurons: Sequence[int] | None
) -> tuple[np.ndarray, list[ReceptiveField]]:
    """The requested stimuli rows and each layer's field, or a one-line error."""
    missing = [name for name in stimuli.layer_names if name not in fields]
    if missing:
        raise ConceptEvoError(f"no receptive field for layer {missing[0]!r}")
    rows = np.arange(stimuli.n_neurons) if neurons is None else np.asarray(neurons, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= stimuli.n_neurons):
        raise ConceptEvoError(f"neuron index out of range 0..{stimuli.n_neurons - 1}")
    return rows, [fields[name] for name in stimuli.layer_names]


def _incidences(stimuli: Stimuli, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (neuron, rank) incidence of ``rows`` — ``(neuron_of, rank_of, image_of, order)`` with ``order``
    grouping them by image (stable: neuron, then rank within an image), the order patches are listed in."""
    neuron_of = np.repeat(rows, stimuli.k)
    rank_of = np.tile(np.arange(stimuli.k), rows.size)
    image_of = stimuli.indices[rows].reshape(-1)
    return neuron_of, rank_of, image_of, np.argsort(image_of, kind="stable")


def nearest_sources(n_in: int, n_out: int) -> np.ndarray:
    """Which source pixel each of ``n_out`` output pixels takes when Pillow resizes ``n_in`` pixels to ``n_out``
    with NEAREST: Pillow's affine loop starts at half a step and adds the step in double precision, truncating
    each position — reproduced literally, so that the result is Pillow's to the last pixel (tests compare
    every size up to 128)."""
    step = n_in / n_out
    position = step * 0.5
    sources = np.empty(n_out, dtype=np.int64)
    for i in range(n_out):
        sources[i] = int(position)
        position += step
    return sources


#: Crops enlarged together per gather (bounds the temporary array to ~50 MB at 64-px tiles).
_CHUNK = 4096


def _sprites_from_array(
    stimuli: Stimuli,
    fields: Mapping[str, ReceptiveField],
    images: np.ndarray,
    tile: int,
    input_size: int | tuple[int, int] | None,
    neurons: Sequence[int] | None,
    progress: Callable[[float], None] | None,
) -> Sprites:
    """:func:`make_sprites` over decoded images: the same boxes, tiles and order, cut by array indexing.

    A crop no larger than the tile (the usual case: a receptive field smaller than the tile, or clipped by a
    small image) is enlarged by NEAREST, which is a gather: crops of one size are cut a chunk at a time, whole
    image rows first and then one column gather per left edge (:func:`nearest_sources` gives both index
    lists). A larger crop is shrunk with Pillow's BOX filter through :func:`fit_tile`, as in the one-by-one
    path. On ResNet18's 48,000 crops of 64×64 images: 1.8 s against Pillow's 3.2 s, most of the rest being
    the sprite array's first writes.
    """
    rows, layer_fields = _checked(stimuli, fields, neurons)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ConceptEvoError(f"decoded images must be (N, H, W, 3) uint8, got {images.dtype} {images.shape}")
    image_size = (int(images.shape[1]), int(images.shape[2]))
    in_size = (input_size, input_size) if isinstance(input_size, int) else input_size
    model_size = tuple(in_size) if in_size is not None else image_size
    sprite_row = np.empty(stimuli.n_neurons, dtype=np.int64)
    sprite_row[rows] = np.arange(rows.size)
    neuron_of, rank_of, image_of, order = _incidences(stimuli, rows)
    neuron_of, rank_of, image_of = neuron_of[order], rank_of[order], image_of[order]

    # Many stimuli share a layer and map position, so each distinct one's box is computed once.
    where = np.column_stack([stimuli.layer_of[neuron_of], stimuli.argmax_yx[neuron_of, rank_of]])
    distinct, which = np.unique(where, axis=0, return_inverse=True)
    table = [
        patch_box(layer_fields[layer], (y, x), model_size, image_size) for layer, y, x in distinct.tolist()
    ]
    boxes = np.asarray(table, dtype=np.int64).reshape(-1, 4)[which.reshape(-1)]
    table = np.column_stack([sprite_row[neuron_of], neuron_of, rank_of, image_of, boxes]).astype(np.int64)

    pixels = np.zeros((rows.size, tile, tile * stimuli.k, 3), dtype=np.uint8)
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    done = 0
    for i in np.flatnonzero(np.maximum(heights, widths) > tile):  # shrunk: Pillow's BOX filter, one by one
        y0, x0, y1, x1 = boxes[i]
        fitted = fit_tile(Image.fromarray(images[image_of[i], y0:y1, x0:x1]), tile)
        _place_tile(pixels[sprite_row[neuron_of[i]]], int(rank_of[i]), fitted)
        done += 1
    enlarged = np.flatnonzero(np.maximum(heights, widths) <= tile)
    sizes = heights[enlarged] * (tile + 1) + widths[enlarged]
    # Tile r of a sprite row is pixels[row, :, r·tile:(r+1)·tile]: a 5-D view indexes it by (row, r) directly.
    tiles = pixels.reshape(rows.size, tile, stimuli.k, tile, 3)
    for size in np.unique(sizes):
        group = enlarged[sizes == size]
        height, width = int(heights[group[0]]), int(widths[group[0]])
        scale = tile / max(height, width)  # fit_tile's arithmetic, so the same tile size
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        down, across = nearest_sources(height, out_h), nearest_sources(width, out_w)
        top, left = (tile - out_h) // 2, (tile - out_w) // 2
        for start in range(0, group.size, _CHUNK):
            part = group[start : start + _CHUNK]
            # whole image rows first (contiguous copies), then per left edge one column gather for all
            lines = images[image_of[part][:, None], boxes[part, 0][:, None] + down[None, :]]
            lefts = boxes[part, 1]
            for x0 in np.unique(lefts):
                same = np.flatnonzero(lefts == x0)
                picked = lines if same.size == part.size else lines[same]
                # np.take, not lines[:, :, cols]: that one returns a transposed copy, 5× slower to write out
                grown = (
                    picked[:, :, x0 : x0 + width] if out_w == width else np.take(picked, x0 + across, axis=2)
                )
                tiles[
                    sprite_row[neuron_of[part[same]]],
                    top : top + out_h,
                    rank_of[part[same]],
                    left : left + out_w,
                ] = grown
            done += part.size
            if progress is not None:
                progress(done / max(1, order.size))
    logger.info("patches: %d crops from %d images (array path)", order.size, len(np.unique(image_of)))
    return Sprites(pixels=pixels, table=table, tile=tile)
