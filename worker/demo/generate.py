"""The embedded demo world's image generator: 12 classes built from known visual concepts.

Every image is a 64×64 RGB picture of one shape on a background. A class is a combination of four
concept attributes (:data:`CONCEPTS`):

- ``shape``: circle, square, triangle, star, cross;
- ``colour``: the shape's colour group, warm (hue −25°…50°: red, orange, yellow) or cool (hue 175°…255°:
  cyan, blue); the actual hue, saturation and value are drawn per image within the group;
- ``texture`` of the shape: plain, stripes, dots, checker (the pattern's second colour is the shape's
  colour darkened to 30 %, so the hue stays the group's; the pattern turns with the shape);
- ``background``: light, dark, gradient (dark to light along a random direction), noise (colour noise).

The 12 classes (:data:`CLASSES`, sorted by name so that a class's index here is its ImageFolder index):

============================  =========  =======  ========  ==========
class                         shape      colour   texture   background
============================  =========  =======  ========  ==========
checker_square                square     warm     checker   light
cool_circle                   circle     cool     plain     light
cross_on_gradient             cross      cool     plain     gradient
cross_on_noise                cross      cool     plain     noise
dotted_triangle               triangle   cool     dots      light
star_on_dark                  star       cool     plain     dark
star_on_gradient              star       cool     plain     gradient
striped_circle                circle     warm     stripes   light
triangle_on_dark              triangle   cool     plain     dark
triangle_on_light             triangle   cool     plain     light
warm_circle                   circle     warm     plain     light
warm_square                   square     warm     plain     light
============================  =========  =======  ========  ==========

Every concept value matters: for each value there are two classes that differ **only** in that
attribute, so a classifier must see the value to tell them apart (checked by the tests):

- shape: circle/square (warm_circle vs warm_square), triangle/star (triangle_on_dark vs star_on_dark),
  star/cross (star_on_gradient vs cross_on_gradient);
- colour: warm/cool (warm_circle vs cool_circle);
- texture: plain/checker (warm_square vs checker_square), plain/stripes (warm_circle vs striped_circle),
  plain/dots (triangle_on_light vs dotted_triangle);
- background: light/dark (triangle_on_light vs triangle_on_dark), dark/gradient (star_on_dark vs
  star_on_gradient), gradient/noise (cross_on_gradient vs cross_on_noise).

Per image, drawn at random: the shape's circumradius (11–20 px), rotation (0–360°, clockwise on screen),
centre (anywhere the whole shape fits), exact colour, texture period, background tints and gradient
direction, and Gaussian pixel noise (σ 0.01–0.04 of full range). Shapes and textures are drawn at 4×
resolution and box-filtered down, so edges are anti-aliased.

Layout written by :func:`generate_demo_data` (an ImageFolder, so the same loading code serves users'
datasets)::

    out/train/<class>/<class>_00000.png ...
    out/val/<class>/<class>_00000.png ...
    out/attributes.json

Counts: ``default`` = 4,000 train + 1,000 val images; ``small`` = 288 train + 96 val (24 + 8 per class).
A split's total is divided evenly over the 12 classes; when it does not divide, the first classes in
:data:`CLASSES` order get one image more (default: 4 classes × 334 + 8 × 333 train, 4 × 84 + 8 × 83 val).

``attributes.json`` holds the generator version, seed and size, the concept vocabulary, the class list
with each class's attributes, and one record per image: ``path`` (relative, POSIX), ``split``,
``class``, ``class_index``, ``shape``, ``colour``, ``rgb`` (the shape's base colour, 0–255), ``hue``
(degrees), ``texture``, ``texture_period`` (px, 0 for plain), ``background``, ``size`` (circumradius,
px), ``rotation`` (degrees), ``centre`` (``[x, y]`` in pixels, x to the right, y down, the top-left
pixel covering [0, 1)²), ``noise_sigma`` (pixel noise, fraction of full range), and ``gradient_angle``
(degrees, dark → light) or ``noise_cells`` (colour-noise grid) for those backgrounds.

Determinism: each image's random numbers come from a numpy ``Generator`` seeded by
``(seed, split, class index, index within class)``, so the same seed gives the same bytes whatever the
order or number of worker processes, and a ``small`` set is the first images of each class of the
``default`` set with the same seed. PNGs are written with fixed options and no metadata.

Completeness and idempotence: the set is written into a hidden temporary sibling directory
(``.<name>.partial-*``) that is renamed to ``out`` only when every file is written, so an interrupted
run never looks complete (its partial directory is removed on any Python-level failure). Calling
:func:`generate_demo_data` on an existing complete directory with the same seed, size and generator
version (and all its images present) returns its summary without regenerating; a different seed, size or
version, missing images, or a non-empty directory that is not a demo set, is a :class:`~worker.errors.ConceptEvoError` asking the user to delete
it or choose another ``--out``.
"""

