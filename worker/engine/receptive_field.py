"""The true receptive field of each analysed layer: which input box a map location can see.

Needed for example patches (DESIGN.md §4 item 7, issue 3 item 7): a stimulus' patch is the crop of the
input under the receptive field of the neuron's map location where its activation is largest.

For a translation-equivariant prefix of a CNN, location ``y`` of a layer's map depends on input rows
``[a·y + b0, a·y + b1]`` (inclusive), per axis, where ``a`` is the cumulative stride. Two ways to get
``(a, b0, b1)``:

* **analytic** — when the modules that run before the layer form a plain chain (each module's only input
  is the previous module's output, unmodified), the chain is traced: ``Conv2d``, ``MaxPool2d`` and
  ``AvgPool2d`` with their kernel sizes, strides, paddings and dilations; BatchNorm, activations,
  dropout and identities are pointwise. A module at output position ``y`` reads input positions
  ``[s·y − p, s·y − p + d·(k − 1)]``, so composing with the earlier ``(a, b0, b1)`` gives
  ``a' = a·s``, ``b0' = b0 − a·p``, ``b1' = b1 + a·(d·(k − 1) − p)``.
* **measured** — for anything else (skip connections, functional ops between modules, unknown
  modules): a copy of the model gets random *positive* weights (conv weights normalised to sum 1 per
  output channel, BatchNorm made the identity) and max-pools become average pools of the same geometry,
  so that no gradient is blocked or cancelled; on positive random inputs the gradient of a unit's output
  (all channels) is nonzero exactly on the input pixels it depends on. Two units one step apart near the
  map centre give the stride and offsets; the input grows (doubling, up to ``max_measure_size``) until
  those boxes are not clipped by the image border. A field still clipped at the largest size (e.g.
  after global pooling) extends to the whole image on that side.

Boxes are half-open ``(y0, x0, y1, x1)``: rows ``y0 … y1 − 1`` and columns ``x0 … x1 − 1``, clipped to
the image (zero padding lies outside it). For dilated layers the box is the bounding box of the field,
which may contain holes.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worker.engine._utils import device_of, dtype_of, eval_on
from worker.engine.layers import LayerSpec
from worker.errors import ConceptEvoError

logger = logging.getLogger(__name__)

#: Offset used for a field side that reaches beyond any image (clipped to the border by input_box).
UNBOUNDED = 1 << 30

POINTWISE = (
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)


@dataclass(frozen=True)
class ReceptiveField:
    """Map location → input box of one layer: rows ``stride[0]·y + lo[0] … stride[0]·y + hi[0]``.

    Attributes:
        stride: cumulative stride ``(a_y, a_x)``.
        lo: offsets ``(b0_y, b0_x)`` of the first input row/column seen by location 0.
        hi: offsets ``(b1_y, b1_x)`` of the last (inclusive) input row/column seen by location 0.
        method: ``"analytic"`` or ``"measured"``.
    """

    stride: tuple[int, int]
    lo: tuple[int, int]
    hi: tuple[int, int]
    method: str

    @property
    def size(self) -> tuple[int, int]:
        """Unclipped field size (rows, columns)."""
        return (self.hi[0] - self.lo[0] + 1, self.hi[1] - self.lo[1] + 1)

    def input_box(self, y: int, x: int, image_size: int | tuple[int, int]) -> tuple[int, int, int, int]:
        """Half-open input box ``(y0, x0, y1, x1)`` seen by map location ``(y, x)``, clipped to the image.

        Args:
            y: row in the layer's map.
            x: column in the layer's map.
            image_size: the model input's ``(H, W)`` (or one side for square inputs).

        Returns:
            ``(y0, x0, y1, x1)`` with ``0 ≤ y0 < y1 ≤ H`` and ``0 ≤ x0 < x1 ≤ W`` (at least one pixel).
        """
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        y0 = min(max(self.stride[0] * y + self.lo[0], 0), height - 1)
        x0 = min(max(self.stride[1] * x + self.lo[1], 0), width - 1)
        y1 = max(min(self.stride[0] * y + self.hi[0] + 1, height), y0 + 1)
        x1 = max(min(self.stride[1] * x + self.hi[1] + 1, width), x0 + 1)
        return (y0, x0, y1, x1)


def receptive_fields(
    model: nn.Module,
    layers: list[LayerSpec],
    input_size: int | tuple[int, int],
    method: str = "auto",
    max_measure_size: int = 1024,
) -> dict[str, ReceptiveField]:
    """The receptive field of every layer: analytic where the layer ends a chain, else measured.

    Args:
        model: the network (not modified: measurement works on a copy).
        layers: the analysed layers.
        input_size: the model's input ``(H, W)`` (or one side), used for the probe pass.
        method: ``"auto"`` (analytic where possible), ``"analytic"`` (error where impossible) or
            ``"measured"`` (gradient measurement for every layer).
        max_measure_size: largest input side tried when measuring.

    Returns:
        ``{layer name: ReceptiveField}``.

    Raises:
        ConceptEvoError: unknown method, a layer that does not run, or ``"analytic"`` for a layer that
            is not at the end of a traceable chain.
    """
    if method not in ("auto", "analytic", "measured"):
        raise ConceptEvoError(f"unknown receptive-field method {method!r}; use auto, analytic or measured")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    names = [spec.name for spec in layers]
    fields: dict[str, ReceptiveField] = {}
    if method != "measured":
        chains = _trace_chains(model, names, size)
        for name in names:
            chain = chains.get(name)
            field = _compose(model, chain) if chain is not None else None
            if field is not None:
                fields[name] = field
            elif method == "analytic":
                raise ConceptEvoError(
                    f"layer {name!r} is not at the end of a chain of convs and pools; "
                    "use the measured receptive field"
                )
    remaining = [name for name in names if name not in fields]
    if remaining:
        fields.update(_measure(model, remaining, size, max_measure_size))
    for name in names:
        logger.debug("receptive field of %s: %s", name, fields[name])
    return {name: fields[name] for name in names}


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _geometry(module: nn.Module) -> tuple[tuple[int, int], ...] | None:
    """``(kernel, stride, padding, dilation)`` per axis of a spatial module; identity for pointwise."""
    if isinstance(module, POINTWISE):
        return ((1, 1), (1, 1), (0, 0), (1, 1))
    if isinstance(module, nn.Conv2d):
        kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
        if module.padding == "valid":
            padding = (0, 0)
        elif module.padding == "same":
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        else:
            padding = _pair(module.padding)
        if module.padding_mode != "zeros" and any(padding):
            return None  # circular/reflect padding wraps the field around: measure it
        return (kernel, _pair(module.stride), padding, dilation)
    if isinstance(module, nn.MaxPool2d):
        stride = module.stride if module.stride is not None else module.kernel_size
        return (_pair(module.kernel_size), _pair(stride), _pair(module.padding), _pair(module.dilation))
    if isinstance(module, nn.AvgPool2d):
        stride = module.stride if module.stride is not None else module.kernel_size
        return (_pair(module.kernel_size), _pair(stride), _pair(module.padding), (1, 1))
    return None


def _compose(model: nn.Module, chain: list[str]) -> ReceptiveField | None:
    """Compose the chain's geometries; ``None`` if a module of it has no known geometry."""
    a, lo, hi = [1, 1], [0, 0], [0, 0]
    for name in chain:
        geometry = _geometry(model.get_submodule(name))
        if geometry is None:
            return None
        kernel, stride, padding, dilation = geometry
        for axis in range(2):
            span = dilation[axis] * (kernel[axis] - 1)
            lo[axis] -= a[axis] * padding[axis]
            hi[axis] += a[axis] * (span - padding[axis])
            a[axis] *= stride[axis]
    return ReceptiveField(tuple(a), tuple(lo), tuple(hi), "analytic")


