"""Stimuli of every neuron: the k images whose activation map has the largest maximum.

Implements the paper's Algorithm 2 (``getStimuli``, Appendix A) for all neurons of all chosen layers in
**one** ``torch.no_grad()`` forward pass over the dataset (DESIGN.md §4 item 1, issue 3 item 1):

* a forward hook (:class:`~worker.engine.hooks.LayerTaps`) reduces each layer's ``(B, C, H, W)`` map to
  its spatial maximum only (``amax``), on the model's device and *inside* the hook — before any later
  ``ReLU(inplace=True)`` can overwrite the tensor. The (first, row-major) *location* of the maximum, which
  patches need, is taken only for the few (image, neuron) entries whose maximum beats the neuron's current
  k-th best (:func:`_candidate_argmax`): only those can enter the top k. Max-with-argmax over every map
  cost ~3× a plain max and was most of the pass's overhead (issue 13); the candidates shrink like
  ``k / images seen``, so after the first batches almost no map needs its argmax. The location comes from
  the very tensor the hook sees, so the boxes are exactly those of a full argmax (ties included). The issue
  suggested a second forward over just the final stimuli's images instead; that needs random access to
  the images (``batches`` is a one-shot iterable) and, measured on the demo net, the final stimuli span
  most of the images, so it would cost most of a second pass;
* after the forward, the batch's maxima of all layers, a ``(B, N)`` matrix, are merged into the running
  ``(k, N)`` top-k with ONE stable descending sort over the concatenation ``[running top-k; batch]`` —
  no Python loop over neurons or images.

Tie-breaking: equal maxima → the **lower image index wins** (both for membership of the top k and for
the order within it). The running top-k is kept ordered by (maximum desc, image index asc) and every
index in the batch is larger than every index already kept, so the concatenation lists equal values in
increasing image index; a *stable* sort keeps that order. (``torch.topk`` is not stable, hence the sort.)
The paper's pseudocode as printed (``i`` = smallest index with ``M ≥ A[i]``) puts a later image *before*
an earlier one of equal maximum but refuses it at the tail; that rule is inconsistent, so we use the
strict ``M > A[i]`` — see ``tests/worker/engine/oracles_stimuli.py``.

Memory is ``O(k · N)`` on the device plus one batch's activations, independent of the number of images —
except with ``keep_responses=True``, which also returns every image's spatial maximum of every neuron:
``n_images × n_neurons × 4`` bytes on the host (e.g. 50,000 images × 4,224 VGG16 neurons ≈ 845 MB;
the demo's ~2,000 images × 432 neurons ≈ 3.5 MB).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from worker.engine._utils import device_of, dtype_of, eval_on
from worker.engine.hooks import LayerTaps
from worker.engine.layers import LayerSpec
from worker.errors import ConceptEvoError

logger = logging.getLogger(__name__)


@dataclass
class Stimuli:
    """The stimuli of every neuron of one model (one snapshot), as numpy arrays.

    Neuron ``n`` is channel ``channel_of[n]`` of layer ``layer_names[layer_of[n]]``; neurons are ordered
    by layer (in the order given to :func:`compute_stimuli`), channels within.

    Attributes:
        indices: ``(n_neurons, k)`` int64 image indices (position in the dataset order), best first.
        maxima: ``(n_neurons, k)`` float32 spatial maxima of the neuron's map for those images.
        argmax_yx: ``(n_neurons, k, 2)`` int32 ``(y, x)`` of that maximum in the layer's map (first
            occurrence in row-major order), for example patches.
        layer_of: ``(n_neurons,)`` int32 index into ``layer_names``.
        channel_of: ``(n_neurons,)`` int32 channel within its layer.
        layer_names: dotted module names of the layers.
        map_sizes: ``(H, W)`` of each layer's activation map.
        n_images: number of images seen.
        responses: ``(n_images, n_neurons)`` float32 spatial maxima of every neuron for every image, or
            ``None`` unless requested with ``keep_responses=True``.
    """

    indices: np.ndarray
    maxima: np.ndarray
    argmax_yx: np.ndarray
    layer_of: np.ndarray
    channel_of: np.ndarray
    layer_names: list[str]
    map_sizes: list[tuple[int, int]]
    n_images: int
    responses: np.ndarray | None = None

    @property
    def k(self) -> int:
        """Number of stimuli per neuron."""
        return int(self.indices.shape[1])

    @property
    def n_neurons(self) -> int:
        """Number of neurons (all layers)."""
        return int(self.indices.shape[0])

    def layer_slice(self, name: str) -> slice:
        """Rows of the neurons of layer ``name``.

        Raises:
            ConceptEvoError: ``name`` is not one of :attr:`layer_names`.
        """
        if name not in self.layer_names:
            raise ConceptEvoError(f"layer {name!r} is not among the stimuli's layers {self.layer_names}")
        rows = np.flatnonzero(self.layer_of == self.layer_names.index(name))
        return slice(int(rows[0]), int(rows[-1]) + 1)


def compute_stimuli(
    model: nn.Module,
    layers: list[LayerSpec],
    batches: Iterable[torch.Tensor],
    k: int = 10,
    device: torch.device | str | None = None,
    progress: Callable[[int], None] | None = None,
    keep_responses: bool = False,
    stop_early: bool = True,
) -> Stimuli:
    """Top-k stimuli of every neuron of ``layers`` in one no-grad pass (paper Algorithm 2, vectorised).

    Args:
        model: the network; put in eval mode for the pass (its mode and device are restored after).
        layers: the analysed layers (see :func:`worker.engine.layers.resolve_layers`); neuron order is
            layers in this order, channels within.
        batches: image batches ``(B, 3, H, W)`` in dataset order — the image index is the running
            position. An element may also be a ``(images, labels, ...)`` tuple/list (a DataLoader over an
            ImageFolder); only its first item is used.
        k: stimuli per neuron.
        device: where to compute; default the model's device. The model is moved there for the pass.
        progress: called with the number of images processed so far after each batch.
        keep_responses: also return ``responses`` (every image × every neuron spatial maximum); costs
            ``n_images × n_neurons × 4`` bytes of host memory.
        stop_early: end each forward pass right after the last analysed layer has run (the rest of the
            network — e.g. the classifier — cannot change the stimuli).

    Returns:
        :class:`Stimuli`.

    Raises:
        ConceptEvoError: no layers, ``k < 1``, fewer than ``k`` images, a layer whose output is not a
            ``(B, C, H, W)`` map of the expected channel count, a map size that changes between batches,
            or NaN activations.
    """
    _check_arguments(layers, k)
    dtype = dtype_of(model)
    device = torch.device(device) if device is not None else device_of(model)
    n_neurons = sum(spec.channels for spec in layers)
    top = _RunningTopK(k, n_neurons, device)
    taps = _BatchMaxima(layers, top, device, stop_early)
    responses: list[torch.Tensor] = []
    n_images = 0
    started = time.perf_counter()
    logger.info("stimuli: %d neurons in %d layers, k=%d, on %s", n_neurons, len(layers), k, device)
    # eval mode on the device for the pass; mode and device are restored however it ends
    with torch.no_grad(), eval_on(model, device), LayerTaps(model, taps.names, taps.on_output):
        for batch in batches:
            images = _batch_images(batch, device, dtype)
            batch_max, batch_arg = taps.forward(model, images)
            top.merge(batch_max, batch_arg, n_images)
            if keep_responses:
                responses.append(batch_max.to("cpu", non_blocking=True))
            n_images += images.shape[0]
            if progress is not None:
                progress(n_images)

    stimuli = _to_stimuli(top, layers, taps.map_sizes, n_images, responses if keep_responses else None)
    logger.info("stimuli: %d images in %.2f s", n_images, time.perf_counter() - started)
    return stimuli


def _check_arguments(layers: list[LayerSpec], k: int) -> None:
    """Refuse an empty or repeated layer list and ``k < 1`` before any image is read.

    Raises:
        ConceptEvoError: naming the problem.
    """
    if not layers:
        raise ConceptEvoError("no layers to compute stimuli for")
    if k < 1:
        raise ConceptEvoError(f"k must be at least 1, got {k}")
    names = [spec.name for spec in layers]
    if len(set(names)) != len(names):
        raise ConceptEvoError(f"a layer is listed twice in {names}")


def _batch_images(
    batch: torch.Tensor | tuple | list, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The images of one element of ``batches``, on ``device`` in the model's dtype.

    Args:
        batch: a ``(B, C, H, W)`` tensor, or a tuple/list whose first item is one (a DataLoader's
            ``(images, labels, ...)``).
        device: where the pass runs.
        dtype: the model's parameter dtype.

    Returns:
        The ``(B, C, H, W)`` images.

    Raises:
        ConceptEvoError: the images are not a non-empty 4-d tensor.
    """
    images = batch[0] if isinstance(batch, tuple | list) else batch
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise ConceptEvoError("each batch must be a non-empty (B, C, H, W) image tensor")
    return images.to(device=device, dtype=dtype, non_blocking=True)


