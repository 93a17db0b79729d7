"""Tests of the demo world's image generator: class design, drawn ground truth, layout, determinism."""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from worker.demo import generate as gen
from worker.demo.generate import (
    CLASSES,
    CONCEPTS,
    Sample,
    class_counts,
    draw_image,
    generate_demo_data,
    read_attributes,
    render_sample,
)
from worker.errors import ConceptEvoError

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _luminance(image: np.ndarray) -> np.ndarray:
    """Luminance in [0, 1] of a uint8 RGB image."""
    return image.astype(np.float64) @ LUMA / 255.0


def _interior(sample: Sample, erode: int = 1) -> np.ndarray:
    """Pixels fully inside the shape, away from its anti-aliased edge."""
    return ndimage.binary_erosion(sample.mask >= 0.999, iterations=erode)


def _far_background(sample: Sample, distance: int = 3) -> np.ndarray:
    """Background pixels at least ``distance`` pixels away from any shape pixel."""
    return ~ndimage.binary_dilation(sample.mask > 0.0, iterations=distance)


def _samples(n: int, seed: int, **fixed: str) -> list[Sample]:
    """``n`` images with the given concept values fixed and the others drawn at random."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        values = {key: fixed.get(key, str(rng.choice(CONCEPTS[key]))) for key in CONCEPTS}
        out.append(
            draw_image(values["shape"], values["colour"], values["texture"], values["background"], rng)
        )
    return out


def _explained_variance(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of ``values`` explained by the group means (R² of a one-way fit)."""
    total = float(((values - values.mean()) ** 2).sum())
    fitted = np.zeros_like(values)
    for g in np.unique(groups):
        fitted[groups == g] = values[groups == g].mean()
    return 1.0 - float(((values - fitted) ** 2).sum()) / total


