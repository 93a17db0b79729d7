"""Example patches: box = receptive field at the activation argmax, clipped; one decode per image; each
neuron's patches laid out as the tiles of one sprite — the path the patch job writes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from worker.engine.layers import default_layers
from worker.engine.patches import fit_tile, make_sprites, nearest_sources
from worker.engine.receptive_field import receptive_fields
from worker.engine.stimuli import compute_stimuli
from worker.errors import ConceptEvoError
from worker.models.demo_net import demo_vgg


def _world(side: int, input_side: int):
    torch.manual_seed(0)
    model = demo_vgg().eval()
    layers = default_layers(model)
    generator = torch.Generator().manual_seed(1)
    pictures = (torch.rand(24, 3, side, side, generator=generator) * 255).to(torch.uint8)
    inputs = F.interpolate(pictures.float() / 255, size=(input_side, input_side), mode="bilinear")
    stimuli = compute_stimuli(model, layers, inputs.split(10), k=4)
    fields = receptive_fields(model, layers, input_side)
    loads: Counter[int] = Counter()

    def load(index: int) -> Image.Image:
        loads[index] += 1
        return Image.fromarray(pictures[index].permute(1, 2, 0).numpy())

    return stimuli, fields, load, loads, pictures


def test_sprite_tiles_hold_the_field_at_the_argmax_and_each_image_is_decoded_once():
    stimuli, fields, load, loads, pictures = _world(64, 64)
    tile = 48
    sprites = make_sprites(stimuli, fields, load, tile=tile)
    assert sprites.pixels.shape == (stimuli.n_neurons, tile, tile * stimuli.k, 3)
    assert len(sprites.patches) == stimuli.n_neurons * stimuli.k
    assert set(loads) == set(np.unique(stimuli.indices).tolist()) and max(loads.values()) == 1
    assert [p.image_index for p in sprites.patches] == sorted(p.image_index for p in sprites.patches)
    for patch in sprites.patches[::7]:
        layer = stimuli.layer_names[stimuli.layer_of[patch.neuron]]
        y, x = stimuli.argmax_yx[patch.neuron, patch.rank]
        assert patch.image_index == stimuli.indices[patch.neuron, patch.rank]
        field = fields[layer]
        # Literal: the field's box centred on the argmax, clipped to the 64x64 image.
        cy, cx = (
            field.stride[0] * y + (field.lo[0] + field.hi[0]) / 2,
            field.stride[1] * x + (field.lo[1] + field.hi[1]) / 2,
        )
        half = (field.size[0] - 1) / 2, (field.size[1] - 1) / 2
        expected = (
            max(int(cy - half[0]), 0),
            max(int(cx - half[1]), 0),
            min(int(cy + half[0]) + 1, 64),
            min(int(cx + half[1]) + 1, 64),
        )
        assert patch.box == expected
        # The tile: the crop, longer side scaled to the tile, centred on black.
        height, width = expected[2] - expected[0], expected[3] - expected[1]
        scale = tile / max(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        top, left = (tile - h) // 2, (tile - w) // 2
        cell = sprites.pixels[patch.neuron, :, patch.rank * tile : (patch.rank + 1) * tile]
        crop = pictures[patch.image_index, :, expected[0] : expected[2], expected[1] : expected[3]]
        crop = crop.permute(1, 2, 0).numpy()
        inside = cell[top : top + h, left : left + w]
        np.testing.assert_array_equal(inside, fit_tile(Image.fromarray(crop), tile))
        outside = cell.copy()
        outside[top : top + h, left : left + w] = 0
        assert not outside.any()
        if layer == "features.1":  # tiny crops are upscaled NEAREST: exact input pixels as blocks
            small = Image.fromarray(inside).resize((width, height), Image.Resampling.NEAREST)
            np.testing.assert_array_equal(np.asarray(small), crop)


def test_fit_tile_keeps_aspect_and_averages_when_shrinking():
    up = fit_tile(
        Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3).repeat(3, 1).reshape(2, 3, 3)), 6
    )
    assert up.shape == (4, 6, 3)  # longer side 3 → 6, shorter 2 → 4: every pixel a 2×2 block
    np.testing.assert_array_equal(up[::2, ::2, 0], np.arange(6).reshape(2, 3))
    flat = np.zeros((8, 4, 3), dtype=np.uint8)
    flat[:, 2:] = 200
    down = fit_tile(Image.fromarray(flat), 4)
    assert down.shape == (4, 2, 3)
    np.testing.assert_array_equal(down[:, :, 0], [[0, 200]] * 4)  # BOX: each output averages its 2×2 block


def test_boxes_map_back_to_original_resolution():
    stimuli, fields, load, loads, _ = _world(128, 64)
    neurons = [0, 5, 200, 431]
    sprites = make_sprites(stimuli, fields, load, tile=16, input_size=64, neurons=neurons)
    assert sprites.pixels.shape[0] == len(neurons)
    assert {p.neuron for p in sprites.patches} == set(neurons) and max(loads.values()) == 1
    for patch in sprites.patches:
        layer = stimuli.layer_names[stimuli.layer_of[patch.neuron]]
        y, x = stimuli.argmax_yx[patch.neuron, patch.rank]
        y0, x0, y1, x1 = fields[layer].input_box(int(y), int(x), 64)
        assert patch.box == (2 * y0, 2 * x0, 2 * y1, 2 * x1)
    assert sprites.pixels.any(axis=(1, 2, 3)).all()  # every requested row got its tiles


def test_bad_arguments():
    stimuli, fields, load, _, _ = _world(64, 64)
    with pytest.raises(ConceptEvoError, match="tile size"):
        make_sprites(stimuli, fields, load, tile=0)
    with pytest.raises(ConceptEvoError, match="no receptive field"):
        make_sprites(stimuli, {}, load)
    with pytest.raises(ConceptEvoError, match="out of range"):
        make_sprites(stimuli, fields, load, neurons=[10_000])


def test_nearest_sources_reproduce_pillows_nearest_resize() -> None:
    for n_in in range(1, 129):
        row = np.arange(n_in, dtype=np.uint8)[None, :].repeat(2, axis=0)
        for n_out in range(1, 129):
            pillow = np.asarray(Image.fromarray(row).resize((n_out, 2), Image.Resampling.NEAREST))[0]
            np.testing.assert_array_equal(nearest_sources(n_in, n_out), pillow, err_msg=f"{n_in} → {n_out}")


@pytest.mark.parametrize(("side", "input_side", "tile"), [(64, 64, 64), (64, 64, 16), (128, 64, 48)])
def test_the_array_path_cuts_the_same_sprites_as_pillow(side: int, input_side: int, tile: int) -> None:
    stimuli, fields, load, _loads, pictures = _world(side, input_side)
    images = pictures.permute(0, 2, 3, 1).numpy()
    size = None if side == input_side else input_side
    one_by_one = make_sprites(stimuli, fields, load, tile=tile, input_size=size)
    at_once = make_sprites(stimuli, fields, load, tile=tile, input_size=size, images=images)
    assert at_once.patches == one_by_one.patches
    np.testing.assert_array_equal(at_once.pixels, one_by_one.pixels)
    heights = [p.box[2] - p.box[0] for p in one_by_one.patches]
    assert min(heights) < tile or max(heights) > tile  # the case enlarges, shrinks, or both
    some = [5, 0, 17]
    np.testing.assert_array_equal(
        make_sprites(stimuli, fields, load, tile=tile, input_size=size, neurons=some, images=images).pixels,
        make_sprites(stimuli, fields, load, tile=tile, input_size=size, neurons=some).pixels,
    )


def test_every_crop_size_up_to_the_tile_is_enlarged_like_pillow() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 20, 20, 3), dtype=np.uint8)
    for height in range(1, 21):
        for width in range(1, 21):
            crop = Image.fromarray(image[0, :height, :width])
            expected = fit_tile(crop, 20)
            down = nearest_sources(height, expected.shape[0])
            across = nearest_sources(width, expected.shape[1])
            np.testing.assert_array_equal(
                image[0][down[:, None], across[None, :]], expected, err_msg=f"{height}×{width}"
            )