from __future__ import annotations

import colorsys
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from worker.errors import ConceptEvoError

logger = logging.getLogger(__name__)

#: Bumped whenever the drawing changes, so that an existing directory made by another version is refused.
GENERATOR_VERSION = 1

IMAGE_SIZE = 64
SUPERSAMPLE = 4
ATTRIBUTES_FILE = "attributes.json"
SPLITS: tuple[str, ...] = ("train", "val")

#: The concept vocabulary: attribute name → its values, in a fixed order.
CONCEPTS: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "star", "cross"),
    "colour": ("warm", "cool"),
    "texture": ("plain", "stripes", "dots", "checker"),
    "background": ("light", "dark", "gradient", "noise"),
}

#: Total (train, val) image counts per size.
SIZES: dict[str, tuple[int, int]] = {"small": (288, 96), "default": (4000, 1000)}

Size = Literal["small", "default"]

# Hue ranges in degrees (start, end) of the two colour groups; warm wraps around 0°.
_HUE_RANGES: dict[str, tuple[float, float]] = {"warm": (-25.0, 50.0), "cool": (175.0, 255.0)}
_TEXTURE_DARKEN = 0.3  # the pattern's second colour is the base colour times this
_SPLIT_CODES = {"train": 0, "val": 1}


@dataclass(frozen=True)
class ClassSpec:
    """One demo class: a name and its concept attributes.

    Args:
        name: directory name of the class in the ImageFolder.
        shape: one of ``CONCEPTS["shape"]``.
        colour: one of ``CONCEPTS["colour"]``.
        texture: one of ``CONCEPTS["texture"]``.
        background: one of ``CONCEPTS["background"]``.
    """

    name: str
    shape: str
    colour: str
    texture: str
    background: str

    @property
    def attributes(self) -> dict[str, str]:
        """The class's concept attributes as ``{attribute: value}`` (keys as in :data:`CONCEPTS`)."""
        return {key: getattr(self, key) for key in CONCEPTS}


#: The 12 classes, sorted by name (= ImageFolder order). See the module docstring for why these 12.
CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("checker_square", "square", "warm", "checker", "light"),
    ClassSpec("cool_circle", "circle", "cool", "plain", "light"),
    ClassSpec("cross_on_gradient", "cross", "cool", "plain", "gradient"),
    ClassSpec("cross_on_noise", "cross", "cool", "plain", "noise"),
    ClassSpec("dotted_triangle", "triangle", "cool", "dots", "light"),
    ClassSpec("star_on_dark", "star", "cool", "plain", "dark"),
    ClassSpec("star_on_gradient", "star", "cool", "plain", "gradient"),
    ClassSpec("striped_circle", "circle", "warm", "stripes", "light"),
    ClassSpec("triangle_on_dark", "triangle", "cool", "plain", "dark"),
    ClassSpec("triangle_on_light", "triangle", "cool", "plain", "light"),
    ClassSpec("warm_circle", "circle", "warm", "plain", "light"),
    ClassSpec("warm_square", "square", "warm", "plain", "light"),
)

CLASS_NAMES: tuple[str, ...] = tuple(spec.name for spec in CLASSES)