def _pattern_coords(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in the shape's rotated frame (u along the pattern's period), per the recorded pose."""
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64) + 0.5
    cx, cy = sample.attributes["centre"]
    theta = math.radians(sample.attributes["rotation"])
    dx, dy = xs - cx, ys - cy
    return dx * math.cos(theta) + dy * math.sin(theta), -dx * math.sin(theta) + dy * math.cos(theta)


def _hue_degrees(rgb: np.ndarray) -> float:
    """Hue of an RGB colour (any scale) in degrees, in (-90, 270] so that both groups are intervals."""
    r, g, b = (float(c) / max(float(np.max(rgb)), 1e-9) for c in rgb)
    hue = colorsys.rgb_to_hsv(r, g, b)[0] * 360.0
    return hue - 360.0 if hue > 270.0 else hue


# --------------------------------------------------------------------------------------------------
# Class design
# --------------------------------------------------------------------------------------------------


def test_classes_are_twelve_distinct_combinations_in_imagefolder_order() -> None:
    names = [spec.name for spec in CLASSES]
    assert len(CLASSES) == 12
    assert names == sorted(names), "CLASSES must be in ImageFolder (sorted) order"
    assert len(set(names)) == 12
    combos = {tuple(spec.attributes.values()) for spec in CLASSES}
    assert len(combos) == 12
    for spec in CLASSES:
        assert set(spec.attributes) == set(CONCEPTS)
        for key, value in spec.attributes.items():
            assert value in CONCEPTS[key]


def test_every_concept_value_separates_some_pair_of_classes() -> None:
    """For each attribute value there are two classes differing only in that attribute, one with the value."""
    for key, values in CONCEPTS.items():
        others = [k for k in CONCEPTS if k != key]
        for value in values:
            pairs = [
                (a.name, b.name)
                for a, b in itertools.permutations(CLASSES, 2)
                if a.attributes[key] == value
                and b.attributes[key] != value
                and all(a.attributes[o] == b.attributes[o] for o in others)
            ]
            assert pairs, f"{key}={value} does not matter for telling any two classes apart"


# --------------------------------------------------------------------------------------------------
# Drawing: the ground truth matches the pixels
# --------------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_depends_on_seed_split_and_index() -> None:
    a = render_sample(3, seed=0, split="train", index=5)
    b = render_sample(3, seed=0, split="train", index=5)
    assert np.array_equal(a.image, b.image) and a.attributes == b.attributes
    for other in (
        render_sample(3, seed=1, split="train", index=5),
        render_sample(3, seed=0, split="val", index=5),
        render_sample(3, seed=0, split="train", index=6),
    ):
        assert not np.array_equal(a.image, other.image)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8


@pytest.mark.parametrize("shape", CONCEPTS["shape"])
def test_shape_sits_at_recorded_centre_with_recorded_size(shape: str) -> None:
    area_per_r2 = {
        "circle": math.pi,
        "square": 2.0,
        "triangle": 3.0 * math.sqrt(3.0) / 4.0,
        "star": 5.0 * 0.45 * math.sin(math.radians(36.0)),
        "cross": (4 * 0.32 * 2 - (2 * 0.32) ** 2) / (1 + 0.32**2),
    }[shape]
    for sample in _samples(12, seed=11, shape=shape):
        attrs = sample.attributes
        cx, cy = attrs["centre"]
        ys, xs = np.mgrid[0:64, 0:64] + 0.5
        weight = sample.mask.sum()
        assert abs((sample.mask * xs).sum() / weight - cx) < 0.35
        assert abs((sample.mask * ys).sum() / weight - cy) < 0.35
        assert sample.mask[int(cy), int(cx)] == pytest.approx(1.0)
        assert weight == pytest.approx(area_per_r2 * attrs["size"] ** 2, rel=0.07)
        edge = np.concatenate([sample.mask[0], sample.mask[-1], sample.mask[:, 0], sample.mask[:, -1]])
        assert edge.max() == 0.0, "the whole shape lies inside the image"
        assert 0.0 < sample.mask.min() + 1 and ((sample.mask > 0) & (sample.mask < 1)).any(), "anti-aliased"


@pytest.mark.parametrize("background", CONCEPTS["background"])
def test_background_is_what_was_recorded(background: str) -> None:
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    for sample in _samples(10, seed=21, background=background):
        far = _far_background(sample)
        lum = _luminance(sample.image)[far]
        design = np.stack([np.ones(far.sum()), xs[far], ys[far]], axis=1)
        coef, *_ = np.linalg.lstsq(design, lum, rcond=None)
        plane = design @ coef
        residual = float(np.std(lum - plane))
        r2 = 1.0 - float(np.var(lum - plane)) / float(np.var(lum))
        chroma = float(np.std(sample.image[far].astype(np.float64) / 255.0, axis=1).mean())
        ramp = (abs(coef[1]) + abs(coef[2])) * 64.0  # the plane's luminance range over the whole image
        if background == "light":
            assert lum.mean() > 0.7 and residual < 0.05 and ramp < 0.1
        elif background == "dark":
            assert lum.mean() < 0.25 and residual < 0.05 and ramp < 0.1
        elif background == "gradient":
            assert r2 > 0.85 and ramp > 0.45
        else:  # colour noise: strong local variation that no plane explains, in colour, not just grey
            assert residual > 0.08 and r2 < 0.3 and chroma > 0.08


@pytest.mark.parametrize("texture", CONCEPTS["texture"])
def test_texture_is_what_was_recorded(texture: str) -> None:
    shapes = ("circle", "square") if texture != "plain" else CONCEPTS["shape"]
    checked = 0
    for k, sample in enumerate(_samples(16, seed=31, texture=texture, background="light")):
        if sample.attributes["shape"] not in shapes:
            sample = draw_image(shapes[k % len(shapes)], "warm", texture, "light", np.random.default_rng(k))
        inside = _interior(sample)
        if inside.sum() < 60:
            continue
        # Brightness (HSV value): the pattern's second colour is the base colour darkened to 30 %.
        lum = sample.image[inside].max(axis=1) / 255.0
        if texture == "plain":
            assert lum.std() < 0.05, "a plain shape has only pixel noise inside"
            assert sample.attributes["texture_period"] == 0.0
            checked += 1
            continue
        assert lum.std() > 0.1, f"{texture} must vary inside the shape"
        period = sample.attributes["texture_period"]
        u, v = _pattern_coords(sample)
        u_bin = np.floor((u[inside] % period) / period * 8).astype(int)
        v_bin = np.floor((v[inside] % period) / period * 8).astype(int)
        along_u = _explained_variance(lum, u_bin)
        along_v = _explained_variance(lum, v_bin)
        both = _explained_variance(lum, u_bin * 8 + v_bin)
        threshold = (lum.max() + lum.min()) / 2
        dark_share = float((lum < threshold).mean())
        if texture == "stripes":  # periodic along u only
            assert along_u > 0.6 and along_v < 0.3
            assert 0.3 < dark_share < 0.7
        elif texture == "checker":  # neither direction alone, both together
            assert along_u < 0.3 and along_v < 0.3 and both > 0.6
            assert 0.3 < dark_share < 0.7
        else:  # dots: small dark discs on a lattice
            assert both > 0.5
            assert 0.1 < dark_share < 0.42
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("colour", CONCEPTS["colour"])
@pytest.mark.parametrize("texture", CONCEPTS["texture"])
def test_colour_group_matches_the_shapes_pixels(colour: str, texture: str) -> None:
    for sample in _samples(6, seed=41, colour=colour, texture=texture):
        inside = _interior(sample)
        if inside.sum() < 20:
            continue
        mean_rgb = sample.image[inside].astype(np.float64).mean(axis=0)
        hue = _hue_degrees(mean_rgb)
        recorded = _hue_degrees(np.array(sample.attributes["rgb"], dtype=np.float64))
        if colour == "warm":
            assert -30.0 <= hue <= 55.0 and -30.0 <= recorded <= 55.0
        else:
            assert 170.0 <= hue <= 260.0 and 170.0 <= recorded <= 260.0
        if texture == "plain":
            assert np.abs(mean_rgb - np.array(sample.attributes["rgb"])).max() < 8.0


def test_draw_image_rejects_unknown_concepts() -> None:
    with pytest.raises(ConceptEvoError, match="unknown shape 'hexagon'"):
        draw_image("hexagon", "warm", "plain", "light", np.random.default_rng(0))
    with pytest.raises(ConceptEvoError, match="unknown texture"):
        draw_image("circle", "warm", "zigzag", "light", np.random.default_rng(0))
    with pytest.raises(ConceptEvoError, match="out of range"):
        render_sample(12)


# --------------------------------------------------------------------------------------------------
# The ImageFolder on disk
# --------------------------------------------------------------------------------------------------


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_class_counts_are_exact_and_balanced() -> None:
    assert class_counts(4000) == [334] * 4 + [333] * 8
    assert class_counts(1000) == [84] * 4 + [83] * 8
    assert class_counts(288) == [24] * 12
    assert gen.SIZES["default"] == (4000, 1000)


def test_layout_and_attributes_agree(small_demo_dataset: Path) -> None:
    root = small_demo_dataset
    data = read_attributes(root)
    assert data["seed"] == 0 and data["size"] == "small"
    assert [c["name"] for c in data["classes"]] == [spec.name for spec in CLASSES]
    assert {k: tuple(v) for k, v in data["concepts"].items()} == CONCEPTS
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*.png")}
    listed = [record["path"] for record in data["images"]]
    assert len(listed) == len(set(listed)) == 288 + 96
    assert set(listed) == on_disk
    for split, per_class in (("train", 24), ("val", 8)):
        for spec in CLASSES:
            files = sorted((root / split / spec.name).glob("*.png"))
            assert [f.name for f in files] == [f"{spec.name}_{i:05d}.png" for i in range(per_class)]
    specs = {spec.name: spec for spec in CLASSES}
    for record in data["images"]:
        split, cls, _ = record["path"].split("/")
        assert record["split"] == split and record["class"] == cls
        assert CLASSES[record["class_index"]].name == cls
        for key, value in specs[cls].attributes.items():
            assert record[key] == value
    # The bytes on disk are the rendered image of the recorded (seed, split, class, index).
    for record in data["images"][::37]:
        index = int(Path(record["path"]).stem.rsplit("_", 1)[1])
        sample = render_sample(record["class_index"], seed=0, split=record["split"], index=index)
        with Image.open(root / record["path"]) as img:
            assert img.mode == "RGB" and img.size == (64, 64)
            assert np.array_equal(np.asarray(img), sample.image)
        assert {k: record[k] for k in sample.attributes} == json.loads(json.dumps(sample.attributes))


def test_same_seed_same_bytes_other_seed_other_images(small_demo_dataset: Path, tmp_path: Path) -> None:
    reference = _hashes(small_demo_dataset)
    again = generate_demo_data(tmp_path / "again", size="small", seed=0, workers=2)
    assert not again.reused
    assert _hashes(tmp_path / "again") == reference, "same seed (and any worker count) gives the same bytes"
    other = generate_demo_data(tmp_path / "other", size="small", seed=1)
    assert (other.n_train, other.n_val) == (288, 96)
    other_hashes = _hashes(tmp_path / "other")
    assert other_hashes.keys() == reference.keys()
    pngs = [p for p in reference if p.endswith(".png")]
    assert all(other_hashes[p] != reference[p] for p in pngs)


def test_rerun_is_idempotent_and_mismatch_is_refused(small_demo_dataset: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in small_demo_dataset.rglob("*")}
    summary = generate_demo_data(small_demo_dataset, size="small", seed=0)
    assert summary.reused and summary.root == small_demo_dataset.absolute()
    assert (summary.n_train, summary.n_val) == (288, 96)
    assert summary.classes == [spec.name for spec in CLASSES]
    assert {p: p.stat().st_mtime_ns for p in small_demo_dataset.rglob("*")} == before
    with pytest.raises(
        ConceptEvoError, match=r"seed=0, size=small.*asked: seed=1.*delete it or choose another"
    ):
        generate_demo_data(small_demo_dataset, size="small", seed=1)
    with pytest.raises(ConceptEvoError, match="size=default"):
        generate_demo_data(small_demo_dataset, size="default", seed=0)


def test_foreign_directory_is_refused_and_empty_directory_filled(tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConceptEvoError, match="not a complete demo dataset"):
        generate_demo_data(foreign, size="small")
    assert (foreign / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    summary = generate_demo_data(empty, size="small", seed=3, progress=True)
    assert not summary.reused and read_attributes(empty)["seed"] == 3
    next((empty / "val" / "warm_square").glob("*.png")).unlink()
    with pytest.raises(ConceptEvoError, match=r"incomplete \(383 of 384 images\)"):
        generate_demo_data(empty, size="small", seed=3)
    err = capsys.readouterr().err
    assert "demo images" in err and "384/384" in err


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path: Path, monkeypatch) -> None:
    real = gen._write_one
    calls = {"n": 0}

    def failing(args):
        calls["n"] += 1
        if calls["n"] > 50:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(gen, "_write_one", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_data(tmp_path / "demo", size="small")
    assert list(tmp_path.iterdir()) == [], "neither the target nor a partial directory is left"
    monkeypatch.setattr(gen, "_write_one", real)
    assert not generate_demo_data(tmp_path / "demo", size="small").reused


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConceptEvoError, match="unknown demo size 'huge'"):
        generate_demo_data(tmp_path / "x", size="huge")  # type: ignore[arg-type]
    with pytest.raises(ConceptEvoError, match="non-negative"):
        generate_demo_data(tmp_path / "x", seed=-1)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConceptEvoError, match="not a directory"):
        generate_demo_data(tmp_path / "file", size="small")
