"""The paper's findings over several worlds (issue 14, "One run is not a finding"): the eval reports of several
seeds of a world, read side by side — mean ± sample std of each figure over the seeds, each seed's verdict, and
whether each finding holds for every seed. Nothing is recomputed: the figures come from each world's
``results.json`` as the ``eval`` job wrote it.

Pure functions on plain dicts (no store, no torch); :func:`load_results` is the one that reads a file.
``conceptevo eval-seeds`` writes :func:`summarise`'s result as ``seeds.json`` and :func:`markdown`'s as
``seeds.md``; ``bench/eval_seeds.py`` prints it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.errors import ConceptEvoError
from worker.eval.report import PAPER

#: Settings and geometries of the alignment section whose AUCs are set side by side.
SETTINGS = ("within_base", "within_model", "across")
GEOMETRIES = ("unified", "activation", "umap", "shuffled")
#: The reference run and the runs compared with it (the demo world's names).
HEALTHY, HIGH_LR, OVERFIT = "healthy", "high-lr", "overfit"
#: Version of the summary's layout (``seeds.json``).
VERSION = 1


def load_results(path: Path) -> dict[str, Any]:
    """One world's eval report.

    Args:
        path: the report folder (``data/reports/<space>``) or its ``results.json``.

    Returns:
        The parsed ``results.json``.

    Raises:
        ConceptEvoError: no ``results.json`` there, or it is not an eval report (one line naming the file).
    """
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise ConceptEvoError(
            f"{file}: no eval report here; run `conceptevo eval` and a worker on that world first"
        )
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConceptEvoError(
            f"{file}: unreadable eval report ({exc.__class__.__name__}); rerun the eval"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict) or "reversion" not in data:
        raise ConceptEvoError(f"{file}: not an eval report (no space or reversion section); rerun the eval")
    return data


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample standard deviation of the values present.

    Args:
        values: one value per world; None where a world has none (it is left out of mean and std).

    Returns:
        ``{"values": [...], "mean": m, "std": s}``, each rounded to 3 decimals; ``mean`` is None without any
        value and ``std`` None with fewer than two.
    """
    numbers = [_number(v) for v in values]
    present = [v for v in numbers if v is not None]
    return {
        "values": [None if v is None else round(v, 3) for v in numbers],
        "mean": round(statistics.fmean(present), 3) if present else None,
        "std": round(statistics.stdev(present), 3) if len(present) > 1 else None,
    }


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (JSON null, a missing key, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _section(report: dict[str, Any], name: str) -> dict[str, Any]:
    section = report.get(name)
    return section if isinstance(section, dict) else {}


def _auc(report: dict[str, Any], setting: str, geometry: str) -> float | None:
    settings = _section(report, "alignment").get("settings") or {}
    return _number(((settings.get(setting) or {}).get(geometry) or {}).get("auc"))


def _reversion(report: dict[str, Any]) -> tuple[list[str], list[bool], dict[str, float | None]]:
    """A world's stages, the ordering verdict at each (train top-1), and its last stage's train top-1 change
    for the most and least important quarters and the random quarter."""
    stages = _section(report, "reversion").get("stages") or []
    names = [f"{s['epoch_from']}->{s['epoch_to']}" for s in stages]
    holds = [bool(s["order_holds"]["train_top1"]) for s in stages]
    last: dict[str, float | None] = {"most": None, "least": None, "random": None}
    if stages:
        final = stages[-1]
        column = final["columns"].index("train_top1")
        rows = {name: final["mean"][i][column] for i, name in enumerate(final["rows"])}
        last = {"most": rows.get("0-25%"), "least": rows.get("75-100%"), "random": rows.get("random")}
    return names, holds, last


def _movement(report: dict[str, Any], run: str, measure: str) -> float | None:
    return _number((_section(report, "movement").get(run) or {}).get(measure))


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass(frozen=True)
class Finding:
    """One finding set side by side over the worlds.

    Attributes:
        key: its key in ``holds_for_every_seed``.
        title: a short title.
        paper: one sentence on what the paper found.
        measure: what ``value`` is, per world.
        short: the measure in a few words, for the line "over N seeds: <short> <mean ± std>".
        unit: how values read — ``auc`` (a score in [0, 1]), ``change`` (a signed difference) or ``epochs``
            (a signed whole number of epochs).
        value: a world's report → the measure (None when the world has none).
        holds: a world's report → whether the finding holds on that world.
    """

    key: str
    title: str
    paper: str
    measure: str
    short: str
    unit: str
    value: Callable[[dict[str, Any]], float | None]
    holds: Callable[[dict[str, Any]], bool]


def _beats(report: dict[str, Any]) -> bool:
    return bool(_section(report, "alignment").get("beats_baselines_across"))


def _order_everywhere(report: dict[str, Any]) -> bool:
    holds = _reversion(report)[1]
    return bool(holds) and all(holds)  # a world without stages does not count as holding


def _warning(report: dict[str, Any], run: str) -> dict[str, Any]:
    return _section(report, "diversity").get("warnings", {}).get(run) or {}


def _moves_less(report: dict[str, Any], measure: str) -> bool:
    difference = _difference(_movement(report, OVERFIT, measure), _movement(report, HEALTHY, measure))
    return difference is not None and difference < 0


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "unified_beats_baselines_across",
        "Alignment across models and epochs (Fig 5)",
        PAPER["alignment"],
        "intruder AUC across models and epochs, unified space; holds when it beats both baselines",
        "intruder AUC across models",
        "auc",
        lambda r: _auc(r, "across", "unified"),
        _beats,
    ),
    Finding(
        "reversion_order",
        "Reversion of important evolutions (Table 1)",
        PAPER["reversion"],
        "train top-1 change when the most important quarter is reverted, last stage; holds when the ordering "
        "holds at every stage",
        "most important quarter reverted, train top-1 change",
        "change",
        lambda r: _number(_reversion(r)[2]["most"]),
        _order_everywhere,
    ),
    Finding(
        "high_lr_warning_early",
        "Diversity warns early under a too-high learning rate (§4.5)",
        PAPER["diversity"],
        "epochs by which high-lr's diversity warning leads its accuracy; holds when the warning is early",
        "warning lead (epochs)",
        "epochs",
        lambda r: _number(_warning(r, HIGH_LR).get("lead_epochs")),
        lambda r: _warning(r, HIGH_LR).get("kind") == "early",
    ),
    Finding(
        "overfit_moves_less_between_milestones",
        "Overfitting concepts move less, between milestones (§4.5)",
        PAPER["movement"],
        "overfit − healthy mean movement between accuracy milestones; holds when negative",
        "overfit − healthy movement",
        "change",
        lambda r: _difference(
            _movement(r, OVERFIT, "milestone_mean"), _movement(r, HEALTHY, "milestone_mean")
        ),
        lambda r: _moves_less(r, "milestone_mean"),
    ),
    Finding(
        "overfit_moves_less_per_epoch",
        "Overfitting concepts move less, per epoch (§4.5)",
        "The paper measures movement between accuracy milestones (0.746 overfit vs 0.991 healthy); per epoch "
        "is this report's second reading of the same claim.",
        "overfit − healthy mean movement per epoch; holds when negative",
        "overfit − healthy movement",
        "change",
        lambda r: _difference(
            _movement(r, OVERFIT, "per_epoch_mean"), _movement(r, HEALTHY, "per_epoch_mean")
        ),
        lambda r: _moves_less(r, "per_epoch_mean"),
    ),
)


