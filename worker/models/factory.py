"""Import the module of a user's ``package.module:factory`` with one path rule for the CLI and the worker.

The rule: a module is looked up on ``sys.path`` (installed packages), then in the **current directory**, then in
each folder of **CONCEPTEVO_MODEL_PATH** (``os.pathsep``-separated). The current directory is searched whether
``conceptevo`` runs as a console script (which does not put it on ``sys.path``) or as ``python -m worker.cli``
(which does), so ``add-run`` and a ``worker`` started in the same folder, or with the same
``CONCEPTEVO_MODEL_PATH``, find the same module. When it is not found the message says where it looked.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from worker.errors import ConceptEvoError

MODEL_PATH_ENV = "CONCEPTEVO_MODEL_PATH"


def search_folders() -> list[Path]:
    """The folders searched after ``sys.path``: the current directory, then ``$CONCEPTEVO_MODEL_PATH``'s.

    Returns:
        Absolute folders, in search order, without repeats.
    """
    folders = [Path.cwd()]
    folders += [Path(part).resolve() for part in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if part]
    return list(dict.fromkeys(folders))


def import_model_module(name: str, arch: str) -> ModuleType:
    """Import module ``name`` of architecture ``arch`` by the path rule (see the module docstring).

    Args:
        name: dotted module name (``mynets.small``).
        arch: the full architecture string, for messages.

    Returns:
        The module.

    Raises:
        ConceptEvoError: the module is not found (the message lists where it looked and how to fix it), or it
            was found but failed while importing.
    """
    for folder in search_folders():
        if str(folder) not in sys.path:
            sys.path.append(str(folder))  # appended: installed packages keep priority
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top = name.split(".")[0]
        if exc.name is not None and not (exc.name == name or name.startswith(f"{exc.name}.")):
            raise ConceptEvoError(f"architecture {arch!r}: module {name!r} failed to import ({exc})") from exc
        looked = ", ".join(str(folder) for folder in search_folders())
        env = os.environ.get(MODEL_PATH_ENV)
        raise ConceptEvoError(
            f"architecture {arch!r}: cannot import module {name!r} (looked in installed packages and {looked}"
            f"{'' if env else f'; {MODEL_PATH_ENV} is not set'}); run conceptevo (and its worker) in the folder holding "
            f"{top}/ or {top}.py, or set {MODEL_PATH_ENV} to that folder"
        ) from exc
    except Exception as exc:  # the user's module raised while importing: say so, in one line
        raise ConceptEvoError(
            f"architecture {arch!r}: module {name!r} failed to import ({type(exc).__name__}: {exc})"
        ) from exc
