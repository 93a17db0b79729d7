"""ImageFolder loading of users' data: classes, probing, skipping bad files, splits, preloading."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worker.data.imagefolder import ImageFolderDataset, load_split, make_loader, random_crop_flip
from worker.errors import ConceptEvoError

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 20)}


def write_folder(root: Path, per_class: int = 3, size: int = 12) -> Path:
    """A tiny ImageFolder: one colour per class, a white square at a varying spot."""
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            array = np.full((size, size, 3), colour, dtype=np.uint8)
            array[i : i + 3, i : i + 3] = 255
            Image.fromarray(array).save(root / name / f"{name}_{i}.png")
    return root


def test_classes_paths_targets_and_items(tmp_path):
    root = write_folder(tmp_path / "data")
    (root / "red" / "nested").mkdir()
    Image.new("L", (20, 10), 128).save(root / "red" / "nested" / "grey.jpg")  # grayscale, other size
    ds = ImageFolderDataset(root, image_size=12, normalize=None)
    assert ds.class_names == ["blue", "green", "red"]
    assert len(ds) == 10 and ds.skipped == []
    assert ds.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert [p.name for p in ds.paths[:3]] == ["blue_0.png", "blue_1.png", "blue_2.png"]
    x, label, index = ds[3]
    assert x.dtype == torch.float32 and x.shape == (3, 12, 12) and label == 1 and index == 3
    assert torch.allclose(x[:, -1, -1], torch.tensor([30, 200, 40]) / 255.0)
    grey = ds[9][0]  # converted to RGB and resized/cropped to a square
    assert grey.shape == (3, 12, 12) and torch.allclose(grey[0], grey[1])
    assert ds.load_pil(9).mode == "RGB" and ds.load_pil(9).size == (20, 10)


def test_normalisation(tmp_path):
    root = write_folder(tmp_path / "data")
    ds = ImageFolderDataset(root, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    x = ds[0][0]
    assert torch.allclose(x[:, -1, -1], (torch.tensor([20, 40, 220]) / 255.0 - 0.5) / 0.25)


def test_unreadable_and_non_image_files_are_skipped_and_counted(tmp_path, caplog):
    root = write_folder(tmp_path / "data")
    (root / "blue" / "notes.txt").write_text("hello")
    (root / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (root / "red" / "red_0.png").read_bytes()
    (root / "red" / "truncated.png").write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING):
        ds = ImageFolderDataset(root)
    assert len(ds) == 9
    assert len(ds.skipped) == 3
    reasons = {path.name: reason for path, reason in ds.skipped}
    assert "not an image" in reasons["notes.txt"]
    assert "unreadable" in reasons["broken.png"] and "unreadable" in reasons["truncated.png"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3" in warnings[0].getMessage()


def test_empty_datasets_are_errors(tmp_path):
    with pytest.raises(ConceptEvoError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ConceptEvoError, match=r"flat has no class folders"):
        ImageFolderDataset(tmp_path / "flat")
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "readme.txt").write_text("x")
    with pytest.raises(ConceptEvoError, match=r"dataset .*empty is empty"):
        ImageFolderDataset(tmp_path / "empty")


def test_load_split_layouts(tmp_path):
    write_folder(tmp_path / "split" / "train")
    write_folder(tmp_path / "split" / "val", per_class=1)
    assert len(load_split(tmp_path / "split", "train")) == 9
    assert len(load_split(tmp_path / "split", "val")) == 3
    with pytest.raises(ConceptEvoError, match="has no 'test' split"):
        load_split(tmp_path / "split", "test")
    plain = write_folder(tmp_path / "plain")
    assert load_split(plain, "val").root == plain


def test_preload_matches_items_and_requires_one_size(tmp_path):
    root = write_folder(tmp_path / "data")
    ds = ImageFolderDataset(root, normalize=None)
    expected = [ds[i][0] for i in range(len(ds))]
    batch = ds.preload()
    assert batch.dtype == torch.uint8 and batch.shape == (9, 3, 12, 12)
    assert all(torch.allclose(ds.to_float(batch[i]), expected[i]) for i in range(len(ds)))
    Image.new("RGB", (20, 10)).save(root / "red" / "wide.png")
    with pytest.raises(ConceptEvoError, match="different sizes"):
        ImageFolderDataset(root).preload()
    assert ImageFolderDataset(root, image_size=12).preload().shape == (10, 3, 12, 12)


def test_preloaded_rgb_is_a_contiguous_copy_of_what_load_pil_decodes(tmp_path):
    """Patches are cut from it by array gathers: C-contiguous (a strided view cut 3.5× slower), the same pixels,
    and a copy (writing to it does not change the preloaded tensor the stimuli pass reads)."""
    ds = ImageFolderDataset(write_folder(tmp_path / "data"), normalize=None)
    assert ds.preloaded_rgb() is None  # nothing preloaded yet
    ds.preload()
    rgb = ds.preloaded_rgb()
    assert rgb.dtype == np.uint8 and rgb.shape == (9, 12, 12, 3) and rgb.flags["C_CONTIGUOUS"]
    for i in range(len(ds)):
        np.testing.assert_array_equal(rgb[i], np.asarray(ds.load_pil(i).convert("RGB")))
    rgb[:] = 0
    assert ds.preload().sum() > 0
    resized = ImageFolderDataset(write_folder(tmp_path / "other"), image_size=12)
    resized.preload()
    assert resized.preloaded_rgb() is None  # resized for the model: not what load_pil decodes


def test_loader_is_deterministic(tmp_path):
    ds = ImageFolderDataset(write_folder(tmp_path / "data"))
    first = [idx.tolist() for _, _, idx in make_loader(ds, 4, shuffle=True, seed=3)]
    second = [idx.tolist() for _, _, idx in make_loader(ds, 4, shuffle=True, seed=3)]
    other = [idx.tolist() for _, _, idx in make_loader(ds, 4, shuffle=True, seed=4)]
    assert first == second and first != other
    assert sorted(sum(first, [])) == list(range(9))


def test_random_crop_flip_shapes_and_content():
    batch = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    out = random_crop_flip(batch, padding=2, generator=generator)
    assert out.shape == batch.shape
    again = random_crop_flip(batch, padding=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    unflipped = random_crop_flip(batch, padding=0, generator=torch.Generator().manual_seed(0))
    for i in range(2):  # no padding: each image is itself or its mirror
        assert torch.equal(unflipped[i], batch[i]) or torch.equal(unflipped[i], batch[i].flip(-1))