class _BatchMaxima:
    """The hook side of the pass: one batch's spatial maxima (and candidate argmax) of every neuron.

    :meth:`on_output` is the :class:`~worker.engine.hooks.LayerTaps` callback; it writes each layer's
    ``(B, C)`` block into the batch's ``(B, N)`` matrices, which :meth:`forward` allocates, fills with one
    forward pass and returns.

    Args:
        layers: the analysed layers; neuron columns are layers in this order, channels within.
        top: the running top-k, read for each neuron's current k-th best (see :func:`_candidate_argmax`).
        device: where the pass runs.
        stop_early: end the forward pass once every analysed layer has run.
    """

    def __init__(
        self, layers: list[LayerSpec], top: _RunningTopK, device: torch.device, stop_early: bool
    ) -> None:
        self.names = [spec.name for spec in layers]
        offsets = np.cumsum([0] + [spec.channels for spec in layers])
        self.n_neurons = int(offsets[-1])
        #: layer name → (its first neuron column, its channel count)
        self.column = {spec.name: (int(offsets[i]), spec.channels) for i, spec in enumerate(layers)}
        #: layer name → (H, W) of its map, fixed by the first batch
        self.map_sizes: dict[str, tuple[int, int]] = {}
        self.top = top
        self.device = device
        self.stop_early = stop_early
        self.fired: set[str] = set()
        self.values: torch.Tensor | None = None
        self.argmax: torch.Tensor | None = None

    def forward(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one batch through ``model`` and collect its maxima.

        Args:
            model: the network, tapped with :meth:`on_output`.
            images: ``(B, C, H, W)`` on the pass's device.

        Returns:
            ``(B, N)`` float32 spatial maxima and ``(B, N)`` int64 row-major argmax (``-1`` where not taken).

        Raises:
            ConceptEvoError: an analysed layer did not run.
        """
        size = images.shape[0]
        self.values = torch.empty((size, self.n_neurons), dtype=torch.float32, device=self.device)
        # -1: no argmax taken (the entry cannot enter the top k; see _candidate_argmax).
        self.argmax = torch.full((size, self.n_neurons), -1, dtype=torch.int64, device=self.device)
        self.fired.clear()
        try:
            model(images)
        except _StopForward:
            pass
        missing = [name for name in self.names if name not in self.fired]
        if missing:
            raise ConceptEvoError(f"layer {missing[0]!r} did not run in the forward pass")
        return self.values, self.argmax

    def on_output(self, name: str, output: torch.Tensor) -> None:
        """Hook: check layer ``name``'s output and write its spatial maxima into the batch's columns.

        Raises:
            ConceptEvoError: not a ``(B, C, H, W)`` map of the layer's channel count, or a map size
                other than the first batch's.
            _StopForward: every analysed layer has run and ``stop_early`` is set.
        """
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ConceptEvoError(f"layer {name!r} outputs {shape}, not a (B, C, H, W) map")
        start, channels = self.column[name]
        if output.shape[1] != channels:
            raise ConceptEvoError(f"layer {name!r} outputs {output.shape[1]} channels, expected {channels}")
        size = (int(output.shape[2]), int(output.shape[3]))
        if self.map_sizes.setdefault(name, size) != size:
            raise ConceptEvoError(
                f"layer {name!r} map size changed from {self.map_sizes[name]} to {size}; "
                "all images must have the same size"
            )
        # Spatial max now, before any in-place op runs; its location only where it can matter.
        maps = output.detach()
        values = maps.amax(dim=(2, 3))
        self.values[:, start : start + channels] = values
        _candidate_argmax(
            maps, values, self.top.kth(start, channels), self.argmax[:, start : start + channels]
        )
        self.fired.add(name)
        if self.stop_early and len(self.fired) == len(self.names):
            raise _StopForward


def _candidate_argmax(
    maps: torch.Tensor, values: torch.Tensor, kth: torch.Tensor | None, out: torch.Tensor
) -> None:
    """Write into ``out`` the first row-major argmax of the maps that may enter their neuron's top k.

    An entry of the current batch can enter the running top k only if its maximum is *strictly* above
    the neuron's k-th best so far: every kept entry has a lower image index and wins a tie. Only those
    maps are gathered and searched; ``out`` keeps ``-1`` elsewhere. The location is that of
    ``flatten(2).max(dim=2)`` on the same tensor, so it equals a full argmax, ties included.

    Args:
        maps: ``(B, C, H, W)`` the layer's output as the hook sees it.
        values: ``(B, C)`` its spatial maxima.
        kth: ``(C,)`` the k-th best maximum so far of each channel, or None while fewer than k images
            have been seen (then every entry is a candidate).
        out: ``(B, C)`` int64 view to fill.
    """
    if kth is None:
        out.copy_(maps.flatten(2).max(dim=2).indices)
        return
    image, channel = torch.nonzero(values > kth, as_tuple=True)
    if image.numel():
        out[image, channel] = maps[image, channel].flatten(1).max(dim=1).indices


class _StopForward(Exception):
    """Raised by the hook once every analysed layer has run, to skip the rest of the network."""


class _RunningTopK:
    """Running top-k per column of ``(B, N)`` batches, ordered by (value desc, image index asc)."""

    def __init__(self, k: int, n_neurons: int, device: torch.device) -> None:
        self.k = k
        self.values = torch.empty((0, n_neurons), dtype=torch.float32, device=device)
        self.index = torch.empty((0, n_neurons), dtype=torch.int64, device=device)
        self.argmax = torch.empty((0, n_neurons), dtype=torch.int64, device=device)
        self.nan_seen = torch.zeros(n_neurons, dtype=torch.bool, device=device)

    def kth(self, start: int, channels: int) -> torch.Tensor | None:
        """The k-th best maximum so far of neurons ``start .. start + channels - 1`` (None before k images)."""
        if self.values.shape[0] < self.k:
            return None
        return self.values[self.k - 1, start : start + channels]

    def merge(self, values: torch.Tensor, argmax: torch.Tensor, first_index: int) -> None:
        """Merge one batch (rows = images ``first_index, first_index + 1, …``) with one stable sort."""
        self.nan_seen |= torch.isnan(values).any(dim=0)
        size, n_neurons = values.shape
        image = torch.arange(first_index, first_index + size, dtype=torch.int64, device=values.device)
        all_values = torch.cat([self.values, values])
        all_index = torch.cat([self.index, image[:, None].expand(size, n_neurons)])
        all_argmax = torch.cat([self.argmax, argmax])
        order = torch.sort(all_values, dim=0, descending=True, stable=True).indices[: self.k]
        self.values = all_values.gather(0, order)
        self.index = all_index.gather(0, order)
        self.argmax = all_argmax.gather(0, order)


def _to_stimuli(
    top: _RunningTopK,
    layers: list[LayerSpec],
    map_sizes: dict[str, tuple[int, int]],
    n_images: int,
    responses: list[torch.Tensor] | None,
) -> Stimuli:
    """Check the finished pass and turn its running top-k into :class:`Stimuli` on the host.

    Args:
        top: the running top-k after the last batch.
        layers: the analysed layers, in neuron order.
        map_sizes: ``(H, W)`` of each layer's map.
        n_images: images seen.
        responses: each batch's ``(B, N)`` maxima (copied to the host), or None when not kept.

    Returns:
        The stimuli, argmax as ``(y, x)``.

    Raises:
        ConceptEvoError: fewer than ``k`` images, or NaN activations.
    """
    if n_images < top.k:
        raise ConceptEvoError(
            f"k={top.k} stimuli per neuron need at least {top.k} images; the dataset has {n_images}"
        )
    layer_of = np.repeat(np.arange(len(layers), dtype=np.int32), [spec.channels for spec in layers])
    channel_of = np.concatenate([np.arange(spec.channels, dtype=np.int32) for spec in layers])
    nan_rows = np.flatnonzero(top.nan_seen.cpu().numpy())
    if nan_rows.size:
        layer = layers[int(layer_of[nan_rows[0]])].name
        raise ConceptEvoError(f"layer {layer!r} produced NaN activations; the model's weights are broken")
    flat = top.argmax.T.cpu().numpy()
    if (flat < 0).any():  # cannot happen (see _candidate_argmax); a wrong box must never pass silently
        raise RuntimeError("stimuli: a kept stimulus has no argmax; the candidate rule is broken")
    widths = np.array([map_sizes[spec.name][1] for spec in layers], dtype=np.int64)[layer_of][:, None]
    argmax_yx = np.stack([flat // widths, flat % widths], axis=-1).astype(np.int32)
    return Stimuli(
        indices=top.index.T.cpu().numpy().astype(np.int64),
        maxima=top.values.T.cpu().numpy().astype(np.float32),
        argmax_yx=argmax_yx,
        layer_of=layer_of,
        channel_of=channel_of,
        layer_names=[spec.name for spec in layers],
        map_sizes=[map_sizes[spec.name] for spec in layers],
        n_images=n_images,
        # last: the blocking .cpu() copies above have synchronised the device, so the non_blocking
        # copies of the responses are complete
        responses=torch.cat(responses).numpy() if responses is not None else None,
    )