def _trace_chains(model: nn.Module, names: list[str], size: tuple[int, int]) -> dict[str, list[str]]:
    """For each layer that ends a chain, the leaf modules of that chain, in call order.

    One probe forward records every leaf module call. The calls form a chain while each one's only
    input is the very tensor the previous call returned, not modified since (same object, same
    version counter — an in-place ``out += identity`` between two modules bumps the version).
    """
    leaves = {module: name for name, module in model.named_modules() if name and not list(module.children())}
    targets = {model.get_submodule(name): name for name in names}
    chain: list[str] = []
    state = {"broken": False, "last": None, "version": None}
    found: dict[str, list[str]] = {}
    handles = []

    def pre_hook(module, args):
        if module not in leaves or state["broken"]:
            return
        tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
        if len(args) != 1 or len(tensors) != 1 or tensors[0] is not state["last"]:
            state["broken"] = True
        elif tensors[0]._version != state["version"]:
            state["broken"] = True

    def post_hook(module, args, output):
        if module in leaves and not state["broken"]:
            if isinstance(output, torch.Tensor):
                chain.append(leaves[module])
                state["last"], state["version"] = output, output._version
            else:
                state["broken"] = True
        if module in targets and targets[module] not in found:
            ends_chain = (
                not state["broken"] and output is state["last"] and output._version == state["version"]
            )
            found[targets[module]] = list(chain) if ends_chain else None

    def model_pre_hook(module, args):
        if len(args) == 1 and isinstance(args[0], torch.Tensor):
            state["last"], state["version"] = args[0], args[0]._version
        else:
            state["broken"] = True

    handles.append(model.register_forward_pre_hook(model_pre_hook))
    for module in set(leaves) | set(targets):
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    try:
        with torch.no_grad(), eval_on(model):
            model(torch.zeros(1, 3, *size, device=device_of(model), dtype=dtype_of(model)))
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in found]
    if missing:
        raise ConceptEvoError(f"layer {missing[0]!r} did not run in the forward pass")
    return {name: chain for name, chain in found.items() if chain is not None}


