"""ConceptEvo without the web app: build a unified semantic space and place any model at any epoch in it.

This is the small public Python API (paper §3.2; DESIGN.md §4 items 1–7 and 10), composed from the
pure modules of :mod:`worker.engine`. The worker's job handlers call the same functions::

    from worker.pipeline import SpaceParams, build_space, place_snapshot, open_dataset
    from worker.models.checkpoints import load_model

    data = open_dataset("data/demo/dataset", split="train")
    base = load_model("demo-vgg", 12, "data/demo/runs/healthy/epoch_010.pt")
    space = build_space(base, data, SpaceParams(k=10, dim=30, epochs=2000))
    early = place_snapshot(space, load_model("demo-vgg", 12, "data/demo/runs/healthy/epoch_002.pt"), data)
    print(early.positions[:5], early.coverage, early.diversity)
    print(space.base.positions[:5], space.stats)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.data.imagefolder import ImageFolderDataset, load_split, make_loader
from worker.engine.health import concept_diversity, movement
from worker.engine.image_embedding import (
    UncoveredRule,
    choose_damping,
    coverage,
    fit_image_embedding,
    fit_uncovered_rule,
    image_vectors_for_all,
    neuron_vectors_from_stimuli,
)
from worker.engine.layers import LayerSpec, resolve_layers
from worker.engine.neuron_embedding import train_neuron_embedding
from worker.engine.projection import Projection, fit_projection
from worker.engine.stability import Stability, map_extent, split_half_stability
from worker.engine.stimuli import Stimuli, compute_stimuli
from worker.engine.ties import tied_stimuli, ties_per_layer
from worker.errors import ConceptEvoError

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

# Decode a dataset into memory once when it is at most this big (uint8); larger ones stream from disk.
PRELOAD_LIMIT_BYTES = 2 << 30


@dataclass(frozen=True)
class SpaceParams:
    """Hyper-parameters of a unified semantic space (paper Appendix A.4 defaults where it gives them).

    Attributes:
        k: stimuli per neuron (paper: 10).
        dim: embedding dimension (paper: 30).
        epochs: E, neuron-embedding epochs (paper: 10,000 on VGG16/ImageNet; fewer suffice for small nets).
        lr: α, learning rate (paper: 0.05).
        negatives: R, random neurons per pair (paper: 3).
        seed: seeds the embedding, the pairings and the 2-D map.
        batch_size: images per forward batch.
        layers: dotted module names to analyse (None = every conv, its BN where one follows).
    """

    k: int = 10
    dim: int = 30
    epochs: int = 2000
    lr: float = 0.05
    negatives: int = 3
    seed: int = 0
    batch_size: int = 128
    layers: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = list(self.layers) if self.layers else None
        return data


@dataclass
class PlacedSnapshot:
    """One model (one run at one epoch) placed in a space.

    Attributes:
        stimuli: its stimuli (Algorithm 2).
        vectors: ``(n_neurons, dim)`` its neurons' vectors in the space (Eq 2; Eq 1 for the base model).
        positions: ``(n_neurons, 2)`` float32 map positions.
        coverage: share of its stimuli whose image vectors came straight from Eq 3.
        diversity: concept diversity (mean per-dimension differential entropy of ``vectors``), tied neurons
            left out.
        tied: ``(n_neurons,)`` bool, neurons whose k stimulus maxima all tie (:mod:`worker.engine.ties`).
        stability: split-half stability of the placement (:mod:`worker.engine.stability`).
    """

    stimuli: Stimuli
    vectors: np.ndarray
    positions: np.ndarray
    coverage: float
    diversity: float
    tied: np.ndarray | None = None
    stability: Stability | None = None

    @property
    def ties_per_layer(self) -> list[int]:
        """Tied neurons per layer (in ``stimuli.layer_names`` order)."""
        tied = tied_stimuli(self.stimuli.maxima) if self.tied is None else self.tied
        return ties_per_layer(tied, self.stimuli.layer_of, len(self.stimuli.layer_names))

    def movement_from(self, earlier: PlacedSnapshot) -> float:
        """Mean Euclidean distance of each neuron's vector from ``earlier`` (same architecture)."""
        return movement(earlier.vectors, self.vectors)[0]


@dataclass
class UnifiedSpace:
    """A unified semantic space: the base model's embedding plus what places any other model in it."""

    params: SpaceParams
    layers: list[LayerSpec]
    n_images: int
    image_vectors: np.ndarray
    covered: np.ndarray
    rule: UncoveredRule
    projection: Projection
    base: PlacedSnapshot
    stats: dict[str, Any] = field(default_factory=dict)

    def place(self, stimuli: Stimuli) -> PlacedSnapshot:
        """Place a snapshot given its stimuli on the same dataset (Eq 2 + the fitted map)."""
        return place_stimuli(stimuli, self.image_vectors, self.covered, self.projection)


