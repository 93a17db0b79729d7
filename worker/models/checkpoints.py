"""Per-epoch checkpoints: discovering them in a run directory, reading them, loading models.

Accepted checkpoint file names (:func:`discover_epochs`). A file is a checkpoint when its extension
is one of ``.pt``, ``.pth``, ``.ckpt``, ``.bin`` or ``.tar`` and its name (without extension) carries an
epoch number:

1. an explicit epoch tag wins: ``epoch`` or ``ep`` (any case) followed by an optional ``_``, ``-``,
   ``=`` or ``.`` and digits, anywhere in the name — ``epoch_3.pt``, ``epoch_003.pth``, ``epoch3.pt``,
   ``ckpt_epoch=5.ckpt``, ``epoch=5-step=1000.ckpt`` (Lightning), ``resnet18_ep12.pth``;
2. otherwise a trailing number after a ``_``, ``-``, ``=`` or ``.`` separator, or the whole name —
   ``model-3.pth``, ``checkpoint_10.pt``, ``7.pt`` (but not ``resnet18.pth``: a number glued to a word
   is part of the name).

Leading zeros are ignored (``epoch_003`` is epoch 3). Names without a number (``best.pt``,
``last.ckpt``) and files with other extensions (``history.json``, ``*.tmp``) are ignored. Two files
claiming the same epoch (``epoch_3.pt`` and ``model-3.pth``) are an error naming both.

Accepted contents (:func:`load_state_dict`): a raw ``state_dict`` (mapping of names to tensors), or a
dict holding one under ``state_dict``, ``model_state_dict``, ``model`` or ``net`` (the trainer's
own format adds ``epoch``, ``arch``, ``num_classes``, ``class_names``). A ``module.`` (DataParallel)
or ``_orig_mod.`` (``torch.compile``) prefix shared by every key is stripped.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worker.errors import ConceptEvoError
from worker.models.registry import build_model

logger = logging.getLogger(__name__)

CHECKPOINT_EXTENSIONS = (".pt", ".pth", ".ckpt", ".bin", ".tar")
_EPOCH_TAG = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[_\-=.]?(\d+)", re.IGNORECASE)
_TRAILING = re.compile(r"(?:^|[_\-=.])(\d+)$")
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")
_PREFIXES = ("module.", "_orig_mod.")


def epoch_of(filename: str) -> int | None:
    """The epoch number a checkpoint file name carries (see the module docstring), or None.

    Args:
        filename: a file name such as ``epoch_003.pth``.

    Returns:
        The epoch, or None when the name is not a checkpoint name.
    """
    path = Path(filename)
    if path.suffix.lower() not in CHECKPOINT_EXTENSIONS:
        return None
    stem = path.stem
    match = _EPOCH_TAG.search(stem)
    if match is None:
        match = _TRAILING.search(stem)
    return int(match.group(1)) if match else None


def discover_epochs(run_dir: str | Path) -> dict[int, Path]:
    """Map epoch → checkpoint file for every checkpoint in ``run_dir`` (not recursive).

    Args:
        run_dir: directory holding one file per epoch.

    Returns:
        Dict sorted by epoch.

    Raises:
        ConceptEvoError: missing directory, no checkpoint in it, or two files claiming one epoch.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConceptEvoError(f"run directory {run_dir} does not exist or is not a directory")
    found: dict[int, Path] = {}
    for path in sorted(run_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        epoch = epoch_of(path.name)
        if epoch is None:
            continue
        if epoch in found:
            raise ConceptEvoError(
                f"run directory {run_dir}: files {found[epoch].name} and {path.name} both claim epoch {epoch}"
            )
        found[epoch] = path
    if not found:
        raise ConceptEvoError(
            f"run directory {run_dir} holds no checkpoint named like epoch_3.pt, epoch_003.pth or model-3.pth"
        )
    return dict(sorted(found.items()))


def read_checkpoint(path: str | Path, trust: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file: its state_dict and any metadata stored beside it.

    Args:
        path: checkpoint file.
        trust: allow full unpickling (``weights_only=False``) — only for files from a trusted source
            that hold Python objects besides tensors.

    Returns:
        ``(state_dict, meta)``; ``meta`` holds the other plain entries of a dict checkpoint
        (``epoch``, ``arch``, ``num_classes``, ``class_names``, …), empty for a raw state_dict.

    Raises:
        ConceptEvoError: missing, truncated/corrupt or non-state_dict file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConceptEvoError(f"checkpoint {path} not found")
    _check_format(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if not trust and "weights_only" in str(exc).lower().replace(" ", "_"):
            raise ConceptEvoError(
                f"checkpoint {path} holds Python objects besides tensors; re-save it as a state_dict "
                "or load it as trusted"
            ) from exc
        raise ConceptEvoError(f"checkpoint {path} is corrupt or truncated ({_short(exc)})") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise ConceptEvoError(f"checkpoint {path} is corrupt or truncated ({_short(exc)})") from exc
    except Exception as exc:  # any other unpickling failure of a damaged file
        raise ConceptEvoError(
            f"checkpoint {path} could not be read ({type(exc).__name__}: {_short(exc)})"
        ) from exc
    meta: dict[str, Any] = {}
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _is_state_dict(inner):
                meta = {k: v for k, v in obj.items() if k != key and _is_plain(v)}
                obj = inner
                break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        kind = type(obj).__name__
        keys = f" with keys {sorted(map(str, obj))[:6]}" if isinstance(obj, Mapping) else ""
        raise ConceptEvoError(
            f"checkpoint {path} is not a state_dict ({kind}{keys}); expected a mapping of tensors or a "
            "dict holding 'state_dict' / 'model_state_dict'"
        )
    return _strip_prefixes(dict(obj)), meta


def _check_format(path: Path) -> None:
    """Refuse a file that ``torch.save`` cannot have written, before unpickling misreads it.

    ``torch.save`` writes a zip archive (``PK\\x03\\x04``, since torch 1.6), a pickle stream (protocol 2+
    starts with ``\\x80``: the legacy format) or, long ago, a tar archive (``ustar`` at byte 257). Anything else
    (a text file, a NumPy array, an HTML error page saved as ``.pt``) is named as such, not as a pickle error.
    """
    with path.open("rb") as handle:
        head = handle.read(262)
    if not head:
        raise ConceptEvoError(f"checkpoint {path} is empty (0 bytes); write it again with torch.save")
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head[257:262] == b"ustar":
        return
    shown = head[:24].decode("utf-8", errors="replace")
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    raise ConceptEvoError(
        f"checkpoint {path} is not a PyTorch checkpoint (it starts with {shown!r}); "
        "expected a file written by torch.save"
    )


def checkpoint_classes(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> int | None:
    """The class count a checkpoint was trained for: its ``num_classes`` entry, else its classifier's outputs.

    Args:
        state: the checkpoint's state_dict.
        meta: the other entries of the checkpoint (see :func:`read_checkpoint`).

    Returns:
        The class count, or None when neither tells it.
    """
    stored = meta.get("num_classes")
    if isinstance(stored, int) and not isinstance(stored, bool):
        return stored
    return _guess_num_classes(state)


def check_checkpoint(
    path: str | Path,
    arch: str,
    num_classes: int,
    model_kwargs: Mapping[str, Any] | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Read ``path`` and check it fits ``arch`` built for ``num_classes`` classes (what registration checks).

    Args:
        path: checkpoint file.
        arch: architecture name.
        num_classes: the class count of the dataset the run is registered with.
        model_kwargs: factory arguments; None takes the checkpoint's own ``model_kwargs`` entry.
        dataset: the dataset's name, for the class-count message.

    Returns:
        The checkpoint's metadata (:func:`read_checkpoint`).

    Raises:
        ConceptEvoError: unreadable or foreign file, another class count than the dataset's, or weights of
            another architecture (missing/unexpected keys, other shapes) — one line saying what to change.
    """
    path = Path(path)
    state, meta = read_checkpoint(path)
    found = checkpoint_classes(state, meta)
    if found is not None and found != num_classes:
        where = f"dataset {dataset!r}" if dataset else "the dataset"
        raise ConceptEvoError(
            f"checkpoint {path} has {found} classes but {where} has {num_classes}; register the run with the "
            "dataset it was trained on"
        )
    kwargs = recorded_kwargs(meta, arch) if model_kwargs is None else dict(model_kwargs)
    model = build_model(arch, num_classes, **kwargs)
    try:
        check_fits(model, state, path, arch)
    except ConceptEvoError as exc:
        recorded = meta.get("arch")
        hint = (
            f"it records arch {recorded!r}"
            if isinstance(recorded, str) and recorded != arch
            else "check --arch"
        )
        raise ConceptEvoError(f"{exc} ({hint})") from None
    return meta


def recorded_kwargs(meta: Mapping[str, Any], arch: str) -> dict[str, Any]:
    """The factory arguments a checkpoint records (``conceptevo train`` writes ``model_kwargs``), for ``arch``.

    They are the recorded architecture's arguments: when the checkpoint names another ``arch`` they are not
    passed on (``width=`` of a user's factory means nothing to ``resnet18``), so the mismatch is reported as one.

    Args:
        meta: the checkpoint's metadata (:func:`read_checkpoint`).
        arch: the architecture it is being loaded as.

    Returns:
        The keyword arguments (empty when none apply).
    """
    recorded = meta.get("arch")
    if isinstance(recorded, str) and recorded != arch:
        return {}
    return dict(meta.get("model_kwargs") or {})


def load_state_dict(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The state_dict stored in ``path`` (see :func:`read_checkpoint`).

    Args:
        path: checkpoint file.
        trust: allow full unpickling of trusted files.

    Returns:
        Mapping of parameter/buffer names to CPU tensors, DataParallel prefix stripped.
    """
    return read_checkpoint(path, trust=trust)[0]


def load_model(
    arch: str | None,
    num_classes: int | None,
    path: str | Path,
    device: str | torch.device = "cpu",
    model_kwargs: dict[str, Any] | None = None,
    trust: bool = False,
) -> nn.Module:
    """Build ``arch`` and load the checkpoint ``path`` into it, in eval mode.

    Args:
        arch: architecture (see :func:`worker.models.registry.build_model`); None takes the
            checkpoint's own ``arch`` entry (checkpoints written by the trainer carry it).
        num_classes: class count; None takes the checkpoint's ``num_classes`` entry or the
            classifier's output size.
        path: checkpoint file.
        device: where to put the model.
        model_kwargs: extra factory arguments; None takes the checkpoint's ``model_kwargs`` entry.
        trust: allow full unpickling of trusted files.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        ConceptEvoError: unreadable checkpoint, unknown architecture, wrong class count, or a
            state_dict that does not fit (missing/unexpected keys, shape mismatches).
    """
    path = Path(path)
    state, meta = read_checkpoint(path, trust=trust)
    arch = arch or meta.get("arch")
    if not arch:
        raise ConceptEvoError(f"checkpoint {path} does not record its architecture; name it")
    if num_classes is None:
        num_classes = meta.get("num_classes") or _guess_num_classes(state)
        if num_classes is None:
            raise ConceptEvoError(f"checkpoint {path}: cannot tell its class count; give num_classes")
    if model_kwargs is None:
        model_kwargs = recorded_kwargs(meta, arch)
    model = build_model(arch, int(num_classes), **model_kwargs)
    check_fits(model, state, path, arch)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def check_fits(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, arch: str) -> None:
    """Raise a one-line error when ``state`` cannot be loaded into ``model`` strictly.

    Args:
        model: freshly built network.
        state: state_dict read from ``path``.
        path: the checkpoint file (for the message).
        arch: architecture name (for the message).

    Raises:
        ConceptEvoError: wrong class count, missing/unexpected keys, or other shape mismatches.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    head = _classifier_weight(expected)
    if head is not None and head in mismatched:
        got, want = state[head].shape[0], expected[head].shape[0]
        if tuple(state[head].shape[1:]) == tuple(expected[head].shape[1:]) and got != want:
            raise ConceptEvoError(f"checkpoint {path} has {got} classes, model {arch} expects {want}")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_shorten(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_shorten(unexpected)}")
        raise ConceptEvoError(f"checkpoint {path} does not fit architecture {arch}: {'; '.join(parts)}")
    if mismatched:
        details = [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)}" for k in mismatched]
        raise ConceptEvoError(
            f"checkpoint {path} does not fit architecture {arch}: shape mismatch in {_shorten(details)}"
        )


def _classifier_weight(state: Mapping[str, torch.Tensor]) -> str | None:
    """Name of the last 2-D ``*.weight`` (the final Linear layer), in registration order."""
    last = None
    for key, value in state.items():
        if key.endswith("weight") and value.dim() == 2:
            last = key
    return last


def _guess_num_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    head = _classifier_weight(state)
    return int(state[head].shape[0]) if head is not None else None


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _is_plain(value: Any) -> bool:
    """True for JSON-like metadata (no tensors anywhere inside)."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _shorten(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    more = f", … (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
