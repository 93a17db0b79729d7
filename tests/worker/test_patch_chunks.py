"""Sprites cut and encoded a chunk of neurons at a time, and by several threads into their packs, are exactly
those of one pass over all neurons by one thread."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures.tiny_space import tiny_net
from worker.engine.patches import make_sprites
from worker.engine.receptive_field import receptive_fields
from worker.jobs import patches as patch_jobs
from worker.models.layers import default_layers
from worker.pipeline import open_dataset, snapshot_stimuli


def _sprites(root: Path, rows: list[dict]) -> dict[int, bytes]:
    """Each neuron's sprite, read from the byte range of the pack its patch set names."""
    ranges = {(r["neuron_id"], r["file"], r["byte_offset"], r["byte_length"]) for r in rows}
    assert len(ranges) == len({r["neuron_id"] for r in rows}) == len(rows)  # one set and sprite per neuron
    out = {}
    for neuron_id, file, offset, length in ranges:
        data = (root / file).read_bytes()[offset : offset + length]
        assert len(data) == length and data[:2] == b"\xff\xd8"  # a whole JPEG
        out[neuron_id] = data
    return out


def _boxes(rows: list[dict]) -> dict[int, list[list[int]]]:
    """Each neuron's boxes, ``(image_idx, y0, x0, y1, x1)`` by rank."""
    return {r["neuron_id"]: np.asarray(r["boxes"]).tolist() for r in rows}


def _world(tmp_path: Path):
    """A tiny net's stimuli on 12 random 24×24 images: ``(model, layers, dataset, stimuli, neuron_ids)``."""
    rng = np.random.default_rng(3)
    for c in ("a", "b"):
        (tmp_path / "images" / c).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / c / f"{c}{i}.png")
    torch.manual_seed(0)
    model = tiny_net().eval()
    layers = default_layers(model)
    dataset = open_dataset(tmp_path / "images")
    stimuli = snapshot_stimuli(model, dataset, layers, k=3, batch_size=4)
    return model, layers, dataset, stimuli, np.arange(100, 100 + stimuli.n_neurons)


@pytest.mark.parametrize("preloaded", [True, False])
def test_chunks_give_the_same_sprites_and_rows(tmp_path: Path, monkeypatch, preloaded: bool) -> None:
    model, layers, dataset, stimuli, neuron_ids = _world(tmp_path)
    if not preloaded:  # as for a data set too large to keep decoded: every chunk decodes its images again
        monkeypatch.setattr(dataset, "preloaded_rgb", lambda: None)
    assert (dataset.preloaded_rgb() is not None) == preloaded

    reported: list[float] = []

    def write(folder: str) -> list[dict]:
        reported.clear()
        return patch_jobs.write_patch_files(
            7,
            neuron_ids,
            stimuli,
            model,
            layers,
            dataset,
            progress=lambda fraction, _message: reported.append(fraction),
            staging=tmp_path / folder,
        )

    whole = write("whole")
    # one chunk (images decoded as needed) or part (decoded in memory) at the real budgets
    assert patch_jobs.sprite_chunk(stimuli.k) >= stimuli.n_neurons
    assert patch_jobs.sprite_chunk(stimuli.k, patch_jobs.PART_BYTES) >= stimuli.n_neurons
    # a budget of 3 sprites: the 10 neurons go in chunks (or parts, spread over the threads) of 3, 3, 3 and 1
    sprite_bytes = patch_jobs.TILE * patch_jobs.TILE * stimuli.k * 3
    monkeypatch.setattr(patch_jobs, "SPRITE_BYTES", 3 * sprite_bytes + 1)
    monkeypatch.setattr(patch_jobs, "PART_BYTES", 3 * sprite_bytes + 1)
    assert (
        patch_jobs.sprite_chunk(stimuli.k) == 3 == patch_jobs.sprite_chunk(stimuli.k, patch_jobs.PART_BYTES)
    )
    chunked = write("chunked")
    # progress over the whole stage, not restarting with each chunk
    assert reported == sorted(reported) and reported[-1] == pytest.approx(1.0), reported

    assert _boxes(chunked) == _boxes(whole)
    assert len(whole) == stimuli.n_neurons and {len(b) for b in _boxes(whole).values()} == {stimuli.k}
    assert _sprites(tmp_path / "chunked", chunked) == _sprites(tmp_path / "whole", whole)
    assert len(_sprites(tmp_path / "whole", whole)) == stimuli.n_neurons
    # packs, not a file per neuron: one per part (decoded in memory), or one per thread's share of a chunk
    packs = {name: len(list((tmp_path / name).rglob("*.pack"))) for name in ("whole", "chunked")}
    threads = 1 if preloaded else patch_jobs.SPRITE_THREADS
    assert packs == {
        "whole": min(threads, stimuli.n_neurons),
        "chunked": 4 if preloaded else 3 * min(threads, 3) + 1,
    }
    assert not list((tmp_path / "chunked").rglob("*.jpg"))