def place_stimuli(
    stimuli: Stimuli, image_vectors: np.ndarray, covered: np.ndarray, projection: Projection
) -> PlacedSnapshot:
    """Eq 2 for one snapshot: neuron vectors as the mean of their stimuli's image vectors, then the map.

    Args:
        stimuli: the snapshot's stimuli, computed on the space's dataset.
        image_vectors: ``(n_images, dim)`` a vector for every image of the space.
        covered: ``(n_images,)`` which images got their vector straight from Eq 3.
        projection: the space's fitted 2-D map.

    Returns:
        The :class:`PlacedSnapshot`.
    """
    if stimuli.n_images != len(image_vectors):
        raise ConceptEvoError(
            f"stimuli were computed on {stimuli.n_images} images, the space on {len(image_vectors)}"
        )
    vectors = neuron_vectors_from_stimuli(stimuli.indices, image_vectors)
    tied = tied_stimuli(stimuli.maxima)
    return PlacedSnapshot(
        stimuli=stimuli,
        vectors=vectors,
        positions=projection.transform(vectors),
        coverage=coverage(stimuli.indices, covered),
        diversity=concept_diversity(vectors, exclude=tied),
        tied=tied,
        stability=split_half_stability(
            stimuli.indices, image_vectors, projection.transform, map_extent(projection.base_positions)
        ),
    )


def open_dataset(root: str | Path, split: str = "train", image_size: int | None = None) -> ImageFolderDataset:
    """An ImageFolder split as the engine reads it (see :func:`worker.data.imagefolder.load_split`)."""
    return load_split(root, split, image_size=image_size)


def image_batches(
    dataset: ImageFolderDataset, batch_size: int, start: int = 0, stop: int | None = None
) -> Iterator[torch.Tensor]:
    """Float image batches of images ``start … stop-1`` in dataset order, cut every ``batch_size`` images from
    ``start`` (decoded once into memory when the dataset is small). A sharded pass (``stimuli_shard`` jobs)
    starts its ranges on multiples of ``batch_size``, so each image lands in the same batch as in one whole
    pass."""
    if dataset.augment:
        raise ConceptEvoError(
            f"dataset {dataset.root} has augmentation on; stimuli need the images as they are"
        )
    stop = len(dataset) if stop is None else stop
    if dataset.load_uint8(0).numel() * len(dataset) <= PRELOAD_LIMIT_BYTES:
        images = dataset.preload()  # decoded once per process (cached on the dataset)
        for first in range(start, stop, batch_size):
            yield dataset.to_float(images[first : min(first + batch_size, stop)])
        return
    if (start, stop) == (0, len(dataset)):
        for batch, _labels, _index in make_loader(dataset, batch_size, shuffle=False):
            yield batch
        return
    for first in range(start, stop, batch_size):
        last = min(first + batch_size, stop)
        yield dataset.to_float(torch.stack([dataset.load_uint8(i) for i in range(first, last)]))


def snapshot_stimuli(
    model: nn.Module,
    dataset: ImageFolderDataset,
    layers: list[LayerSpec],
    k: int,
    batch_size: int = 128,
    device: str = "cpu",
    keep_responses: bool = False,
    progress: Progress | None = None,
    images: tuple[int, int] | None = None,
) -> Stimuli:
    """Algorithm 2 for every neuron of ``layers``: one no-grad pass over ``dataset``.

    ``images``: only images ``start … stop-1`` (one shard of a sharded pass); the stimuli's indices are then
    relative to ``start`` (:func:`worker.engine.shards.offset_stimuli` makes them global).
    """
    start, stop = images if images is not None else (0, len(dataset))
    total = stop - start
    report = (lambda done: progress(done / total, f"stimuli {done}/{total} images")) if progress else None
    batches = image_batches(dataset, batch_size, start, stop)
    if torch.device(device).type == "cpu":
        # oneDNN convolutions and pooling run ~2× faster on NHWC tensors (measured on the demo net);
        # the layout changes no value the stimuli depend on beyond float rounding.
        model = model.to(memory_format=torch.channels_last)
        batches = (batch.contiguous(memory_format=torch.channels_last) for batch in batches)
    return compute_stimuli(
        model,
        layers,
        batches,
        k=k,
        device=device,
        progress=report,
        keep_responses=keep_responses,
    )