@dataclass
class DemoDataSummary:
    """What :func:`generate_demo_data` made (or found).

    Args:
        root: the dataset directory.
        classes: class names in ImageFolder order.
        n_train: number of training images.
        n_val: number of validation images.
        seconds: wall time of this call.
        seed: the seed of the set.
        size: ``"small"`` or ``"default"``.
        reused: True when an existing complete set was returned without regenerating.
    """

    root: Path
    classes: list[str]
    n_train: int
    n_val: int
    seconds: float
    seed: int = 0
    size: str = "default"
    reused: bool = False


@dataclass
class Sample:
    """One rendered image with its ground truth.

    Args:
        image: ``(64, 64, 3)`` uint8 RGB pixels.
        mask: ``(64, 64)`` float32 coverage of the shape in [0, 1] (anti-aliased edges).
        attributes: the image's ground-truth attributes (see the module docstring), without path/split.
    """

    image: np.ndarray
    mask: np.ndarray
    attributes: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------

_BIG = IMAGE_SIZE * SUPERSAMPLE
# Pixel-centre coordinates of the supersampled grid, in 64-pixel units.
_BIG_Y, _BIG_X = np.mgrid[0:_BIG, 0:_BIG].astype(np.float32)
_BIG_X = (_BIG_X + 0.5) / SUPERSAMPLE
_BIG_Y = (_BIG_Y + 0.5) / SUPERSAMPLE
_SMALL_Y, _SMALL_X = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5


def _downsample(big: np.ndarray) -> np.ndarray:
    """Box-filter a ``(256, 256)`` array to ``(64, 64)`` (exact 4×4 means)."""
    n, s = IMAGE_SIZE, SUPERSAMPLE
    return big.reshape(n, s, n, s).mean(axis=(1, 3), dtype=np.float32)


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    """Vertices of a shape with circumradius 1 around the origin, unrotated.

    Args:
        shape: a polygonal shape name (not ``circle``).

    Returns:
        The polygon's vertices ``(u, v)``.
    """
    if shape == "square":
        angles = [45.0, 135.0, 225.0, 315.0]
        return [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in angles]
    if shape == "triangle":
        angles = [-90.0, 30.0, 150.0]
        return [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in angles]
    if shape == "star":
        points = []
        for k in range(10):
            radius = 1.0 if k % 2 == 0 else 0.45
            angle = math.radians(-90.0 + 36.0 * k)
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
        return points
    if shape == "cross":
        w, h = 0.32, 1.0  # half arm width, half arm length (before scaling to circumradius 1)
        pts = [(w, -h), (w, -w), (h, -w), (h, w), (w, w), (w, h), (-w, h), (-w, w), (-h, w), (-h, -w)]
        pts += [(-w, -w), (-w, -h)]
        scale = 1.0 / math.hypot(w, h)
        return [(x * scale, y * scale) for x, y in pts]
    raise ConceptEvoError(f"unknown shape {shape!r}; expected one of {', '.join(CONCEPTS['shape'])}")