class _AveragePoolStandIn(nn.Module):
    """A max-pool's geometry with an average (dense gradient): depthwise conv with constant weights."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.kernel = _pair(pool.kernel_size)
        self.stride = _pair(pool.stride if pool.stride is not None else pool.kernel_size)
        self.padding = _pair(pool.padding)
        self.dilation = _pair(pool.dilation)
        self.ceil_mode = pool.ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.dilation == (1, 1):
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode)
        weight = x.new_full((x.shape[1], 1, *self.kernel), 1.0 / (self.kernel[0] * self.kernel[1]))
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups=x.shape[1])


def _positive_copy(model: nn.Module, collapse: bool) -> nn.Module:
    """A copy with positive, normalised weights and dense-gradient pools (see the module docstring).

    With ``collapse`` every conv becomes a 1-in, 1-out channel conv of the same geometry and every
    BatchNorm a 1-channel identity, so the probe costs a tiny fraction of the real network (the field
    does not depend on channel counts); inputs then have 1 channel. Architectures where that does not
    fit (channel concatenation, grouped layers, …) fail in the probe and are measured uncollapsed.
    """
    clone = copy.deepcopy(model).float().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, module in list(clone.named_modules()):
            if not name:
                continue
            replacement: nn.Module | None = None
            if isinstance(module, nn.Conv2d) and collapse:
                replacement = nn.Conv2d(
                    1,
                    1,
                    module.kernel_size,
                    module.stride,
                    module.padding,
                    module.dilation,
                    bias=False,
                    padding_mode=module.padding_mode,
                ).to(module.weight.device)
                module = replacement
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and collapse:
                replacement = nn.Identity()
            elif isinstance(module, nn.MaxPool2d):
                replacement = _AveragePoolStandIn(module)
            if isinstance(module, nn.modules.conv._ConvNd):
                weight = torch.rand(module.weight.shape, generator=generator) + 0.5
                weight /= weight.sum(dim=tuple(range(1, weight.dim())), keepdim=True)
                module.weight.copy_(weight)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.affine:
                    module.weight.fill_(1.0)
                    module.bias.zero_()
                if module.track_running_stats:
                    module.running_mean.zero_()
                    module.running_var.fill_(1.0 - module.eps)
            if replacement is not None:
                parent_name, _, child = name.rpartition(".")
                parent = clone.get_submodule(parent_name) if parent_name else clone
                setattr(parent, child, replacement)
    return clone


class _Stop(Exception):
    pass


def _measure(
    model: nn.Module, names: list[str], size: tuple[int, int], max_size: int, n_random: int = 1
) -> dict[str, ReceptiveField]:
    """Measure fields by input gradients on a positive-weight copy (see the module docstring)."""
    try:
        return _measure_on(_positive_copy(model, collapse=True), 1, names, size, max_size, n_random)
    except (RuntimeError, ValueError) as error:
        logger.debug("receptive field: collapsed probe failed (%s); measuring on the full copy", error)
        return _measure_on(_positive_copy(model, collapse=False), 3, names, size, max_size, n_random)


def _measure_on(
    clone: nn.Module, channels: int, names: list[str], size: tuple[int, int], max_size: int, n_random: int
) -> dict[str, ReceptiveField]:
    parameter = next(clone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(1)
    fields: dict[str, ReceptiveField] = {}
    side = [max(size[0], 16), max(size[1], 16)]
    while True:
        remaining = [name for name in names if name not in fields]
        if not remaining:
            return fields
        last_try = max(side) >= max_size
        outputs: dict[str, torch.Tensor] = {}

        targets = {clone.get_submodule(name): name for name in remaining}

        def keep(module, args, output, outputs=outputs, targets=targets):
            outputs[targets[module]] = output
            if len(outputs) == len(targets):
                raise _Stop

        handles = [module.register_forward_hook(keep) for module in targets]
        # Sample 2i targets unit A, sample 2i+1 unit B = A + (1, 1), for n_random random inputs.
        inputs = (
            (torch.rand(2 * n_random, channels, *side, generator=generator) + 0.5).to(device).requires_grad_()
        )
        try:
            try:
                clone(inputs)
            except _Stop:
                pass
        finally:
            for handle in handles:
                handle.remove()
        for name in remaining:
            output = outputs[name]
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                raise ConceptEvoError(f"layer {name!r} does not output a (B, C, H, W) map")
            height, width = output.shape[2], output.shape[3]
            if (height < 2 or width < 2) and not last_try:
                continue
            ya, xa = (height - 1) // 2, (width - 1) // 2
            yb, xb = min(ya + 1, height - 1), min(xa + 1, width - 1)
            target = output[0::2, :, ya, xa].sum() + output[1::2, :, yb, xb].sum()
            (grad,) = torch.autograd.grad(target, inputs, retain_graph=True)
            saliency = grad.abs().sum(dim=1)
            box_a = _nonzero_box(saliency[0::2].sum(dim=0))
            box_b = _nonzero_box(saliency[1::2].sum(dim=0))
            field = _field_from_boxes(box_a, box_b, (ya, xa), (yb, xb), tuple(side), last_try)
            if field is not None:
                fields[name] = field
        if last_try:
            missing = [name for name in names if name not in fields]
            if missing:
                raise ConceptEvoError(f"could not measure the receptive field of layer {missing[0]!r}")
            return fields
        logger.debug("receptive field: measuring %d layers again at %s", len(fields), side)
        side = [min(2 * side[0], max_size), min(2 * side[1], max_size)]


def _nonzero_box(saliency: torch.Tensor) -> tuple[int, int, int, int] | None:
    rows = torch.nonzero(saliency.sum(dim=1) > 0).flatten()
    cols = torch.nonzero(saliency.sum(dim=0) > 0).flatten()
    if rows.numel() == 0:
        return None
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def _field_from_boxes(
    box_a: tuple[int, int, int, int] | None,
    box_b: tuple[int, int, int, int] | None,
    unit_a: tuple[int, int],
    unit_b: tuple[int, int],
    side: tuple[int, int],
    last_try: bool,
) -> ReceptiveField | None:
    """Stride and offsets from the boxes of two units; ``None`` if clipped (retry larger)."""
    if box_a is None or box_b is None:
        if last_try:
            raise ConceptEvoError("a layer's output does not depend on its input; cannot measure its field")
        return None
    stride, lo, hi = [0, 0], [0, 0], [0, 0]
    for axis in range(2):
        first, last = box_a[axis], box_a[axis + 2] - 1
        clipped_lo = first <= 0 or box_b[axis] <= 0
        clipped_hi = last >= side[axis] - 1 or box_b[axis + 2] >= side[axis]
        # A field with holes (dilation) can be clipped without touching the border: then the two
        # boxes, which must be translates of each other, differ in size.
        if box_b[axis + 2] - box_b[axis] != box_a[axis + 2] - box_a[axis]:
            if not last_try:
                return None
        if (clipped_lo or clipped_hi) and not last_try:
            return None
        step = unit_b[axis] - unit_a[axis]
        if step == 0:
            stride[axis] = side[axis]
        elif not clipped_lo:
            stride[axis] = (box_b[axis] - first) // step
        elif not clipped_hi:
            stride[axis] = (box_b[axis + 2] - 1 - last) // step
        else:
            stride[axis] = max(side[axis] // max(unit_b[axis] + 1, 1), 1)
        lo[axis] = -UNBOUNDED if clipped_lo else first - stride[axis] * unit_a[axis]
        hi[axis] = UNBOUNDED if clipped_hi else last - stride[axis] * unit_a[axis]
    return ReceptiveField(tuple(stride), tuple(lo), tuple(hi), "measured")