def build_space(
    base_model: nn.Module,
    dataset: ImageFolderDataset,
    params: SpaceParams = SpaceParams(),
    device: str = "cpu",
    progress: Progress | None = None,
    base_stimuli: Stimuli | None = None,
) -> UnifiedSpace:
    """Step 1 and the fitted parts of Step 2 of the paper: everything a space needs.

    Stimuli of the base model (Algorithm 2, with every image's response kept for the uncovered-image
    rule), co-activated pairs and the base neuron embedding (Eq 1, Algorithm 1), image embeddings
    (Eq 3–4) plus a calibrated vector for every other image, and the UMAP map fitted on the base neurons.

    Args:
        base_model: the base model (usually a fully trained snapshot).
        dataset: the images that define stimuli (the same for every snapshot placed later).
        params: hyper-parameters.
        device: torch device for the forward pass and the embedding.
        progress: ``f(fraction, message)``.
        base_stimuli: reuse already computed stimuli (must hold ``responses``).

    Returns:
        The :class:`UnifiedSpace`; ``space.base`` is the base model placed in it.
    """
    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    layers = resolve_layers(base_model, list(params.layers) if params.layers else None, input_shape(dataset))

    started = time.perf_counter()
    if base_stimuli is None or base_stimuli.responses is None:
        base_stimuli = snapshot_stimuli(
            base_model,
            dataset,
            layers,
            params.k,
            params.batch_size,
            device,
            keep_responses=True,
            progress=lambda f, m: report(0.3 * f, m),
        )
    timings["stimuli_s"] = time.perf_counter() - started

    started = time.perf_counter()
    embedding = train_neuron_embedding(
        base_stimuli.indices,
        base_stimuli.n_images,
        dim=params.dim,
        epochs=params.epochs,
        lr=params.lr,
        negatives=params.negatives,
        seed=params.seed,
        device=device,
        progress=lambda done, total, objective: report(
            0.3 + 0.4 * done / max(total, 1), f"embedding epoch {done}/{total}, objective {objective:.1f}"
        ),
    )
    timings["embedding_s"] = time.perf_counter() - started

    report(0.7, "image embedding")
    started = time.perf_counter()
    damping = choose_damping(
        base_stimuli.indices, embedding.vectors, base_stimuli.responses, seed=params.seed
    )
    images = fit_image_embedding(
        base_stimuli.indices, embedding.vectors, base_stimuli.n_images, damping=damping.damping
    )
    rule = fit_uncovered_rule(
        base_stimuli.responses, base_stimuli.indices, embedding.vectors, images, seed=params.seed
    )
    image_vectors = image_vectors_for_all(images, rule, base_stimuli.responses)
    timings["image_embedding_s"] = time.perf_counter() - started

    report(0.8, "fitting the 2-D map (UMAP)")
    started = time.perf_counter()
    projection = fit_projection(embedding.vectors, seed=params.seed)
    timings["umap_s"] = time.perf_counter() - started

    tied = tied_stimuli(base_stimuli.maxima)
    base = PlacedSnapshot(
        stimuli=base_stimuli,
        vectors=embedding.vectors,
        positions=projection.base_positions,
        coverage=1.0,
        diversity=concept_diversity(embedding.vectors, exclude=tied),
        tied=tied,
        # The base model sits at its Eq 1 vectors, but its Eq 2 placement is what later epochs get.
        stability=split_half_stability(
            base_stimuli.indices,
            image_vectors,
            projection.transform,
            map_extent(projection.base_positions),
            seed=params.seed,
        ),
    )
    stats = {
        "objective": _thin(embedding.objective_per_epoch),
        "pairs_per_epoch": int(embedding.pairs_per_epoch),
        "rmse": float(images.rmse),
        "r2": float(images.r2),
        "covered_images": int(images.covered.sum()),
        "damping": damping.to_json(),
        "n_images": int(base_stimuli.n_images),
        "uncovered_rule": {
            "normalisation": rule.normalisation,
            "m": int(rule.m),
            "temperature": float(rule.temperature),
            "heldout_rmse": float(rule.heldout_rmse),
            "heldout_r2": float(rule.heldout_r2),
        },
        **timings,
    }
    report(1.0, "space built")
    return UnifiedSpace(
        params=params,
        layers=layers,
        n_images=base_stimuli.n_images,
        image_vectors=image_vectors,
        covered=images.covered,
        rule=rule,
        projection=projection,
        base=base,
        stats=stats,
    )


def place_snapshot(
    space: UnifiedSpace,
    model: nn.Module,
    dataset: ImageFolderDataset,
    device: str = "cpu",
    progress: Progress | None = None,
) -> PlacedSnapshot:
    """Step 2 for one more model or epoch: its stimuli (one pass) and Eq 2 vectors, placed on the map."""
    stimuli = snapshot_stimuli(
        model, dataset, space.layers, space.params.k, space.params.batch_size, device, progress=progress
    )
    return space.place(stimuli)


def input_shape(dataset: ImageFolderDataset) -> tuple[int, int, int]:
    """``(C, H, W)`` of the dataset's images as the model sees them (its first image)."""
    return tuple(dataset.load_uint8(0).shape)  # type: ignore[return-value]


def _thin(series: np.ndarray, points: int = 500) -> list[list[float]]:
    """``[[epoch, value], …]`` of a long per-epoch series, at most ``points`` of them (for the stats JSON)."""
    epochs = np.unique(np.linspace(0, len(series) - 1, num=min(points, len(series))).round().astype(int))
    return [[int(e) + 1, float(series[e])] for e in epochs]