def _shape_mask(shape: str, centre: tuple[float, float], size: float, rotation: float) -> np.ndarray:
    """Anti-aliased coverage mask of a shape.

    Args:
        shape: shape name.
        centre: ``(x, y)`` in 64-pixel units.
        size: circumradius in pixels.
        rotation: degrees, clockwise on screen.

    Returns:
        ``(64, 64)`` float32 coverage in [0, 1].
    """
    s = SUPERSAMPLE
    canvas = Image.new("L", (_BIG, _BIG), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = centre
    if shape == "circle":
        # PIL's pixel (i, j) covers [i, i+1); a continuous coordinate c maps to PIL coordinate c - 0.5.
        box = [(cx - size) * s, (cy - size) * s, (cx + size) * s - 1, (cy + size) * s - 1]
        draw.ellipse(box, fill=255)
    else:
        cos_t, sin_t = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
        vertices = []
        for u, v in _unit_polygon(shape):
            x = cx + size * (u * cos_t - v * sin_t)
            y = cy + size * (u * sin_t + v * cos_t)
            vertices.append((x * s - 0.5, y * s - 0.5))
        draw.polygon(vertices, fill=255)
    big = np.asarray(canvas, dtype=np.float32) / 255.0
    return _downsample(big)


def _texture(texture: str, centre: tuple[float, float], rotation: float, period: float) -> np.ndarray:
    """Fraction of each pixel covered by the pattern's second colour.

    Args:
        texture: texture name.
        centre: pattern origin ``(x, y)`` (the shape's centre).
        rotation: degrees, clockwise on screen (the pattern turns with the shape).
        period: pattern period in pixels (stripes: one dark + one light band; checker: two cells).

    Returns:
        ``(64, 64)`` float32 in [0, 1]; all zeros for ``plain``.
    """
    if texture == "plain":
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    cos_t, sin_t = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    dx, dy = _BIG_X - centre[0], _BIG_Y - centre[1]
    u = dx * cos_t + dy * sin_t
    v = -dx * sin_t + dy * cos_t
    if texture == "stripes":
        big = (np.floor(u / (period / 2.0)) % 2.0).astype(np.float32)
    elif texture == "checker":
        big = ((np.floor(u / (period / 2.0)) + np.floor(v / (period / 2.0))) % 2.0).astype(np.float32)
    elif texture == "dots":
        du = u - period * np.round(u / period)
        dv = v - period * np.round(v / period)
        big = (du * du + dv * dv < (0.3 * period) ** 2).astype(np.float32)
    else:
        raise ConceptEvoError(
            f"unknown texture {texture!r}; expected one of {', '.join(CONCEPTS['texture'])}"
        )
    return _downsample(big)


def _tint(rng: np.random.Generator, value: float, max_saturation: float) -> np.ndarray:
    """A random low-saturation colour of the given brightness, as an RGB float array."""
    hue = rng.uniform(0.0, 1.0)
    sat = rng.uniform(0.0, max_saturation)
    return np.array(colorsys.hsv_to_rgb(hue, sat, value), dtype=np.float32)


def _background(background: str, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw a background.

    Args:
        background: background name.
        rng: the image's random generator.

    Returns:
        ``(64, 64, 3)`` float32 RGB in [0, 1] and extra attributes to record.
    """
    n = IMAGE_SIZE
    if background == "light":
        colour = _tint(rng, rng.uniform(0.82, 0.97), 0.15)
        return np.broadcast_to(colour, (n, n, 3)).copy(), {}
    if background == "dark":
        colour = _tint(rng, rng.uniform(0.04, 0.2), 0.4)
        return np.broadcast_to(colour, (n, n, 3)).copy(), {}
    if background == "gradient":
        dark = _tint(rng, rng.uniform(0.05, 0.2), 0.35)
        light = _tint(rng, rng.uniform(0.8, 0.95), 0.25)
        angle = rng.uniform(0.0, 360.0)
        cos_a, sin_a = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        proj = (_SMALL_X - n / 2) * cos_a + (_SMALL_Y - n / 2) * sin_a
        half_extent = (abs(cos_a) + abs(sin_a)) * n / 2
        t = ((proj / half_extent + 1.0) / 2.0)[..., None]
        return (dark * (1.0 - t) + light * t).astype(np.float32), {"gradient_angle": round(angle, 3)}
    if background == "noise":
        cells = int(rng.choice([8, 16]))
        coarse = rng.uniform(0.1, 0.9, size=(cells, cells, 3))
        img = Image.fromarray((coarse * 255).astype(np.uint8), mode="RGB").resize((n, n), Image.BILINEAR)
        base = np.asarray(img, dtype=np.float32) / 255.0
        fine = rng.normal(0.0, 0.06, size=(n, n, 3)).astype(np.float32)
        return np.clip(base + fine, 0.0, 1.0), {"noise_cells": cells}
    raise ConceptEvoError(
        f"unknown background {background!r}; expected one of {', '.join(CONCEPTS['background'])}"
    )


def draw_image(shape: str, colour: str, texture: str, background: str, rng: np.random.Generator) -> Sample:
    """Render one image of the given concepts with random size, pose, colour, pattern and noise.

    Any combination of concept values can be drawn (not only the 12 classes').

    Args:
        shape: one of ``CONCEPTS["shape"]``.
        colour: one of ``CONCEPTS["colour"]``.
        texture: one of ``CONCEPTS["texture"]``.
        background: one of ``CONCEPTS["background"]``.
        rng: random generator; the image is a pure function of its state.

    Returns:
        The image, the shape's coverage mask and the ground-truth attributes.
    """
    for key, value in (
        ("shape", shape),
        ("colour", colour),
        ("texture", texture),
        ("background", background),
    ):
        if value not in CONCEPTS[key]:
            raise ConceptEvoError(f"unknown {key} {value!r}; expected one of {', '.join(CONCEPTS[key])}")
    n = IMAGE_SIZE
    size = float(rng.uniform(11.0, 20.0))
    rotation = float(rng.uniform(0.0, 360.0))
    margin = size + 1.0
    centre = (float(rng.uniform(margin, n - margin)), float(rng.uniform(margin, n - margin)))
    lo, hi = _HUE_RANGES[colour]
    hue = float(rng.uniform(lo, hi)) % 360.0
    sat = float(rng.uniform(0.6, 1.0))
    val = float(rng.uniform(0.65, 1.0))
    base = np.array(colorsys.hsv_to_rgb(hue / 360.0, sat, val), dtype=np.float32)
    period = float(rng.uniform(5.5, 8.0)) if texture != "checker" else float(rng.uniform(7.0, 10.0))
    if texture == "plain":
        period = 0.0

    bg, extra = _background(background, rng)
    mask = _shape_mask(shape, centre, size, rotation)
    pattern = _texture(texture, centre, rotation, period)[..., None]
    fg = base * (1.0 - pattern * (1.0 - _TEXTURE_DARKEN))
    alpha = mask[..., None]
    img = bg * (1.0 - alpha) + fg * alpha
    noise_sigma = float(rng.uniform(0.01, 0.04))
    img = img + rng.normal(0.0, noise_sigma, size=(n, n, 3)).astype(np.float32)
    pixels = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)

    rgb = [int(c) for c in np.rint(base * 255.0)]
    attributes: dict[str, Any] = {
        "shape": shape,
        "colour": colour,
        "rgb": rgb,
        "hue": round(hue, 3),
        "texture": texture,
        "texture_period": round(period, 3),
        "background": background,
        "size": round(size, 3),
        "rotation": round(rotation, 3),
        "centre": [round(centre[0], 3), round(centre[1], 3)],
        "noise_sigma": round(noise_sigma, 4),
        **extra,
    }
    return Sample(image=pixels, mask=mask, attributes=attributes)


def image_rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    """The random generator of one image, independent of generation order.

    Args:
        seed: the dataset seed (≥ 0).
        split: ``"train"`` or ``"val"``.
        class_index: index of the class in :data:`CLASSES`.
        index: index of the image within its class and split.

    Returns:
        A fresh numpy ``Generator``.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], class_index, index]))