@pytest.mark.parametrize("staged", [True, False])
def test_threads_encode_the_same_bytes(tmp_path: Path, monkeypatch, staged: bool) -> None:
    """Sprites encoded by several threads into packs (staged, or in place through a rename) are byte for byte
    each sprite encoded alone, decode to its pixels within JPEG's error, and no temporary file is left."""
    model, layers, dataset, stimuli, neuron_ids = _world(tmp_path)
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(patch_jobs, "SPRITE_THREADS", 3)
    rows = patch_jobs.write_patch_files(
        7, neuron_ids, stimuli, model, layers, dataset, staging=tmp_path / "staged" if staged else None
    )
    written = _sprites(tmp_path / ("staged" if staged else "data"), rows)
    assert len(written) == stimuli.n_neurons
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no partial file left
    sprites = make_sprites(
        stimuli,
        receptive_fields(model, layers, (24, 24)),
        dataset.load_pil,
        tile=patch_jobs.TILE,
        images=dataset.preloaded_rgb(),
    )
    boxes = _boxes(rows)
    assert len(sprites.patches) == stimuli.n_neurons * stimuli.k
    for patch in sprites.patches:  # each set holds its neuron's patches in rank order
        assert boxes[int(neuron_ids[patch.neuron])][patch.rank] == [patch.image_index, *patch.box]
    for row, neuron_id in enumerate(neuron_ids):
        assert written[int(neuron_id)] == patch_jobs.encode_sprite(sprites.pixels[row])
        decoded = np.asarray(Image.open(io.BytesIO(written[int(neuron_id)])).convert("RGB"), dtype=np.int16)
        assert decoded.shape == sprites.pixels[row].shape
        assert np.abs(decoded - sprites.pixels[row]).mean() < 12  # 6–10 at quality 85 on these noisy images
    packs = sorted(
        str(p.relative_to(tmp_path / ("staged" if staged else "data"))) for p in tmp_path.rglob("*.pack")
    )
    assert {r["file"] for r in rows} == set(packs)
    assert all(p.startswith("patches/s7/") for p in packs)


def test_a_stopped_job_makes_no_more_sprites(tmp_path: Path, monkeypatch) -> None:
    """When progress raises (the job was cancelled), the parts not started yet are dropped, not made first."""
    model, layers, dataset, stimuli, neuron_ids = _world(tmp_path)
    monkeypatch.setattr(patch_jobs, "PART_BYTES", 1)  # one part per neuron: 10 parts
    monkeypatch.setattr(patch_jobs, "SPRITE_THREADS", 1)
    made: list[int] = []
    real = patch_jobs.make_sprites

    def counted(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(patch_jobs, "make_sprites", counted)

    def cancelled(_fraction: float, _message: str) -> None:
        raise RuntimeError("job cancelled")

    with pytest.raises(RuntimeError, match="job cancelled"):
        patch_jobs.write_patch_files(
            7, neuron_ids, stimuli, model, layers, dataset, progress=cancelled, staging=tmp_path / "s"
        )
    assert stimuli.n_neurons == 10 and 1 <= len(made) <= 2  # the first part, and at most the one running
