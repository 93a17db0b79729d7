"""Architecture registry: build a network from a name, never downloading weights.

An architecture is named either

* by a **torchvision model name** (``resnet18``, ``vgg16_bn``, …), built with
  ``torchvision.models.get_model(name, weights=None, num_classes=...)``; or
* by an **import path** ``package.module:factory`` — any callable accepting ``num_classes=`` (and the run's
  ``--model-kwargs``) and returning an ``nn.Module`` (the user's own code), its module found by the path rule
  of :mod:`worker.models.factory` (installed packages, the current directory, ``$CONCEPTEVO_MODEL_PATH``); or
* by a **short alias** registered in :data:`ALIASES` (the demo net ``demo-vgg`` is
  ``worker.models.demo_net:demo_vgg``, registered exactly as a user's factory would be).
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torchvision
from torch import nn

from worker.errors import ConceptEvoError
from worker.models.factory import import_model_module

logger = logging.getLogger(__name__)

#: Short names for import paths.
ALIASES: dict[str, str] = {
    "demo-vgg": "worker.models.demo_net:demo_vgg",
}


def known_architectures() -> list[str]:
    """All names :func:`build_model` accepts besides import paths: aliases, then torchvision models.

    Returns:
        Sorted list of names.
    """
    return sorted(ALIASES) + sorted(torchvision.models.list_models())


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    """The callable that builds ``arch``.

    Args:
        arch: alias, torchvision model name or ``package.module:factory``.

    Returns:
        A callable taking ``num_classes=`` (and optional keyword arguments).

    Raises:
        ConceptEvoError: unknown name (the message lists close valid names), unimportable module or
            missing factory.
    """
    if not arch or not isinstance(arch, str):
        raise ConceptEvoError(f"architecture name must be a non-empty string, got {arch!r}")
    target = ALIASES.get(arch, arch)
    if ":" in target:
        module_name, _, attr = target.partition(":")
        module = import_model_module(module_name, arch)
        factory = getattr(module, attr, None)
        if factory is None or not callable(factory):
            raise ConceptEvoError(f"architecture {arch!r}: module {module_name!r} has no callable {attr!r}")
        return factory
    if target in torchvision.models.list_models():
        return torchvision.models.get_model_builder(target)
    close = difflib.get_close_matches(arch.lower(), known_architectures(), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConceptEvoError(
        f"unknown architecture {arch!r}: not a torchvision model, an alias ({', '.join(sorted(ALIASES))}) "
        f"or a 'package.module:factory' path{hint}"
    )


def factory_accepts(arch: str, parameter: str) -> bool:
    """Whether the factory of ``arch`` visibly accepts keyword ``parameter``.

    A factory with ``**kwargs`` counts as accepting it only when it is an import-path factory that
    forwards to a class whose ``__init__`` names the parameter (the demo net's pattern); torchvision
    builders are checked against their model class via a cheap signature look-up.

    Args:
        arch: architecture name (see :func:`resolve_factory`).
        parameter: keyword argument name, e.g. ``"dropout"``.

    Returns:
        True when passing ``parameter=`` is expected to work.
    """
    factory = resolve_factory(arch)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return False
    if parameter in signature.parameters:
        return True
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    if not has_var_kw:
        return False
    # Follow the return annotation / the class the factory builds, when it is discoverable.
    annotation = signature.return_annotation
    if isinstance(annotation, str):
        annotation = getattr(inspect.getmodule(factory), annotation, None)
    if inspect.isclass(annotation):
        try:
            return parameter in inspect.signature(annotation.__init__).parameters
        except (TypeError, ValueError):
            return False
    return False


def build_model(arch: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build an untrained network (random initialisation, never pretrained weights).

    Args:
        arch: alias (``demo-vgg``), torchvision model name (``resnet18``) or ``package.module:factory``.
        num_classes: number of output classes.
        **kwargs: extra keyword arguments for the factory (e.g. ``dropout=0.3``, ``widths=[...]``).

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        ConceptEvoError: unknown architecture, bad ``num_classes``, factory rejecting the arguments or
            not returning an ``nn.Module``.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConceptEvoError(
            f"architecture {arch!r}: num_classes must be a positive integer, got {num_classes!r}"
        )
    factory = resolve_factory(arch)
    target = ALIASES.get(arch, arch)
    try:
        if ":" in target:
            model = factory(num_classes=num_classes, **kwargs)
        else:
            model = torchvision.models.get_model(target, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        if ":" in target and "num_classes" in str(exc):
            raise ConceptEvoError(
                f"architecture {arch!r}: the factory must accept num_classes= (def {target.partition(':')[2]}"
                f"(num_classes: int, **kwargs) -> nn.Module); it said: {exc}"
            ) from exc
        given = f"model kwargs {kwargs}" if kwargs else "no model kwargs"
        raise ConceptEvoError(
            f"architecture {arch!r} rejected its arguments (num_classes={num_classes}, {given}): {exc}; "
            "check --model-kwargs"
        ) from exc
    except ValueError as exc:
        raise ConceptEvoError(f"architecture {arch!r} could not be built: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ConceptEvoError(
            f"architecture {arch!r}: factory returned {type(model).__name__}, not an nn.Module"
        )
    logger.debug("built %s with %d classes (%s)", arch, num_classes, kwargs)
    return model