def render_sample(class_index: int, seed: int = 0, split: str = "train", index: int = 0) -> Sample:
    """Render the image that :func:`generate_demo_data` writes for one (seed, split, class, index).

    Args:
        class_index: index of the class in :data:`CLASSES`.
        seed: dataset seed.
        split: ``"train"`` or ``"val"``.
        index: index within the class and split.

    Returns:
        The sample; its attributes also hold ``class`` and ``class_index``.
    """
    if not 0 <= class_index < len(CLASSES):
        raise ConceptEvoError(f"class index {class_index} out of range 0..{len(CLASSES) - 1}")
    if split not in _SPLIT_CODES:
        raise ConceptEvoError(f"unknown split {split!r}; expected train or val")
    spec = CLASSES[class_index]
    sample = draw_image(
        spec.shape, spec.colour, spec.texture, spec.background, image_rng(seed, split, class_index, index)
    )
    sample.attributes = {"class": spec.name, "class_index": class_index, **sample.attributes}
    return sample


# --------------------------------------------------------------------------------------------------
# Writing the ImageFolder
# --------------------------------------------------------------------------------------------------


def class_counts(total: int, n_classes: int = len(CLASSES)) -> list[int]:
    """Split ``total`` images over the classes: equal shares, the first ``total % n`` classes one more.

    Args:
        total: images in the split.
        n_classes: number of classes.

    Returns:
        Count per class, summing to ``total``.
    """
    share, extra = divmod(total, n_classes)
    return [share + (1 if k < extra else 0) for k in range(n_classes)]


