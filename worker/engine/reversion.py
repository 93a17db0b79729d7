"""The reversion check of the paper's §4.4 (Fig 6, Table 1 of Appendix B.2).

Does Eq 7 find the evolutions that matter? For a class ``c`` and an evolution stage ``t → t'``:

1. sample up to 128 training images of ``c`` (and, here, up to as many validation images);
2. compute every neuron's importance ``I_n`` (Eq 7) on the sampled training images;
3. per layer, rank its neurons by ``I_n`` (descending; ties broken by the mean ``S_n``, then by channel) and
   split them into 4 bins: 0–25 % (most important), 25–50 %, 50–75 %, 75–100 %; plus a random 25 %;
4. per layer and bin, *revert* the bin's evolutions — run model ``t'`` with those channels' maps replaced by
   model ``t``'s maps on the same input and finish the forward pass — and measure the change of top-1 and
   top-5 accuracy against ``t'`` without reversion, on the train and on the val images;
5. average the changes over layers, then over classes; repeat with fresh samples and report mean ± std
   over repetitions.

Efficiency: per image batch, one forward of ``t`` captures every layer's maps; one plain forward of ``t'``
gives the unreverted accuracy; then per layer one forward of ``t'`` over the batch repeated once per bin,
where a hook swaps each copy's selected channels in a single ``torch.where``. Any module whose output is
``(N, C, ...)`` works (conv maps, or features after a flatten).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from worker.engine._utils import dtype_of, eval_on, layer_slices, resolve_device
from worker.engine.hooks import LayerTaps
from worker.engine.importance import evolution_importance, sample_class_images
from worker.engine.layers import LayerSpec
from worker.errors import ConceptEvoError

logger = logging.getLogger(__name__)

BIN_LABELS: tuple[str, ...] = ("0-25%", "25-50%", "50-75%", "75-100%", "random")
METRICS: tuple[str, ...] = ("train_top1", "train_top5", "val_top1", "val_top5")
N_BINS = 4
RANDOM_FRACTION = 0.25

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class LabelledImages:
    """A labelled image set that loads images by index (so large datasets need not sit in memory).

    Attributes:
        targets: ``(N,)`` class of every image.
        load: ``indices → (len(indices), C, H, W)`` float tensor of those images, in that order.
    """

    targets: np.ndarray
    load: Callable[[np.ndarray], torch.Tensor]

    @classmethod
    def from_tensor(
        cls, images: torch.Tensor, targets: Sequence[int] | np.ndarray | torch.Tensor
    ) -> LabelledImages:
        """Wrap an in-memory ``(N, C, H, W)`` tensor and its labels.

        Raises:
            ConceptEvoError: images and labels differ in number.
        """
        labels = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
        if images.shape[0] != labels.shape[0]:
            raise ConceptEvoError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        return cls(targets=labels, load=lambda indices: images[torch.as_tensor(indices, dtype=torch.long)])


@dataclass(frozen=True)
class ReversionTable:
    """Accuracy changes when evolutions are reverted, shaped like the paper's Table 1.

    Attributes:
        classes: the evaluated classes.
        layers: the layer names, reverted one at a time.
        reps: number of repetitions.
        n_images: images sampled per class, split and repetition (at most).
        changes: ``(n_classes, reps, n_layers, 5, 4)`` accuracy change (reverted − unreverted) per class,
            repetition, layer, bin (:data:`BIN_LABELS`) and metric (:data:`METRICS`).
        base: ``(n_classes, reps, 4)`` unreverted accuracy of model ``t'`` per metric.
        label: free text naming the evolution stage (e.g. ``"epoch 3→7"``).
    """

    classes: list[int]
    layers: list[str]
    reps: int
    n_images: int
    changes: np.ndarray
    base: np.ndarray
    label: str = ""
    rows: tuple[str, ...] = field(default=BIN_LABELS)
    columns: tuple[str, ...] = field(default=METRICS)

    @property
    def per_rep(self) -> np.ndarray:
        """``(reps, 5, 4)``: changes averaged over layers, then over classes (§4.4 Step 5)."""
        return self.changes.mean(axis=2).mean(axis=0)

    @property
    def mean(self) -> np.ndarray:
        """``(5, 4)`` mean over repetitions of :attr:`per_rep`."""
        return self.per_rep.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """``(5, 4)`` standard deviation over repetitions of :attr:`per_rep` (sample std; 0 for one rep)."""
        per_rep = self.per_rep
        return per_rep.std(axis=0, ddof=1) if per_rep.shape[0] > 1 else np.zeros_like(per_rep[0])

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary: rows, columns, mean, std, base accuracy and what was averaged."""
        return {
            "label": self.label,
            "rows": list(self.rows),
            "columns": list(self.columns),
            "mean": self.mean.round(6).tolist(),
            "std": self.std.round(6).tolist(),
            "base_accuracy": dict(
                zip(self.columns, self.base.mean(axis=(0, 1)).round(6).tolist(), strict=True)
            ),
            "classes": list(self.classes),
            "layers": list(self.layers),
            "reps": self.reps,
            "n_images": self.n_images,
        }

    def to_markdown(self) -> str:
        """The table as Markdown: one row per bin, one column per metric, ``mean ± std``."""
        header = f"| {self.label or 'bin'} | " + " | ".join(self.columns) + " |"
        lines = [header, "|" + "---|" * (len(self.columns) + 1)]
        for i, row in enumerate(self.rows):
            cells = [f"{self.mean[i, j]:+.3f} ± {self.std[i, j]:.3f}" for j in range(len(self.columns))]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def rank_bins(
    importance: np.ndarray,
    mean_s: np.ndarray | None = None,
    n_bins: int = N_BINS,
    exclude: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split one layer's neurons into importance bins (§4.4 Step 3).

    Args:
        importance: ``(C,)`` Eq 7 ``I_n`` of the layer's neurons.
        mean_s: ``(C,)`` mean Eq 5 ``S_n``, breaking ties of ``I_n`` (higher first); ties left after that
            go to the lower channel.
        n_bins: number of bins (the paper: 4).
        exclude: ``(C,)`` bool, channels put in no bin — the tied ones (``worker/engine/ties.py``): with
            arbitrary stimuli they have no concept whose evolution could matter.

    Returns:
        ``n_bins`` arrays of channel indices, most important bin first (sizes differ by at most one;
        ``np.array_split``).
    """
    importance = np.asarray(importance, dtype=np.float64)
    secondary = np.zeros_like(importance) if mean_s is None else np.asarray(mean_s, dtype=np.float64)
    order = np.lexsort((np.arange(importance.size), -secondary, -importance))
    if exclude is not None:
        order = order[~np.asarray(exclude, dtype=bool)[order]]
    return [np.asarray(b, dtype=np.int64) for b in np.array_split(order, n_bins)]


def random_bin(channels: int, rng: np.random.Generator, fraction: float = RANDOM_FRACTION) -> np.ndarray:
    """A random ``fraction`` of a layer's channels (the paper's baseline: 25 %), sorted."""
    return np.sort(rng.choice(channels, size=int(round(channels * fraction)), replace=False)).astype(np.int64)


def reverted_logits(
    model_t: nn.Module,
    model_t2: nn.Module,
    layer: str,
    channel_sets: Sequence[Sequence[int] | np.ndarray],
    images: torch.Tensor,
    z_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits of model ``t'`` with ``layer``'s selected channels reverted to model ``t``'s maps.

    The batch is repeated once per channel set and run through ``t'`` in one forward; a hook on ``layer``
    replaces copy ``k``'s channels ``channel_sets[k]`` by ``Z^t`` (``torch.where`` on a ``(K, C)`` mask),
    and the network finishes the pass on the result.

    Args:
        model_t: the epoch-``t`` model (used only when ``z_t`` is not given).
        model_t2: the epoch-``t'`` model, in the mode the caller wants (eval for the paper's check).
        layer: dotted module name; its output must be ``(N, C, ...)``.
        channel_sets: ``K`` sets of channel indices to revert (an empty set reverts nothing).
        images: ``(B, C, H, W)`` batch on the models' device.
        z_t: ``layer``'s output of model ``t`` on ``images`` when already computed.

    Returns:
        ``(K, B, n_classes)`` logits.

    Raises:
        ConceptEvoError: no channel sets, a channel out of range, or a layer shape mismatch.
    """
    if not channel_sets:
        raise ConceptEvoError("no channel sets to revert")
    if z_t is None:
        z_t = capture_layers(model_t, [layer], images)[layer]
    channels = z_t.shape[1]
    mask = torch.zeros(len(channel_sets), channels, dtype=torch.bool)
    for k, chosen in enumerate(channel_sets):
        idx = torch.as_tensor(np.asarray(chosen, dtype=np.int64))
        if idx.numel() and (idx.min() < 0 or idx.max() >= channels):
            raise ConceptEvoError(f"channel index out of range 0..{channels - 1} for layer {layer!r}")
        mask[k, idx] = True
    mask = mask.to(z_t.device)
    k_sets, batch = len(channel_sets), images.shape[0]

    def revert(name: str, output: torch.Tensor) -> torch.Tensor:
        if output.shape[0] != k_sets * batch or output.shape[1:] != z_t.shape[1:]:
            raise ConceptEvoError(
                f"layer {layer!r} outputs {list(output.shape[1:])} at epoch t' but {list(z_t.shape[1:])} at epoch t"
            )
        stacked = output.reshape(k_sets, batch, *output.shape[1:])
        shaped = mask.view(k_sets, 1, channels, *([1] * (output.ndim - 2)))
        return torch.where(shaped, z_t.to(output.dtype).unsqueeze(0), stacked).reshape(output.shape)

    repeated = images.repeat(k_sets, *([1] * (images.ndim - 1))).to(dtype_of(model_t2))
    with torch.no_grad(), LayerTaps(model_t2, [layer], revert):
        logits = model_t2(repeated)
    return logits.reshape(k_sets, batch, -1)


