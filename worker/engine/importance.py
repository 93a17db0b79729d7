"""Importance of concept evolutions for a class (paper §3.3, Eq 5–7).

For a class ``c``, epochs ``t → t'``, a layer ``l`` and one of its neurons (channels) ``n``:

* Eq 6: ``ΔZ_n(x) = Z_n^{t'}(x) − Z_n^t(x)`` on channel ``n``, zero on every other channel;
* Eq 5: ``S_n(x) = ∇ h^t_{l,c}(Z_l^t(x)) · ΔZ_n(x)``, the directional derivative of the epoch-``t`` model's
  class-``c`` logit, seen as a function ``h`` of layer ``l``'s output, along the neuron's evolution;
* Eq 7: ``I_n = |{x ∈ X_c : S_n(x) > 0}| / |X_c|``.

Because ``ΔZ_n`` is zero outside channel ``n``, ``S_n(x)`` is the spatial sum over channel ``n`` of
``∇h ⊙ (Z^{t'} − Z^t)``. So one forward of model ``t`` (keeping every chosen layer's output), one
backward of ``logit_c`` to all kept outputs at once and one no-grad forward of model ``t'`` give ``S`` for
every neuron of every layer of a batch. Several classes sharing the same images share the two forwards
(one backward per class).

Eval mode makes every image's logit depend on that image only (BatchNorm uses running statistics,
dropout is off), so the gradient of ``logits[:, c].sum()`` with respect to a batch's activations is the
per-image gradient.

Which activation is ``Z_l`` (a choice that differs from the authors' released code): by default the analysed
layer's own output — for a conv followed by BatchNorm, the BN output, *before* the ReLU — the same map whose
spatial maximum defines the stimuli (Algorithm 2), so stimuli, patches and importance all speak of one
activation. The authors' released importance code taps the conv output after an in-place ReLU has overwritten
it, so in effect it uses the post-ReLU map (while their stimuli use the pre-ReLU one). ``activation=
"post_relu"`` reproduces that: the tap applies a ReLU to the layer's output and the network continues from it.
That is exact where the layer feeds a ReLU (``relu(relu(z)) = relu(z)``, as for every conv/BN of the demo net
and VGG): ``S_n(x) = Σ ∇h_l(relu(Z^t)) ⊙ (relu(Z^{t'}) − relu(Z^t))`` over channel n, with ``h_l`` the network
from layer l's output on, so the gradient passes the following ReLU (zero where ``Z^t ≤ 0``), as a gradient
taken at the layer's output tensor does once an in-place ReLU has overwritten it. Both taps give identical
``I_n`` to the authors' code when they tap the same activation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from worker.engine._utils import dtype_of, eval_on, layer_slices, resolve_device
from worker.engine.hooks import LayerTaps, tap_for_gradients
from worker.engine.layers import LayerSpec
from worker.errors import ConceptEvoError

logger = logging.getLogger(__name__)

ImageBatches = torch.Tensor | Iterable[torch.Tensor]

ACTIVATIONS = ("pre_relu", "post_relu")
"""Which map importance taps: the layer's output as is (default) or after a ReLU (the authors' code)."""


@dataclass(frozen=True)
class Importance:
    """Eq 7 importance (and mean Eq 5 sensitivity) of every neuron for every requested class.

    Attributes:
        classes: the class indices, one per row.
        layers: the analysed layers; neurons are ordered layer by layer, channels within.
        I: ``(n_classes, n_neurons)`` fraction of the class's images with ``S_n(x) > 0`` (Eq 7).
        mean_S: ``(n_classes, n_neurons)`` mean of ``S_n(x)`` (Eq 5) over the class's images.
        n_images: ``(n_classes,)`` number of images each row was computed on.
    """

    classes: list[int]
    layers: list[LayerSpec]
    I: np.ndarray  # noqa: E741 - the paper's name
    mean_S: np.ndarray
    n_images: np.ndarray

    def layer_slices(self) -> dict[str, slice]:
        """Column range of each layer's neurons in :attr:`I` / :attr:`mean_S`.

        Returns:
            ``{layer name: slice}`` in layer order.
        """
        return layer_slices(self.layers)

    def row(self, class_idx: int) -> int:
        """Row of ``class_idx`` in :attr:`I`.

        Raises:
            ConceptEvoError: the class was not computed.
        """
        try:
            return self.classes.index(int(class_idx))
        except ValueError:
            raise ConceptEvoError(f"importance was not computed for class {class_idx}") from None


def evolution_importance(
    model_t: nn.Module,
    model_t2: nn.Module,
    layers: Sequence[LayerSpec],
    images_by_class: Mapping[int, ImageBatches],
    batch_size: int = 64,
    device: str | torch.device | None = None,
    activation: str = "pre_relu",
) -> Importance:
    """Eq 5–7 importance of every neuron's evolution ``t → t'`` for each class.

    Args:
        model_t: the epoch-``t`` model (gradients are taken through it).
        model_t2: the epoch-``t'`` model, same architecture.
        layers: the layers whose channels are the neurons (order defines the neuron order).
        images_by_class: class index → its images ``X_c``: an ``(N, C, H, W)`` tensor (split into batches
            of ``batch_size``) or an iterable of such batches. Classes mapped to the *same object* share
            the forward passes (one backward per class); an iterable is consumed once per object.
        batch_size: images per forward when a tensor is given.
        device: where to compute (``"cuda"``, ``"cpu"``, …); default the device of ``model_t``.
        activation: ``"pre_relu"`` (the layer's output, default) or ``"post_relu"`` (see the module
            docstring).

    Returns:
        :class:`Importance` with ``I`` (Eq 7) and ``mean_S`` (mean of Eq 5) per class and neuron.

    Raises:
        ConceptEvoError: no classes or no layers, a class with no images, a class index outside the
            logits, or layers whose shapes differ between the two models.
    """
    layers = list(layers)
    if not layers:
        raise ConceptEvoError("no layers to compute importance on")
    if not images_by_class:
        raise ConceptEvoError("no classes to compute importance for")
    if batch_size < 1:
        raise ConceptEvoError(f"batch_size must be at least 1, got {batch_size}")
    dev = resolve_device(model_t, device)
    classes = [int(c) for c in images_by_class]
    row_of = {c: i for i, c in enumerate(classes)}
    n_neurons = sum(spec.channels for spec in layers)
    positives = torch.zeros(len(classes), n_neurons, dtype=torch.float64, device=dev)
    sums = torch.zeros(len(classes), n_neurons, dtype=torch.float64, device=dev)
    counts = np.zeros(len(classes), dtype=np.int64)

    groups: dict[int, tuple[ImageBatches, list[int]]] = {}
    for c, images in images_by_class.items():
        groups.setdefault(id(images), (images, []))[1].append(int(c))

    with eval_on(model_t, dev), eval_on(model_t2, dev):
        for images, group_classes in groups.values():
            rows = [row_of[c] for c in group_classes]
            for batch in _batches(images, batch_size):
                S = batch_sensitivities(
                    model_t, model_t2, layers, batch, group_classes, device=dev, activation=activation
                )
                positives[rows] += (S > 0).sum(dim=1, dtype=torch.float64)
                sums[rows] += S.sum(dim=1, dtype=torch.float64)
                counts[rows] += S.shape[1]
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise ConceptEvoError(f"class {empty[0]} has no images to compute importance on")
    denominator = torch.as_tensor(counts, dtype=torch.float64, device=dev).unsqueeze(1)
    logger.info(
        "importance: %d classes, %d neurons in %d layers, %d images",
        len(classes),
        n_neurons,
        len(layers),
        int(counts.sum()),
    )
    return Importance(
        classes=classes,
        layers=layers,
        I=(positives / denominator).cpu().numpy(),
        mean_S=(sums / denominator).cpu().numpy(),
        n_images=counts,
    )


def batch_sensitivities(
    model_t: nn.Module,
    model_t2: nn.Module,
    layers: Sequence[LayerSpec],
    images: torch.Tensor,
    classes: Sequence[int],
    device: str | torch.device | None = None,
    activation: str = "pre_relu",
) -> torch.Tensor:
    """Eq 5 sensitivity ``S_n(x)`` of every neuron for every image of one batch and every class.

    One forward of ``model_t`` keeping each layer's output ``Z^t`` (the tensor the rest of the network
    consumes, shielded from in-place ops), one no-grad forward of ``model_t2`` for ``Z^{t'}``, and per class
    one backward of ``logits[:, c].sum()`` to all kept outputs at once; then
    ``S[c, x, n] = Σ_{h,w} ∇h(Z^t)[x, n] · (Z^{t'} − Z^t)[x, n]`` (Eq 5 with Eq 6's one-channel ``ΔZ_n``).

    The models are used in whatever mode they are in; :func:`evolution_importance` puts them in eval mode.

    Args:
        model_t: the epoch-``t`` model.
        model_t2: the epoch-``t'`` model.
        layers: the analysed layers (neuron order: layer by layer, channels within).
        images: ``(B, C, H, W)`` batch.
        classes: class indices whose logits are differentiated.
        device: where to compute; default the device of ``model_t``.
        activation: ``"pre_relu"`` or ``"post_relu"`` (see the module docstring).

    Returns:
        ``(len(classes), B, n_neurons)`` tensor of ``S_n(x)`` on ``device``.

    Raises:
        ConceptEvoError: a class outside the logits, or a layer whose output differs in shape between
            the models or is not at least ``(N, C)``.
    """
    if activation not in ACTIVATIONS:
        raise ConceptEvoError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    dev = resolve_device(model_t, device)
    names = [spec.name for spec in layers]
    x = images.to(dev, dtype=dtype_of(model_t), non_blocking=True)
    kept: dict[str, torch.Tensor] = {}
    post = activation == "post_relu"
    with torch.enable_grad(), LayerTaps(model_t, names, _after_relu(_tap_requiring_grad(kept), post)):
        logits = model_t(x)
    later: dict[str, torch.Tensor] = {}
    with torch.no_grad(), LayerTaps(model_t2, names, _after_relu(tap_for_gradients(later), post)):
        model_t2(x.to(dtype_of(model_t2)))
    if logits.ndim != 2:
        raise ConceptEvoError(f"model output has shape {list(logits.shape)}, expected (N, classes) logits")
    bad = [c for c in classes if not 0 <= int(c) < logits.shape[1]]
    if bad:
        raise ConceptEvoError(f"class {bad[0]} is outside the model's {logits.shape[1]} logits")
    deltas = []
    for spec in layers:
        z_t, z_t2 = kept[spec.name], later[spec.name]
        if z_t.shape != z_t2.shape or z_t.ndim < 2 or z_t.shape[1] != spec.channels:
            raise ConceptEvoError(
                f"layer {spec.name!r} outputs {list(z_t.shape)} at epoch t and {list(z_t2.shape)} at epoch t'; "
                f"expected matching (N, {spec.channels}, ...) maps"
            )
        deltas.append(z_t2.to(z_t.dtype) - z_t.detach())
    outputs = [kept[name] for name in names]
    per_class = []
    for i, c in enumerate(classes):
        with torch.enable_grad():  # also under a caller's no_grad
            target = logits[:, int(c)].sum()
        grads = torch.autograd.grad(target, outputs, retain_graph=i < len(classes) - 1, allow_unused=True)
        per_layer = []
        for grad, delta in zip(grads, deltas, strict=True):
            if grad is None:  # the logit does not depend on this layer
                per_layer.append(torch.zeros(delta.shape[:2], dtype=delta.dtype, device=delta.device))
            else:
                per_layer.append((grad * delta).flatten(2).sum(dim=2))
        per_class.append(torch.cat(per_layer, dim=1))
    return torch.stack(per_class)


def sample_class_images(
    targets: Sequence[int] | np.ndarray, class_idx: int, n: int = 128, seed: int = 0
) -> np.ndarray:
    """Indices of up to ``n`` images of a class, drawn without replacement (paper §4.4, Step 1).

    Args:
        targets: label of every image of the dataset.
        class_idx: the class.
        n: how many to draw (the paper: 128); all of the class's images when it has fewer.
        seed: random seed (the same seed gives the same sample).

    Returns:
        Sorted ``int64`` indices into ``targets``.

    Raises:
        ConceptEvoError: ``n < 1`` or the class has no images.
    """
    if n < 1:
        raise ConceptEvoError(f"number of images to sample must be at least 1, got {n}")
    labels = np.asarray(targets)
    members = np.flatnonzero(labels == class_idx)
    if members.size == 0:
        raise ConceptEvoError(f"class {class_idx} has no images")
    if members.size <= n:
        return members.astype(np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(members, size=n, replace=False)).astype(np.int64)


def _tap_requiring_grad(kept: dict[str, torch.Tensor]):
    """:func:`tap_for_gradients`, also when the model's parameters are frozen (output then needs grad)."""
    inner = tap_for_gradients(kept)

    def keep(name: str, output: torch.Tensor) -> torch.Tensor:
        if not output.requires_grad:
            output = output.detach().requires_grad_(True)
        return inner(name, output)

    return keep


def _after_relu(inner, on: bool):
    """``inner`` fed the ReLU of each output when ``on`` (the ``"post_relu"`` tap), else ``inner`` itself."""
    if not on:
        return inner

    def keep(name: str, output: torch.Tensor) -> torch.Tensor:
        return inner(name, torch.relu(output))

    return keep


def _batches(images: ImageBatches, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim < 2:
            raise ConceptEvoError(f"images must be a batch (N, C, H, W), got shape {list(images.shape)}")
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    for batch in images:
        if not isinstance(batch, torch.Tensor):
            raise ConceptEvoError(f"image batches must be tensors, got {type(batch).__name__}")
        if batch.shape[0]:
            yield batch