def _jobs(size: str) -> list[tuple[str, int, int]]:
    """Every image of a size as ``(split, class_index, index)``, in writing order."""
    jobs: list[tuple[str, int, int]] = []
    for split, total in zip(SPLITS, SIZES[size], strict=True):
        for class_index, count in enumerate(class_counts(total)):
            jobs.extend((split, class_index, index) for index in range(count))
    return jobs


def _relative_path(split: str, class_index: int, index: int) -> str:
    """The image's path relative to the dataset root (POSIX separators)."""
    name = CLASSES[class_index].name
    return f"{split}/{name}/{name}_{index:05d}.png"


def _write_one(args: tuple[str, int, str, int, int]) -> dict[str, Any]:
    """Render and write one image; the unit of work of the (optional) worker pool.

    Args:
        args: ``(root, seed, split, class_index, index)``.

    Returns:
        The image's attributes record.
    """
    root, seed, split, class_index, index = args
    sample = render_sample(class_index, seed=seed, split=split, index=index)
    rel = _relative_path(split, class_index, index)
    Image.fromarray(sample.image, mode="RGB").save(
        os.path.join(root, rel), format="PNG", optimize=False, compress_level=6
    )
    return {"path": rel, "split": split, **sample.attributes}


def read_attributes(root: Path) -> dict[str, Any]:
    """Read a demo set's ``attributes.json``.

    Args:
        root: the dataset directory.

    Returns:
        The parsed file (keys ``generator_version``, ``seed``, ``size``, ``concepts``, ``classes``,
        ``counts``, ``images``).
    """
    path = Path(root) / ATTRIBUTES_FILE
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise ConceptEvoError(f"{path}: missing; not a demo dataset") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConceptEvoError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(data, dict) or "images" not in data or "classes" not in data:
        raise ConceptEvoError(f"{path}: not a demo attributes file")
    return data


