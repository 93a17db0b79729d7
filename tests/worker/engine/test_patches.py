"""Example patches: box = receptive field at the activation argmax, clipped; one decode per image."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from worker.engine.patches import iter_patches
from worker.engine.receptive_field import receptive_fields
from worker.engine.stimuli import compute_stimuli
from worker.errors import ConceptEvoError
from worker.models.demo_net import demo_vgg
from worker.models.layers import default_layers


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


@pytest.mark.parametrize("fmt", ["webp", "png"])
def test_boxes_follow_the_field_at_the_argmax_and_each_image_is_decoded_once(fmt):
    stimuli, fields, load, loads, pictures = _world(64, 64)
    patches = list(iter_patches(stimuli, fields, load, out_size=48, fmt=fmt))
    assert len(patches) == stimuli.n_neurons * stimuli.k
    assert set(loads) == set(np.unique(stimuli.indices).tolist()) and max(loads.values()) == 1
    assert [p.image_index for p in patches] == sorted(p.image_index for p in patches)
    for patch in patches[::7]:
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
        decoded = Image.open(io.BytesIO(patch.data))
        assert decoded.format == fmt.upper()
        height, width = expected[2] - expected[0], expected[3] - expected[1]
        scale = 48 / max(height, width)
        assert decoded.size == (max(1, round(width * scale)), max(1, round(height * scale)))
        if fmt == "png" and layer == "features.1":  # tiny crops are upscaled NEAREST: exact pixels
            crop = pictures[patch.image_index, :, expected[0] : expected[2], expected[1] : expected[3]]
            small = decoded.resize((width, height), Image.Resampling.NEAREST)
            assert np.array_equal(np.asarray(small), crop.permute(1, 2, 0).numpy())


def test_boxes_map_back_to_original_resolution():
    stimuli, fields, load, loads, _ = _world(128, 64)
    neurons = [0, 5, 200, 431]
    patches = list(iter_patches(stimuli, fields, load, input_size=64, neurons=neurons))
    assert {p.neuron for p in patches} == set(neurons) and max(loads.values()) == 1
    for patch in patches:
        layer = stimuli.layer_names[stimuli.layer_of[patch.neuron]]
        y, x = stimuli.argmax_yx[patch.neuron, patch.rank]
        y0, x0, y1, x1 = fields[layer].input_box(int(y), int(x), 64)
        assert patch.box == (2 * y0, 2 * x0, 2 * y1, 2 * x1)


def test_bad_arguments():
    stimuli, fields, load, _, _ = _world(64, 64)
    with pytest.raises(ConceptEvoError, match="format"):
        next(iter_patches(stimuli, fields, load, fmt="gif"))
    with pytest.raises(ConceptEvoError, match="no receptive field"):
        next(iter_patches(stimuli, {}, load))
    with pytest.raises(ConceptEvoError, match="out of range"):
        next(iter_patches(stimuli, fields, load, neurons=[10_000]))
