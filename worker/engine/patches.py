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
        patches: one :class:`PatchRef` per stimulus, ordered by image index, then neuron, then rank.
        tile: side of a tile in pixels.
    """

    pixels: np.ndarray
    patches: list[PatchRef]
    tile: int


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

    Returns:
        :class:`Sprites`.

    Raises:
        ConceptEvoError: a tile side below 1, a layer without a field, a neuron out of range.
    """
    if tile < 1:
        raise ConceptEvoError(f"patch tile size must be positive, got {tile}")
    rows = np.arange(stimuli.n_neurons) if neurons is None else np.asarray(neurons, dtype=np.int64)
    sprite_row = {int(n): i for i, n in enumerate(rows)}
    pixels = np.zeros((rows.size, tile, tile * stimuli.k, 3), dtype=np.uint8)
    patches: list[PatchRef] = []
    total = rows.size * stimuli.k
    for crop in iter_crops(stimuli, fields, load_image, input_size, rows):
        if progress is not None and len(patches) % 512 == 0:
            progress(len(patches) / total)
        fitted = fit_tile(crop.image, tile)
        y0 = (tile - fitted.shape[0]) // 2
        x0 = crop.rank * tile + (tile - fitted.shape[1]) // 2
        pixels[sprite_row[crop.neuron], y0 : y0 + fitted.shape[0], x0 : x0 + fitted.shape[1]] = fitted
        patches.append(PatchRef(crop.neuron, crop.rank, crop.image_index, crop.box))
    return Sprites(pixels=pixels, patches=patches, tile=tile)


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
    missing = [name for name in stimuli.layer_names if name not in fields]
    if missing:
        raise ConceptEvoError(f"no receptive field for layer {missing[0]!r}")
    rows = np.arange(stimuli.n_neurons) if neurons is None else np.asarray(neurons, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= stimuli.n_neurons):
        raise ConceptEvoError(f"neuron index out of range 0..{stimuli.n_neurons - 1}")
    in_size = (input_size, input_size) if isinstance(input_size, int) else input_size
    layer_fields = [fields[name] for name in stimuli.layer_names]

    # Every (neuron, rank) incidence, grouped by image (stable: neuron, then rank within an image).
    neuron_of = np.repeat(rows, stimuli.k)
    rank_of = np.tile(np.arange(stimuli.k), rows.size)
    image_of = stimuli.indices[rows].reshape(-1)
    order = np.argsort(image_of, kind="stable")
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