def _existing(out: Path, seed: int, size: str, started: float) -> DemoDataSummary | None:
    """Return the summary of an existing complete set that matches, None when ``out`` is absent or empty."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConceptEvoError(f"{out}: exists and is not a directory; choose another --out")
    if not any(out.iterdir()):
        return None
    if not (out / ATTRIBUTES_FILE).is_file():
        raise ConceptEvoError(
            f"{out}: exists and is not a complete demo dataset; delete it or choose another --out"
        )
    data = read_attributes(out)
    found = (data.get("generator_version"), data.get("seed"), data.get("size"))
    if found != (GENERATOR_VERSION, seed, size):
        raise ConceptEvoError(
            f"{out}: holds a demo dataset with seed={found[1]}, size={found[2]}, "
            f"generator version {found[0]} (asked: seed={seed}, size={size}, version {GENERATOR_VERSION}); "
            "delete it or choose another --out"
        )
    counts = data.get("counts", {})
    expected = len(data["images"])
    present = sum(1 for split in SPLITS for _ in (out / split).glob("*/*.png"))
    if present != expected:
        raise ConceptEvoError(
            f"{out}: demo dataset is incomplete ({present} of {expected} images); "
            "delete it or choose another --out"
        )
    logger.info("demo dataset already complete at %s (seed %d, size %s); not regenerating", out, seed, size)
    return DemoDataSummary(
        root=out,
        classes=[c["name"] for c in data["classes"]],
        n_train=int(counts.get("train", 0)),
        n_val=int(counts.get("val", 0)),
        seconds=time.perf_counter() - started,
        seed=seed,
        size=size,
        reused=True,
    )


def _records(
    tasks: Sequence[tuple[str, int, str, int, int]],
    workers: int,
    progress: bool,
    on_image: Callable[[int, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Write every image, yielding its record in task order; ``on_image(done, total)`` after each one."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="demo images", unit="img")
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if bar is not None:
            bar.update(1)
        if on_image is not None:
            on_image(done, len(tasks))

    try:
        if workers <= 1:
            for record in map(_write_one, tasks):
                tick()
                yield record
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for record in pool.imap(_write_one, tasks, chunksize=64):
                    tick()
                    yield record
    finally:
        if bar is not None:
            bar.close()


def generate_demo_data(
    out: Path,
    size: Size = "default",
    seed: int = 0,
    progress: bool = False,
    workers: int = 1,
    on_image: Callable[[int, int], None] | None = None,
) -> DemoDataSummary:
    """Generate the demo ImageFolder and its ground-truth attributes (idempotent).

    The set is written into a hidden temporary sibling of ``out`` and renamed into place at the end, so
    an interrupted run never leaves a directory that looks complete. When ``out`` already holds a complete
    set with the same seed, size and generator version (every image present), its summary is returned
    without regenerating
    (``reused=True``); an empty ``out`` directory is filled.

    Args:
        out: dataset directory to create.
        size: ``"small"`` (288 train + 96 val) or ``"default"`` (4,000 train + 1,000 val).
        seed: non-negative seed; same seed, same bytes.
        progress: show a tqdm progress bar.
        workers: processes that render images (1 = in this process); the output does not depend on it.
            More than 1 uses a ``spawn`` pool, so the calling program must guard its entry point with
            ``if __name__ == "__main__"`` (console scripts and pytest do).
        on_image: called as ``on_image(done, total)`` after each image is written (e.g. a job's progress);
            not called when an existing set is reused. An exception it raises stops the generation, and the
            partial directory is removed.

    Returns:
        A :class:`DemoDataSummary`.

    Raises:
        ConceptEvoError: bad size, seed or workers; ``out`` holds something else (another seed, size or
            generator version, missing images, or files that are not a demo set); the directory cannot
            be written.
    """
    started = time.perf_counter()
    if size not in SIZES:
        raise ConceptEvoError(f"unknown demo size {size!r}; expected one of {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConceptEvoError(f"demo seed must be a non-negative integer, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConceptEvoError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out).expanduser().absolute()
    found = _existing(out, seed, size, started)
    if found is not None:
        return found

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise ConceptEvoError(f"{out}: cannot create the dataset directory ({exc.strerror or exc})") from exc
    try:
        for split in SPLITS:
            for spec in CLASSES:
                (tmp / split / spec.name).mkdir(parents=True)
        jobs = _jobs(size)
        tasks = [(str(tmp), seed, split, class_index, index) for split, class_index, index in jobs]
        logger.info("generating %d demo images (size %s, seed %d) into %s", len(tasks), size, seed, out)
        images = list(_records(tasks, workers, progress, on_image))
        n_train, n_val = SIZES[size]
        data = {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "size": size,
            "image_size": IMAGE_SIZE,
            "concepts": {key: list(values) for key, values in CONCEPTS.items()},
            "classes": [{"index": k, **spec.attributes, "name": spec.name} for k, spec in enumerate(CLASSES)],
            "counts": {
                "train": n_train,
                "val": n_val,
                "train_per_class": class_counts(n_train),
                "val_per_class": class_counts(n_val),
            },
            "images": images,
        }
        with (tmp / ATTRIBUTES_FILE).open("w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")
        if out.exists():
            out.rmdir()  # only an empty directory reaches this point; rmdir refuses anything else
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConceptEvoError(f"{out}: cannot write the demo dataset ({exc.strerror or exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    logger.info("demo dataset: %d train + %d val images in %.1f s at %s", n_train, n_val, seconds, out)
    return DemoDataSummary(
        root=out,
        classes=list(CLASS_NAMES),
        n_train=n_train,
        n_val=n_val,
        seconds=seconds,
        seed=seed,
        size=size,
        reused=False,
    )