def summarise(
    reports: Sequence[dict[str, Any]],
    labels: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Several worlds' eval reports side by side.

    Args:
        reports: each world's ``results.json`` (at least one).
        labels: a short name per world for tables (default ``"1"``, ``"2"``, …).
        sources: where each report was read (kept in the summary as given).

    Returns:
        A JSON-ready dict: ``worlds``, ``labels``, ``sources``, ``spaces`` (each report's space name);
        ``findings``: per finding of :data:`FINDINGS` its ``key``, ``title``, ``paper`` sentence, ``measure``,
        per-world ``values`` with their ``mean`` and ``std``, per-world ``holds`` and ``holds_for_every_seed``;
        and the detailed figures: ``auc`` (``<setting>_<geometry>`` → spread), ``unified_beats_baselines_across``,
        ``reversion`` (stages, verdicts, last stage's quarters), ``diversity`` (warning kind and lead of high-lr
        and overfit), ``movement`` (healthy vs overfit, between milestones and per epoch) and
        ``holds_for_every_seed`` (finding key → bool).

    Raises:
        ValueError: no report, or ``labels`` / ``sources`` of another length than ``reports``.
    """
    if not reports:
        raise ValueError("no report to summarise")
    labels = list(labels) if labels is not None else [str(i + 1) for i in range(len(reports))]
    sources = list(sources) if sources is not None else []
    if len(labels) != len(reports) or (sources and len(sources) != len(reports)):
        raise ValueError(f"{len(reports)} reports but {len(labels)} labels and {len(sources)} sources")

    findings = []
    for finding in FINDINGS:
        holds = [finding.holds(r) for r in reports]
        findings.append(
            {
                "key": finding.key,
                "title": finding.title,
                "paper": finding.paper,
                "measure": finding.measure,
                "short": finding.short,
                "unit": finding.unit,
                **spread([finding.value(r) for r in reports]),
                "holds": holds,
                "holds_for_every_seed": all(holds),
            }
        )

    reversion = [_reversion(r) for r in reports]
    diversity = {
        run: {
            "kind": [_warning(r, run).get("kind") for r in reports],
            "lead_epochs": [_warning(r, run).get("lead_epochs") for r in reports],
        }
        for run in (HIGH_LR, OVERFIT)
    }
    movement = {
        measure: {
            HEALTHY: spread([_movement(r, HEALTHY, measure) for r in reports]),
            OVERFIT: spread([_movement(r, OVERFIT, measure) for r in reports]),
            "overfit_moves_less": [_moves_less(r, measure) for r in reports],
        }
        for measure in ("milestone_mean", "per_epoch_mean")
    }
    return {
        "kind": "eval_seeds",
        "version": VERSION,
        "worlds": len(reports),
        "labels": labels,
        "sources": sources,
        "spaces": [str(_section(r, "space").get("name", "")) for r in reports],
        "findings": findings,
        "auc": {
            f"{setting}_{geometry}": spread([_auc(r, setting, geometry) for r in reports])
            for setting in SETTINGS
            for geometry in GEOMETRIES
        },
        "unified_beats_baselines_across": [_beats(r) for r in reports],
        "reversion": {
            "stages": [names for names, _, _ in reversion],
            "order_holds_train_top1": [holds for _, holds, _ in reversion],
            "holds_at_every_stage": [bool(holds) and all(holds) for _, holds, _ in reversion],
            "last_stage_train_top1": {
                quarter: spread([last[quarter] for _, _, last in reversion])
                for quarter in ("most", "least", "random")
            },
        },
        "diversity": diversity,
        "movement": movement,
        "holds_for_every_seed": {f["key"]: f["holds_for_every_seed"] for f in findings},
    }


def formatted(value: float | None, unit: str) -> str:
    """A finding's value as the summary shows it: an AUC plain (0.892), a change signed (−0.075), epochs as a
    signed whole number (+1); "–" for none. Minus signs are true minus signs."""
    if value is None:
        return "–"
    text = f"{value:.3f}" if unit == "auc" else f"{value:+.0f}" if unit == "epochs" else f"{value:+.3f}"
    return text.replace("-", "−")


def markdown(summary: dict[str, Any]) -> str:
    """``seeds.md``: per finding the paper's sentence, mean ± std over the worlds, each world's value and verdict,
    and whether it holds for every seed.

    Args:
        summary: what :func:`summarise` returned.

    Returns:
        The Markdown text.
    """
    labels = summary["labels"]
    lines = [
        f"# Findings over {summary['worlds']} seeds",
        "",
        "Each world's own report measures one world; here the same figures are set side by side "
        "(mean ± sample std over the seeds; a finding holds for every seed only if it holds on each).",
        "",
        "| finding | paper | "
        + " | ".join(f"seed {label}" for label in labels)
        + " | mean ± std | every seed? |",
        "|---|---|" + "---|" * len(labels) + "---|---|",
    ]
    for f in summary["findings"]:
        per_seed = [
            f"{formatted(v, f['unit'])} ({'holds' if h else 'does not hold'})"
            for v, h in zip(f["values"], f["holds"], strict=True)
        ]
        mean = formatted(f["mean"], "change" if f["unit"] == "epochs" else f["unit"])
        mean += "" if f["std"] is None else f" ± {f['std']:.3f}"
        verdict = "**yes**" if f["holds_for_every_seed"] else f"no: {sum(f['holds'])} of {len(f['holds'])}"
        lines.append(f"| {f['title']} | {f['paper']} | " + " | ".join(per_seed) + f" | {mean} | {verdict} |")
    lines += ["", "Measures:", ""]
    lines += [f"- **{f['title']}**: {f['measure']}." for f in summary["findings"]]
    if summary.get("sources"):
        lines += ["", "Reports read:", ""]
        lines += [f"- seed {label}: `{src}`" for label, src in zip(labels, summary["sources"], strict=True)]
    return "\n".join(lines) + "\n"
