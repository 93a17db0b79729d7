"""Writing the report: ``results.json`` (every number), ``report.md`` (each finding beside the paper's) and one SVG
plot per finding. Each section gets one sentence on what the paper found and one on what this run shows; the page
(Findings view) renders the same sentences from ``results.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from worker.eval.svg import bar_chart, line_chart

#: What the paper reports, per section (one sentence each).
PAPER = {
    "reversion": "Reverting the most important quarter of evolutions lowers accuracy the most (VGG16, 21→207: "
    "−0.113 train top-1), more than a random quarter; the least important quarter barely matters (Table 1).",
    "diversity": "Under a too-high learning rate concept diversity falls early (0.30 → −1.11 for VGG16), before "
    "accuracy shows the problem (§4.5).",
    "movement": "Concepts move less in an overfitting run than in a healthy one between accuracy milestones "
    "(mean movement 0.746 vs 0.991, §4.5).",
    "alignment": "People found neurons grouped by ConceptEvo coherent: intruder-test AUC 0.90 within the base "
    "model and 0.86 across models and epochs (Fig 5).",
    "sensitivity": "The paper chose k = 10 stimuli and dim = 30 by eye.",
    "ties": "The paper assumes every neuron's top stimuli show what it detects.",
}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def sentences(results: dict[str, Any]) -> dict[str, str]:
    """One sentence per section on what this run shows (from the numbers in ``results``)."""
    out: dict[str, str] = {}
    rev = results.get("reversion", {}).get("stages", [])
    if rev:
        held = [f"{s['epoch_from']}→{s['epoch_to']}" for s in rev if s["order_holds"]["train_top1"]]
        out["reversion"] = (
            f"The ordering holds at {len(held)} of {len(rev)} milestone stages on train top-1"
            + (f" ({', '.join(held)})." if held else ".")
        )
    else:
        out["reversion"] = (
            "No reversion stage: the reference run's accuracy milestones fall on fewer than two epochs."
        )
    warnings = results.get("diversity", {}).get("warnings", {})
    if warnings:
        parts = []
        for name, w in warnings.items():
            lead = f", {w['lead_epochs']} epoch(s) before accuracy fell behind" if w["lead_epochs"] else ""
            parts.append(f"{name}: {w['kind']}{lead}")
        out["diversity"] = "Early-warning rule against the reference run — " + "; ".join(parts) + "."
    else:
        out["diversity"] = "Only one run is computed in the space; nothing to compare."
    mov = results.get("movement", {})
    if mov:
        out["movement"] = (
            "Mean movement between milestones: "
            + ", ".join(f"{name} {_fmt(m['milestone_mean'])}" for name, m in mov.items())
            + "."
        )
    align = results.get("alignment", {})
    if "settings" in align:
        unified = {s: (r.get("unified") or {}).get("auc") for s, r in align["settings"].items()}
        shuffled = {s: (r.get("shuffled") or {}).get("auc") for s, r in align["settings"].items()}
        verdict = align.get("beats_baselines_across")
        out["alignment"] = (
            f"Simulated intruder AUC {_fmt(unified.get('within_base'))} within the base model, "
            f"{_fmt(unified.get('within_model'))} within one model across epochs, {_fmt(unified.get('across'))} "
            f"across models (shuffled space: {_fmt(shuffled.get('within_base'))} / {_fmt(shuffled.get('within_model'))}"
            f" / {_fmt(shuffled.get('across'))}); across models the unified space "
            + ("beats" if verdict else "does not beat")
            + " both baselines."
        )
    else:
        out["alignment"] = f"Not measured: {align.get('error', 'no ground truth')}."
    sens = results.get("sensitivity", {})
    if sens.get("k"):
        best = max(
            (a, k) for k, a in zip(sens["k"]["k"], sens["k"]["within_base"], strict=True) if a is not None
        )
        out["sensitivity"] = f"Within-base kNN agreement is highest at k = {best[1]} ({_fmt(best[0])})" + (
            f"; over dims {sens['dim']['dim']} it ranges {_fmt(min(sens['dim']['agreement']))}–"
            f"{_fmt(max(sens['dim']['agreement']))}."
            if sens.get("dim")
            else "."
        )
    ties = results.get("ties", {})
    if ties:
        worst = max(((e["share"], name, e["epoch"]) for name, es in ties.items() for e in es), default=None)
        if worst is not None:
            out["ties"] = (
                f"At most {worst[0]:.1%} of a snapshot's neurons have all k stimuli tied ({worst[1]} epoch {worst[2]})."
            )
    return out


def _plots(results: dict[str, Any]) -> dict[str, str]:
    """Section → SVG text."""
    plots: dict[str, str] = {}
    stages = results.get("reversion", {}).get("stages", [])
    if stages:
        rows = stages[0]["rows"]
        col = stages[0]["columns"].index("train_top1")
        plots["reversion"] = bar_chart(
            "Reversion: train top-1 change per bin",
            "Δ top-1",
            rows,
            [
                (
                    f"{s['epoch_from']}→{s['epoch_to']}",
                    [m[col] for m in s["mean"]],
                    [d[col] for d in s["std"]],
                )
                for s in stages
            ],
        )
    div = results.get("diversity", {}).get("runs", {})
    if div:
        plots["diversity"] = _per_epoch("Concept diversity per epoch", "entropy (nats)", div, "diversity")
    mov = results.get("movement", {})
    if mov:
        plots["movement"] = _per_epoch(
            "Movement of neuron vectors per epoch",
            "mean distance",
            {name: m["per_epoch"] for name, m in mov.items()},
            "movement",
        )
    align = results.get("alignment", {})
    if "settings" in align:
        settings = list(align["settings"])
        names = [
            n for n in ("unified", "activation", "umap", "shuffled") if n in align["settings"][settings[0]]
        ]
        plots["alignment"] = bar_chart(
            "Simulated intruder test (ROC AUC)",
            "AUC",
            settings,
            [
                (
                    n,
                    [(align["settings"][s].get(n) or {}).get("auc") or 0.0 for s in settings],
                    [0.0] * len(settings),
                )
                for n in names
            ],
        )
    sens = results.get("sensitivity", {})
    if sens.get("k"):
        series = [
            (f"k, {s}", sens["k"]["k"], sens["k"][s]) for s in ("within_base", "across") if s in sens["k"]
        ]
        plots["sensitivity"] = line_chart("Sensitivity: kNN agreement vs k", "k", "agreement", series)
    if sens.get("dim"):
        plots["sensitivity_dim"] = line_chart(
            "Sensitivity: within-base agreement vs dim",
            "dim",
            "agreement",
            [("within_base", sens["dim"]["dim"], sens["dim"]["agreement"])],
        )
    ties = results.get("ties", {})
    if ties:
        plots["ties"] = _per_epoch("Neurons whose k stimuli all tie", "share", ties, "share")
    return plots


def _per_epoch(title: str, ylabel: str, runs: dict[str, list[dict[str, Any]]], key: str) -> str:
    """A line chart of ``record[key]`` over ``record["epoch"]``, one line per run."""
    return line_chart(
        title,
        "epoch",
        ylabel,
        [(n, [r["epoch"] for r in rs], [r[key] for r in rs]) for n, rs in runs.items()],
    )


def _markdown(results: dict[str, Any], files: dict[str, str]) -> str:
    said = results["sections"]
    lines = [f"# ConceptEvo evaluation of space {results['space']['name']!r}", ""]
    lines.append(
        f"Computed by `conceptevo eval` in {results['timings'].get('total_s', 0):.0f} s from the store and the "
        f"checkpoints; base snapshot {results['space']['base_run']}@{results['space']['base_epoch']}. "
        "Seeds: one training run of each kind (spreads below are over repetitions and samples, not over seeds)."
    )
    titles = {
        "reversion": "1. Reversion (Table 1)",
        "diversity": "2. Diversity (§4.5)",
        "movement": "3. Movement (§4.5)",
        "alignment": "4. Alignment measured with ground truth (Fig 5)",
        "sensitivity": "5. Sensitivity to k and dim",
        "ties": "6. Tied stimuli",
    }
    for key, title in titles.items():
        lines += [
            "",
            f"## {title}",
            "",
            f"**Paper:** {said[key]['paper']}",
            "",
            f"**This run:** {said[key]['run']}",
        ]
        for plot in (key, f"{key}_dim"):
            if plot in files:
                lines += ["", f"![{plot}]({files[plot]})"]
        if key == "reversion":
            for stage in results["reversion"]["stages"]:
                lines += ["", stage["markdown"]]
        if key == "alignment" and "settings" in results["alignment"]:
            lines += ["", "| setting | geometry | kNN agreement | intruder AUC |", "|---|---|---|---|"]
            for setting, row in results["alignment"]["settings"].items():
                for name, score in row.items():
                    score = score or {}
                    lines.append(
                        f"| {setting} | {name} | {_fmt(score.get('agreement'))} | {_fmt(score.get('auc'))} |"
                    )
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path) -> list[str]:
    """Write the plots, ``report.md`` and ``results.json`` into ``out`` (created); return the file names.

    ``results`` gains ``sections`` (per section: paper sentence, run sentence, plot file) and ``files``.
    """
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for name, svg in _plots(results).items():
        files[name] = f"{name}.svg"
        (out / files[name]).write_text(svg)
    run_says = sentences(results)
    results["sections"] = {
        key: {"paper": PAPER[key], "run": run_says.get(key, "Not measured."), "plot": files.get(key)}
        for key in PAPER
    }
    if "sensitivity_dim" in files:
        results["sections"]["sensitivity"]["plot_dim"] = files["sensitivity_dim"]
    results["files"] = sorted([*files.values(), "report.md", "results.json"])
    (out / "report.md").write_text(_markdown(results, files))
    (out / "results.json").write_text(json.dumps(plain(results), indent=1, allow_nan=False))
    return results["files"]


def plain(value: Any) -> Any:
    """``value`` as plain JSON: numpy values as Python ones, non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
