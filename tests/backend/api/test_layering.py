"""Only ``backend/store`` runs SQL (DESIGN.md §2; issue 11, item 11): the API maps store results to schemas.

A static check of every module of ``backend/api``: it imports nothing of SQLAlchemy but the ``Session`` type and
the driver exceptions, no ORM model class except for annotations (``if TYPE_CHECKING:``), and calls no session
query method — so a router cannot build a ``select`` or ``session.get(Model, …)`` of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import backend.store.models as models

API = Path(__file__).resolve().parents[3] / "backend" / "api"

#: What the API may take from SQLAlchemy: the session type and the exceptions its drivers raise.
ALLOWED_SQLALCHEMY = {"sqlalchemy.orm": {"Session"}, "sqlalchemy.exc": None}
#: Session methods that run SQL.
QUERY_METHODS = {"execute", "scalars", "scalar", "query", "get_bind", "connection"}
MODEL_NAMES = {
    name
    for name, value in vars(models).items()
    if isinstance(value, type) and issubclass(value, models.Base) and value is not models.Base
}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of statements inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def violations(path: Path) -> list[str]:
    """What in one module breaks the rule, as ``file:line: why``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = _type_checking_only(tree)
    found: list[str] = []

    def bad(node: ast.AST, why: str) -> None:
        found.append(f"{path.name}:{getattr(node, 'lineno', 0)}: {why}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy" and alias.name not in ("sqlalchemy.exc",):
                    bad(node, f"imports {alias.name}")
                if alias.name == "backend.store.models" and node.lineno not in typing_only:
                    bad(node, "imports the ORM models")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module.split(".")[0] == "sqlalchemy":
                allowed = ALLOWED_SQLALCHEMY.get(module, set())
                if allowed is not None and not names <= allowed:
                    bad(node, f"imports {sorted(names - allowed)} from {module}")
            if node.lineno in typing_only:
                continue
            if module == "backend.store.models":
                bad(node, f"imports ORM models {sorted(names)}")
            elif module == "backend.store" and names & (MODEL_NAMES | {"models"}):
                bad(node, f"imports ORM models {sorted(names & (MODEL_NAMES | {'models'}))}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in QUERY_METHODS:
                bad(node, f"calls .{node.func.attr}(…)")
    return found


def test_the_api_runs_no_sql_of_its_own() -> None:
    modules = sorted(API.glob("*.py"))
    assert len(modules) > 10
    problems = [v for module in modules for v in violations(module)]
    assert problems == [], "\n".join(problems)


def test_the_check_sees_what_it_forbids(tmp_path: Path) -> None:
    """The checker itself: each forbidden form is reported, the allowed ones are not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "from sqlalchemy import select\n"
        "from sqlalchemy.orm import Session, joinedload\n"
        "from sqlalchemy.exc import DBAPIError\n"
        "from backend.store.models import Run\n"
        "from backend.store import Space, queries\n"
        "if TYPE_CHECKING:\n"
        "    from backend.store.models import Layer\n"
        "def f(session: Session):\n"
        "    session.execute(select(Run))\n"
        "    return session.get(Run, 1), {}.get(1)\n"
    )
    assert [v.split(": ", 1)[1] for v in violations(sample)] == [
        "imports ['select'] from sqlalchemy",
        "imports ['joinedload'] from sqlalchemy.orm",
        "imports ORM models ['Run']",
        "imports ORM models ['Space']",
        "calls .execute(…)",
    ]
