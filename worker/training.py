"""Training with one checkpoint per epoch — for the demo runs and for users' own models and data.

:func:`train` trains any registered architecture (demo net, torchvision name, ``module:factory``) on
an ImageFolder dataset and writes the per-epoch layout every other part of ConceptEvo reads::

    out_dir/epoch_000.pt     the initialisation, before any step
    out_dir/epoch_001.pt …   one per epoch: {"state_dict", "epoch", "arch", "num_classes",
                             "class_names", "model_kwargs", "image_size", "normalize"}
    out_dir/history.json     per epoch (0 included): train/val loss, top-1, top-5, seconds, lr
    out_dir/run.json         config, class names, dataset root — written last: the completion marker

Train metrics are measured in eval mode on a fixed subset (≤ ``eval_train_images``) of the training
images, so epoch 0 is meaningful and epochs are comparable. Small splits are decoded once into
``uint8`` tensors and augmented on tensors (random crop with padding + horizontal flip), which keeps
the demo world within its CPU budget; splits too large for memory stream through a DataLoader.
Everything is seeded: the same config and seed give the same weights.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset
from tqdm import tqdm

from worker.allocator import keep_freed_memory
from worker.data.imagefolder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderDataset,
    load_split,
    make_loader,
    random_crop_flip,
)
from worker.engine._utils import eval_on
from worker.errors import ConceptEvoError
from worker.files import write_text_atomically
from worker.models.checkpoints import discover_epochs
from worker.models.registry import build_model, factory_accepts, resolve_factory
from worker.progress import progress_bar

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "constant")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        arch: architecture name (see :func:`worker.models.registry.build_model`).
        num_classes: class count; None infers it from the dataset's class folders.
        epochs: number of training epochs (checkpoints 0..epochs are written).
        batch_size: images per step.
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: learning rate (the peak rate for one-cycle).
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        schedule: ``"onecycle"`` (warm-up then annealing, per step) or ``"constant"``.
        dropout: passed to the factory when it accepts ``dropout``; None keeps the factory default.
        augment: random crop with padding (side/8) and horizontal flip.
        train_subset: use only this many training images (seeded, class-balanced); None uses all.
        seed: seed of initialisation, shuffling, augmentation and subset choice.
        channels_last: use the channels-last memory format (faster convolutions on CPU).
        threads: torch intra-op threads during training; None leaves torch's setting.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``… or ``"auto"`` (CUDA when available).
        image_size: resize/centre-crop images to this side; None keeps their own size.
        grad_clip: clip the gradient norm to this value; None disables clipping.
        model_kwargs: extra factory arguments (e.g. ``{"widths": [...]}`` for the demo net).
        eval_train_images: size of the fixed training subset on which train metrics are measured.
        eval_batch_size: images per evaluation batch.
        preload_limit_mb: decode the split into memory when it needs at most this many MB.
        num_workers: DataLoader processes when a split is streamed instead of preloaded.
    """

    arch: str = "demo-vgg"
    num_classes: int | None = None
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    dropout: float | None = None
    augment: bool = True
    train_subset: int | None = None
    seed: int = 0
    channels_last: bool = True
    threads: int | None = None
    device: str = "cpu"
    image_size: int | None = None
    grad_clip: float | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_train_images: int = 1000
    eval_batch_size: int = 256
    preload_limit_mb: int = 2048
    num_workers: int = 0

    def validate(self) -> None:
        """Check the values.

        Raises:
            ConceptEvoError: naming the first bad field.
        """
        if self.optimizer not in OPTIMIZERS:
            raise ConceptEvoError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConceptEvoError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("epochs", "batch_size", "eval_train_images", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConceptEvoError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConceptEvoError(f"lr must be a positive number, got {self.lr}")
        if self.train_subset is not None and self.train_subset < 1:
            raise ConceptEvoError(f"train_subset must be at least 1, got {self.train_subset}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConceptEvoError(f"dropout must be in [0, 1), got {self.dropout}")
        resolve_factory(self.arch)  # an unknown architecture is refused before any image is read

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_json` output (unknown keys are ignored).

        Args:
            data: dict of field values.

        Returns:
            The config.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def checkpoint_path(out_dir: str | Path, epoch: int) -> Path:
    """Path of epoch ``epoch``'s checkpoint in ``out_dir`` (``epoch_003.pt``).

    Args:
        out_dir: run directory.
        epoch: epoch number.

    Returns:
        The path.
    """
    return Path(out_dir) / f"epoch_{epoch:03d}.pt"


def is_complete(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a finished run: ``run.json`` and every epoch's checkpoint.

    Args:
        out_dir: run directory.

    Returns:
        True when the run finished.
    """
    out_dir = Path(out_dir)
    try:
        info = json.loads((out_dir / "run.json").read_text())
        epochs = int(info["config"]["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(checkpoint_path(out_dir, e).is_file() for e in range(epochs + 1))


def train(
    config: TrainConfig,
    dataset_root: str | Path,
    out_dir: str | Path,
    progress: bool = True,
    overwrite: bool = False,
    name: str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``config.arch`` on the ImageFolder at ``dataset_root``, one checkpoint per epoch.

    Args:
        config: hyper-parameters.
        dataset_root: a root holding ``train/`` and ``val/`` ImageFolders, or one plain ImageFolder
            (then used for both training and validation, with a warning).
        out_dir: run directory to write (created).
        progress: show tqdm bars (otherwise one log line per epoch).
        overwrite: replace a run already in ``out_dir`` (its checkpoints, history and run.json).
        name: label for progress bars and logs (default: ``out_dir``'s name).
        on_epoch: called with each epoch's history entry (epoch 0 included) once its checkpoint and
            metrics are written — e.g. to report a job's progress. An exception it raises stops the
            training; the run stays incomplete (no ``run.json``).

    Returns:
        The history: one dict per epoch 0..epochs (as written to ``history.json``).

    Raises:
        ConceptEvoError: bad config, bad or empty dataset, unknown architecture, an existing run in
            ``out_dir`` without ``overwrite``, or class count not matching the dataset.
    """
    config.validate()
    keep_freed_memory()  # a quarter of a CPU epoch went to the kernel re-faulting freed buffers: worker.allocator
    dataset_root = Path(dataset_root)
    out_dir = Path(out_dir)
    label = name or out_dir.name
    created = _first_missing(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    try:
        return _train(config, dataset_root, out_dir, progress, label, on_epoch)
    except BaseException:
        _remove_empty(out_dir, created)  # a run that failed before writing anything leaves no folder behind
        raise
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    config: TrainConfig,
    dataset_root: Path,
    out_dir: Path,
    progress: bool,
    label: str,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The body of :func:`train` (arguments as there): set up, record epoch 0, train and record each epoch.

    Returns:
        The history, one entry per epoch 0..epochs.
    """
    run = _TrainingRun(config, dataset_root, out_dir, progress, label, on_epoch)
    run.record_epoch(0, 0.0, None, 0)
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        running_loss, skipped = run.train_epoch(epoch)
        run.record_epoch(epoch, time.perf_counter() - start, running_loss, skipped)
    run.write_run_json()  # last: it marks the run complete
    return run.history


class _TrainingRun:
    """One training run's state: its data, seeded model, optimiser and schedule, and its history so far.

    Construction does the setup (and all of the seeding, in a fixed order, so that a seed gives the same
    weights); :meth:`train_epoch` and :meth:`record_epoch` are one epoch's two halves.

    Args:
        config: hyper-parameters (validated).
        dataset_root: root of the ImageFolder(s).
        out_dir: run directory (exists, holds no earlier run).
        progress: show tqdm bars (otherwise one log line per epoch).
        label: name for progress bars and logs.
        on_epoch: called with each epoch's history entry once it is written.

    Raises:
        ConceptEvoError: bad dataset, class count not matching it, or a device that is not available.
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset_root: Path,
        out_dir: Path,
        progress: bool,
        label: str,
        on_epoch: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.config, self.dataset_root, self.out_dir = config, dataset_root, out_dir
        self.progress, self.label, self.on_epoch = progress, label, on_epoch
        device = _device(config.device)
        normalize = (IMAGENET_MEAN, IMAGENET_STD)
        self.train_ds, self.val_ds, num_classes = _load_datasets(config, dataset_root, normalize)

        rng = np.random.default_rng(config.seed)
        train_idx = _balanced_subset(self.train_ds.targets, config.train_subset, rng)
        eval_idx = np.sort(rng.permutation(train_idx)[: config.eval_train_images])
        self.generator = torch.Generator().manual_seed(config.seed)  # shuffling and augmentation
        torch.manual_seed(config.seed)  # the model's initialisation

        model_kwargs = _model_kwargs(config)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = build_model(config.arch, num_classes, **model_kwargs).to(device)
        self.model = self.model.to(memory_format=memory_format)
        self.train_data = _Split(self.train_ds, train_idx, config, device, memory_format)
        self.eval_data = _Split(self.train_ds, eval_idx, config, device, memory_format, share=self.train_data)
        self.val_data = _Split(self.val_ds, np.arange(len(self.val_ds)), config, device, memory_format)

        self.steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
        self.optimizer = _optimizer(self.model, config)
        self.scheduler = _scheduler(self.optimizer, config, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss()
        #: written into every checkpoint, so that it can be loaded without the run's config
        self.meta = {
            "arch": config.arch,
            "num_classes": num_classes,
            "class_names": self.train_ds.class_names,
            "model_kwargs": {k: v for k, v in model_kwargs.items()},
            "image_size": config.image_size,
            "normalize": [list(normalize[0]), list(normalize[1])],
        }
        self.history: list[dict[str, Any]] = []
        logger.info(
            "%s: training %s on %d images (%d val, %d classes) for %d epochs on %s",
            label,
            config.arch,
            len(train_idx),
            len(self.val_ds),
            num_classes,
            config.epochs,
            device,
        )

    def train_epoch(self, epoch: int) -> tuple[float | None, int]:
        """One shuffled pass over the training images, stepping the optimiser (and schedule) per batch.

        Args:
            epoch: the epoch's number (1-based), for the progress bar and log.

        Returns:
            The mean loss of the steps taken (None when every step was skipped) and the number of steps
            skipped for a non-finite loss.
        """
        config = self.config
        self.model.train()
        total_loss, counted, skipped = 0.0, 0, 0
        bar = progress_bar(
            self.steps_per_epoch,
            f"{self.label} {epoch}/{config.epochs}",
            unit="step",
            leave=False,
            disable=not self.progress,
        )
        for x, y in self.train_data.batches(
            config.batch_size, shuffle=True, augment=config.augment, generator=self.generator
        ):
            loss_value = self._step(x, y)
            if math.isfinite(loss_value):
                total_loss += loss_value * len(y)
                counted += len(y)
            else:
                skipped += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
        bar.close()
        if skipped:
            logger.warning("%s epoch %d: skipped %d steps with a non-finite loss", self.label, epoch, skipped)
        return (total_loss / counted if counted else None), skipped

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimisation step on the batch ``(x, y)``; returns its loss (before the step)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.criterion(self.model(x), y)
        loss_value = float(loss.detach())
        # a diverged step would write NaN into the weights: skip it (train_epoch counts it)
        if math.isfinite(loss_value):
            loss.backward()
            if self.config.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()  # on skipped steps too: the schedule (total_steps) counts every batch
        return loss_value

    def record_epoch(self, epoch: int, seconds: float, running_loss: float | None, skipped: int) -> None:
        """Write epoch ``epoch``'s checkpoint, measure it and append its entry to ``history.json``.

        Args:
            epoch: epoch number (0: the initialisation).
            seconds: time the epoch's training took.
            running_loss: mean training loss of its steps (None for epoch 0 or when all were skipped).
            skipped: steps skipped for a non-finite loss.
        """
        start = time.perf_counter()
        _save_checkpoint(self.model, self.out_dir, epoch, self.meta)
        train_m = _evaluate(self.model, self.eval_data, self.criterion, self.config.eval_batch_size)
        val_m = _evaluate(self.model, self.val_data, self.criterion, self.config.eval_batch_size)
        entry = {
            "epoch": epoch,
            "train_loss": train_m[0],
            "train_top1": train_m[1],
            "train_top5": train_m[2],
            "val_loss": val_m[0],
            "val_top1": val_m[1],
            "val_top5": val_m[2],
            "seconds": round(seconds, 3),
            "eval_seconds": round(time.perf_counter() - start, 3),
            "lr": self.optimizer.param_groups[0]["lr"],
            "running_loss": running_loss,
            "skipped_steps": skipped,
        }
        # JSON has no NaN/inf: a diverged run's metrics are written as null
        entry = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in entry.items()}
        self.history.append(entry)
        _write_json(self.out_dir / "history.json", self.history)
        message = (
            f"{self.label} epoch {epoch}/{self.config.epochs}: train top-1 {entry['train_top1']:.3f} "
            f"val top-1 {entry['val_top1']:.3f} (loss {val_m[0]:.3f}, {seconds:.1f} s)"
        )
        if self.progress:
            tqdm.write(message)
        else:
            logger.info(message)
        if self.on_epoch is not None:
            self.on_epoch(dict(entry))

    def write_run_json(self) -> None:
        """Write ``run.json``: the config, the data it saw and the final metrics (the completion marker)."""
        _write_json(
            self.out_dir / "run.json",
            {
                "config": self.config.to_json(),
                "class_names": self.train_ds.class_names,
                "dataset_root": str(self.dataset_root.resolve()),
                "num_classes": self.meta["num_classes"],
                "num_train": int(len(self.train_data)),
                "num_val": len(self.val_ds),
                "skipped_files": len(self.train_ds.skipped) + len(self.val_ds.skipped),
                "model_kwargs": self.meta["model_kwargs"],
                "normalize": self.meta["normalize"],
                "final": self.history[-1],
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )


def _load_datasets(
    config: TrainConfig, dataset_root: Path, normalize: tuple[Sequence[float], Sequence[float]]
) -> tuple[ImageFolderDataset, ImageFolderDataset, int]:
    """The train and val splits of ``dataset_root`` and the class count, checked against each other.

    Args:
        config: the run's config (``image_size``, ``num_classes``).
        dataset_root: a root with ``train/`` and ``val/``, or one ImageFolder used for both.
        normalize: per-channel mean and std.

    Returns:
        The train split, the val split and the number of classes.

    Raises:
        ConceptEvoError: the splits' class folders differ, or ``config.num_classes`` is not theirs.
    """
    train_ds = load_split(dataset_root, "train", image_size=config.image_size, normalize=normalize)
    val_ds = load_split(dataset_root, "val", image_size=config.image_size, normalize=normalize)
    if train_ds.root == val_ds.root:
        logger.warning(
            "dataset %s has no train/val split: validation metrics are measured on training data",
            dataset_root,
        )
    if val_ds.class_names != train_ds.class_names:
        raise ConceptEvoError(
            f"dataset {dataset_root}: train and val class folders differ "
            f"({len(train_ds.class_names)} vs {len(val_ds.class_names)} classes)"
        )
    num_classes = config.num_classes or train_ds.num_classes
    if num_classes != train_ds.num_classes:
        raise ConceptEvoError(
            f"dataset {dataset_root} has {train_ds.num_classes} classes, config asks for {num_classes}"
        )
    return train_ds, val_ds, num_classes


def _model_kwargs(config: TrainConfig) -> dict[str, Any]:
    """Factory arguments: ``config.model_kwargs`` plus ``dropout`` and ``image_size`` where the factory takes them.

    Values given in ``model_kwargs`` win; a ``dropout`` the factory cannot take is dropped with a warning.
    """
    model_kwargs = dict(config.model_kwargs)
    if config.dropout is not None and "dropout" not in model_kwargs:
        if factory_accepts(config.arch, "dropout"):
            model_kwargs["dropout"] = config.dropout
        else:
            logger.warning(
                "architecture %s takes no dropout argument; dropout=%s ignored", config.arch, config.dropout
            )
    if (
        config.image_size is not None
        and "image_size" not in model_kwargs
        and factory_accepts(config.arch, "image_size")
    ):
        model_kwargs["image_size"] = config.image_size
    return model_kwargs


class _Split:
    """A list of sample indices of a dataset, served as normalised float batches.

    Decoded once into a ``uint8`` tensor when it fits ``preload_limit_mb``; otherwise streamed through
    a DataLoader (with the dataset's own augmentation).
    """

    def __init__(
        self,
        dataset: ImageFolderDataset,
        indices: np.ndarray,
        config: TrainConfig,
        device: torch.device,
        memory_format: torch.memory_format,
        share: _Split | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = torch.from_numpy(dataset.targets[self.indices])
        self.device = device
        self.memory_format = memory_format
        self.config = config
        self.images: torch.Tensor | None = None
        if share is not None and share.images is not None:
            position = {int(i): p for p, i in enumerate(share.indices)}
            self.images = share.images[[position[int(i)] for i in self.indices]]
        elif self._fits(config.preload_limit_mb):
            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
                decoded = list(pool.map(dataset.load_uint8, self.indices.tolist(), chunksize=64))
            shapes = {tuple(t.shape) for t in decoded}
            if len(shapes) > 1:
                raise ConceptEvoError(
                    f"dataset {dataset.root}: images have different sizes {sorted(shapes)[:3]}; give an image_size"
                )
            self.images = torch.stack(decoded)

    def __len__(self) -> int:
        return len(self.indices)

    def _fits(self, limit_mb: int) -> bool:
        first = self.dataset.load_uint8(int(self.indices[0]))
        return first.numel() * len(self.indices) <= limit_mb * 2**20

    def batches(
        self, batch_size: int, shuffle: bool, augment: bool, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images float32 normalised on device, labels on device)``."""
        if self.images is None:
            yield from self._streamed(batch_size, shuffle, augment, generator)
            return
        n = len(self.indices)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            chosen = order[start : start + batch_size]
            x = self.images[chosen]
            if augment:
                x = random_crop_flip(x, padding=max(1, x.shape[-1] // 8), generator=generator)
            x = self.dataset.to_float(x.to(self.device, non_blocking=True))
            yield x.contiguous(memory_format=self.memory_format), self.targets[chosen].to(self.device)

    def _streamed(
        self, batch_size: int, shuffle: bool, augment: bool, generator: torch.Generator | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.dataset.augment = augment
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if shuffle else 0
        loader = make_loader(
            Subset(self.dataset, self.indices.tolist()), batch_size, shuffle, seed, self.config.num_workers
        )
        try:
            for x, y, _ in loader:
                x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                yield x, y.to(self.device)
        finally:
            self.dataset.augment = False


@torch.no_grad()
def _evaluate(
    model: nn.Module, data: _Split, criterion: nn.Module, batch_size: int
) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 accuracy in eval mode."""
    loss_sum, top1, top5, count = 0.0, 0, 0, 0
    with eval_on(model):
        for x, y in data.batches(batch_size, shuffle=False, augment=False):
            logits = model(x).float()
            loss_sum += float(criterion(logits, y)) * len(y)
            k = min(5, logits.shape[1])
            best = logits.topk(k, dim=1).indices
            hits = best == y[:, None]
            top1 += int(hits[:, 0].sum())
            top5 += int(hits.any(dim=1).sum())
            count += len(y)
    loss = loss_sum / count
    return loss, top1 / count, top5 / count


def _balanced_subset(targets: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``size`` samples spread evenly over classes (all when None)."""
    if size is None or size >= len(targets):
        return np.arange(len(targets))
    classes = np.unique(targets)
    per_class = [rng.permutation(np.flatnonzero(targets == c)) for c in classes]
    quota = np.full(len(classes), size // len(classes))
    quota[: size % len(classes)] += 1
    chosen: list[np.ndarray] = []
    spare: list[np.ndarray] = []
    for members, want in zip(per_class, quota, strict=True):
        chosen.append(members[:want])
        spare.append(members[want:])
    picked = np.concatenate(chosen)
    if len(picked) < size:  # small classes could not fill their quota: top up from the rest
        rest = rng.permutation(np.concatenate(spare))
        picked = np.concatenate([picked, rest[: size - len(picked)]])
    return np.sort(picked)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule of ``config.schedule`` (None for ``"constant"``)."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
        )
    return None


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConceptEvoError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConceptEvoError(f"device {name!r} requested but CUDA is not available")
    return device


def _save_checkpoint(model: nn.Module, out_dir: Path, epoch: int, meta: dict[str, Any]) -> None:
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    final = checkpoint_path(out_dir, epoch)
    temp = final.with_name(f".{final.name}.tmp")
    torch.save({"state_dict": state, "epoch": epoch, **meta}, temp)
    os.replace(temp, final)


def _write_json(path: Path, data: Any) -> None:
    write_text_atomically(path, json.dumps(data, indent=2, allow_nan=False))


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet, or None."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_empty(out_dir: Path, created: Path | None) -> None:
    """Remove ``out_dir`` and its parents up to ``created`` (the folders training made) while they are empty."""
    if created is None:
        return
    for folder in (out_dir, *out_dir.parents):
        try:
            folder.rmdir()  # only succeeds on an empty folder
        except OSError:
            return
        if folder == created:
            return


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConceptEvoError(f"output {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        existing = list(discover_epochs(out_dir).values())
    except ConceptEvoError:
        existing = []
    ours = existing + [p for p in (out_dir / "history.json", out_dir / "run.json") if p.exists()]
    if ours and not overwrite:
        raise ConceptEvoError(
            f"output {out_dir} already holds a training run; choose another directory or overwrite it"
        )
    for path in ours:
        path.unlink()