def capture_layers(model: nn.Module, names: Sequence[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    """No-grad forward of ``model`` keeping a copy of each named layer's output as it was produced.

    Raises:
        ConceptEvoError: a layer output that is not at least ``(N, C)``.
    """
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> torch.Tensor:
        if output.ndim < 2:
            raise ConceptEvoError(f"layer {name!r} outputs shape {list(output.shape)}, not (N, C, ...)")
        kept[name] = output
        return output.clone()  # in-place ops downstream change the clone, not the kept map

    with torch.no_grad(), LayerTaps(model, list(names), keep):
        model(images.to(dtype_of(model)))
    return kept


def topk_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` counts of top-1 and top-5 hits over the batch dimension (second to last of ``logits``).

    Args:
        logits: ``(..., B, n_classes)``.
        labels: ``(B,)`` true classes.

    Returns:
        Float tensor ``(..., 2)``: number of images whose label is the argmax, and among the top 5
        (top ``n_classes`` when there are fewer than 5 classes).
    """
    k = min(5, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    hits = top == labels.view(*([1] * (logits.ndim - 2)), -1, 1)
    return torch.stack([hits[..., 0].sum(-1), hits.any(-1).sum(-1)], dim=-1).double()


def reversion_accuracy(
    model_t: nn.Module,
    model_t2: nn.Module,
    layer_sets: Mapping[str, Sequence[Sequence[int] | np.ndarray]],
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Top-1 / top-5 accuracy of ``t'`` unreverted and with each layer's channel sets reverted (§4.4 Step 4).

    Args:
        model_t: the epoch-``t`` model.
        model_t2: the epoch-``t'`` model.
        layer_sets: layer name → channel sets, each reverted separately.
        images: ``(N, C, H, W)`` images.
        labels: ``(N,)`` their classes.
        batch_size: images per batch (a reverted forward runs ``batch_size × len(sets)`` copies).
        device: where to compute; default the device of ``model_t``.

    Returns:
        ``(base, per_layer)``: ``base`` is ``(2,)`` [top-1, top-5] accuracy of ``t'``; ``per_layer[name]`` is
        ``(len(sets), 2)``.

    Raises:
        ConceptEvoError: no images, or images and labels differing in number.
    """
    dev = resolve_device(model_t, device)
    labels_t = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels))
    if images.shape[0] == 0:
        raise ConceptEvoError("no images to measure accuracy on")
    if images.shape[0] != labels_t.shape[0]:
        raise ConceptEvoError(f"{images.shape[0]} images but {labels_t.shape[0]} labels")
    names = list(layer_sets)
    base = torch.zeros(2, dtype=torch.float64, device=dev)
    per_layer = {
        name: torch.zeros(len(layer_sets[name]), 2, dtype=torch.float64, device=dev) for name in names
    }
    with eval_on(model_t, dev), eval_on(model_t2, dev):
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(dev, dtype=dtype_of(model_t2), non_blocking=True)
            y = labels_t[start : start + batch_size].to(dev)
            maps = capture_layers(model_t, names, x)
            with torch.no_grad():
                base += topk_hits(model_t2(x), y)
            for name in names:
                if layer_sets[name]:
                    logits = reverted_logits(model_t, model_t2, name, layer_sets[name], x, z_t=maps[name])
                    per_layer[name] += topk_hits(logits, y)
    n = float(images.shape[0])
    return (base / n).cpu().numpy(), {name: (hits / n).cpu().numpy() for name, hits in per_layer.items()}


def reversion_table(
    model_t: nn.Module,
    model_t2: nn.Module,
    layers: Sequence[LayerSpec],
    train: LabelledImages,
    val: LabelledImages,
    classes: Sequence[int],
    reps: int = 5,
    n_images: int = 128,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    label: str = "",
    progress: ProgressCallback | None = None,
    tied: Mapping[str, np.ndarray] | None = None,
) -> ReversionTable:
    """The paper's Table 1 for one evolution stage ``t → t'`` (§4.4 Steps 1–5, repeated ``reps`` times).

    Per class and repetition: sample up to ``n_images`` train and val images of the class (Step 1), compute
    Eq 7 importance on the train sample (Step 2), bin each layer's neurons by importance plus a random 25 %
    (Step 3), revert each bin of each layer separately and measure the accuracy changes on both samples
    (Step 4); average over layers, then over classes (Step 5).

    Args:
        model_t: the epoch-``t`` model.
        model_t2: the epoch-``t'`` model.
        layers: layers to revert, one at a time.
        train: labelled training images (importance is computed on these).
        val: labelled validation images.
        classes: classes to evaluate.
        reps: repetitions with fresh samples (the paper: 5).
        n_images: images sampled per class and split (the paper: 128).
        seed: base seed; repetition ``r`` of class ``c`` uses ``(seed, r, c)``.
        batch_size: images per batch.
        device: where to compute; default the device of ``model_t``.
        label: name of the evolution stage shown in the table.
        progress: optional ``f(fraction, message)`` called after each (class, repetition).
        tied: layer name → ``(channels,)`` bool of tied neurons, left out of the importance bins.

    Returns:
        :class:`ReversionTable`.

    Raises:
        ConceptEvoError: no classes or layers, ``reps < 1``, or a class missing from the train or val set.
    """
    layers = list(layers)
    classes = [int(c) for c in classes]
    if not classes:
        raise ConceptEvoError("no classes to evaluate the reversion on")
    if not layers:
        raise ConceptEvoError("no layers to revert")
    if reps < 1:
        raise ConceptEvoError(f"reps must be at least 1, got {reps}")
    dev = resolve_device(model_t, device)
    names = [spec.name for spec in layers]
    slices = layer_slices(layers)
    changes = np.zeros((len(classes), reps, len(layers), len(BIN_LABELS), len(METRICS)))
    base = np.zeros((len(classes), reps, len(METRICS)))
    total = len(classes) * reps
    for ci, c in enumerate(classes):
        for r in range(reps):
            rng = np.random.default_rng([seed, r, c])
            train_seed, val_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
            try:
                train_idx = sample_class_images(train.targets, c, n_images, seed=train_seed)
            except ConceptEvoError as error:
                raise ConceptEvoError(f"train set: {error}") from None
            try:
                val_idx = sample_class_images(val.targets, c, n_images, seed=val_seed)
            except ConceptEvoError as error:
                raise ConceptEvoError(f"val set: {error}") from None
            x_train, x_val = train.load(train_idx), val.load(val_idx)
            importance = evolution_importance(model_t, model_t2, layers, {c: x_train}, batch_size, dev)
            layer_sets = {}
            for spec in layers:
                cols = slices[spec.name]
                exclude = None if tied is None else tied.get(spec.name)
                bins = rank_bins(importance.I[0, cols], importance.mean_S[0, cols], exclude=exclude)
                layer_sets[spec.name] = [*bins, random_bin(spec.channels, rng)]
            for offset, x in ((0, x_train), (2, x_val)):
                labels = np.full(x.shape[0], c)
                unreverted, per_layer = reversion_accuracy(
                    model_t, model_t2, layer_sets, x, labels, batch_size, dev
                )
                base[ci, r, offset : offset + 2] = unreverted
                for li, name in enumerate(names):
                    changes[ci, r, li, :, offset : offset + 2] = per_layer[name] - unreverted
            done = ci * reps + r + 1
            logger.debug("reversion: class %d rep %d done", c, r)
            if progress is not None:
                progress(done / total, f"class {c}, repetition {r + 1}/{reps}")
    table = ReversionTable(
        classes=classes, layers=names, reps=reps, n_images=n_images, changes=changes, base=base, label=label
    )
    logger.info("reversion table %s:\n%s", label, table.to_markdown())
    return table
