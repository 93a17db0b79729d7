"""Reads for the evaluation report (issue 14): a snapshot's full neuron states in a space, and where a space's
report lives on disk. The API and the worker's ``eval`` job both use it; it imports neither torch nor FastAPI."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.store.blobs import unpack_f32, unpack_i32
from backend.store.config import data_dir
from backend.store.models import NeuronState, Space

#: The report's machine-readable results, beside ``report.md`` and the plots.
RESULTS_FILE = "results.json"
#: The summary of several worlds' reports (``conceptevo eval-seeds``) and its Markdown, kept in the report folder
#: of the space the page shows (an ``eval`` job carries them over when it rewrites the folder).
SEEDS_FILE = "seeds.json"
SEEDS_MARKDOWN = "seeds.md"
#: Names of files a report may hold (what the API serves; never a path the client sends).
REPORT_FILE = re.compile(r"^[a-z0-9_-]{1,80}\.(svg|png|md|json)$")


@dataclass(frozen=True)
class NeuronStates:
    """One snapshot's neurons in a space, by ascending neuron id.

    Attributes:
        neuron_ids: ``(n,)`` int64.
        stimuli: ``(n, k)`` int32 image indices, best first.
        maxima: ``(n, k)`` float32 activation maxima of those stimuli.
        vectors: ``(n, dim)`` float32 embedding vectors.
    """

    neuron_ids: npt.NDArray[np.int64]
    stimuli: npt.NDArray[np.int32]
    maxima: npt.NDArray[np.float32]
    vectors: npt.NDArray[np.float32]


def neuron_states(session: Session, space_id: int, snapshot_id: int) -> NeuronStates | None:
    """Every stored state of (space, snapshot), or None when the snapshot is not computed in the space."""
    rows = session.execute(
        select(NeuronState.neuron_id, NeuronState.stimuli, NeuronState.maxima, NeuronState.vector)
        .where(NeuronState.space_id == space_id, NeuronState.snapshot_id == snapshot_id)
        .order_by(NeuronState.neuron_id)
    ).all()
    if not rows:
        return None
    n = len(rows)
    return NeuronStates(
        neuron_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        stimuli=unpack_i32(b"".join(bytes(r[1]) for r in rows)).reshape(n, -1),
        maxima=unpack_f32(b"".join(bytes(r[2]) for r in rows)).reshape(n, -1),
        vectors=unpack_f32(b"".join(bytes(r[3]) for r in rows)).reshape(n, -1),
    )


def report_folder_name(name: str) -> str | None:
    """A space name made safe as a folder name, or None when nothing but dots would be left.

    Args:
        name: the space's name.

    Returns:
        ``name`` with every character outside ``A-Za-z0-9_.@+-`` replaced by ``_``, or None.
    """
    safe = re.sub(r"[^A-Za-z0-9_.@+-]", "_", name)
    return safe if safe.strip(".") else None


def report_dir(space: Space, root: Path | None = None) -> Path:
    """``<data dir>/reports/<space name>``, the name made safe as a folder name (``space-<id>`` if nothing is left).

    Args:
        space: the space.
        root: the data directory (default :func:`~backend.store.config.data_dir`).
    """
    safe = report_folder_name(space.name) or f"space-{space.id}"
    return (root if root is not None else data_dir()) / "reports" / safe


def read_report(space: Space, root: Path | None = None) -> dict[str, Any] | None:
    """The space's ``results.json`` as written by the last ``eval`` job, or None when there is none (or it is
    unreadable — a report is rewritten whole by its job, so a broken file means none)."""
    return _json_object(report_dir(space, root) / RESULTS_FILE)


def read_seeds(space: Space, root: Path | None = None) -> dict[str, Any] | None:
    """The summary over several worlds (``seeds.json``, written by ``conceptevo eval-seeds``) kept in the space's
    report folder, or None when there is none or it is unreadable."""
    return _json_object(report_dir(space, root) / SEEDS_FILE)


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file is missing, unreadable or holds something else."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def report_file(space: Space, name: str, root: Path | None = None) -> Path | None:
    """The report file ``name`` of a space, if ``name`` is a report file name and the file exists."""
    if not REPORT_FILE.match(name):
        return None
    path = report_dir(space, root) / name
    return path if path.is_file() else None
