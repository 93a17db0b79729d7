"""The findings over several worlds (:mod:`worker.eval.seeds`, issue 14 "One run is not a finding") on
hand-built reports (:mod:`tests.fixtures.eval_reports`): exact means and sample stds, each world's verdict, the
"holds for every seed" flags, values a world lacks, reading reports from disk, and the bench that wraps it."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from tests.fixtures.eval_reports import WORLDS, report, write_reports
from worker.errors import ConceptEvoError
from worker.eval.seeds import FINDINGS, load_results, markdown, spread, summarise

ROOT = Path(__file__).resolve().parents[3]


def test_spread_is_mean_and_sample_std_of_the_values_present() -> None:
    assert spread([1.0, None, 3.0]) == {"values": [1.0, None, 3.0], "mean": 2.0, "std": 1.414}
    assert spread([0.1234, 0.1244]) == {"values": [0.123, 0.124], "mean": 0.124, "std": 0.001}
    assert spread([2.0]) == {"values": [2.0], "mean": 2.0, "std": None}  # one value has no spread
    assert spread([None, float("nan")]) == {"values": [None, None], "mean": None, "std": None}
    assert spread([True, 1]) == {"values": [None, 1.0], "mean": 1.0, "std": None}  # a verdict is not a number


def test_every_finding_over_three_worlds_with_exact_numbers() -> None:
    summary = summarise(WORLDS, labels=["0", "1", "2"])
    assert summary["worlds"] == 3 and summary["labels"] == ["0", "1", "2"]
    by_key = {f["key"]: f for f in summary["findings"]}
    assert list(by_key) == [f.key for f in FINDINGS]
    expected = {  # key: (values, mean, std, holds)
        "unified_beats_baselines_across": ([0.9, 0.8, 0.85], 0.85, 0.05, [True, True, False]),
        "reversion_order": ([-0.1, -0.05, -0.03], -0.06, 0.036, [True, False, True]),
        "high_lr_warning_early": ([1.0, -1.0, None], 0.0, 1.414, [True, False, False]),
        "overfit_moves_less_between_milestones": ([-0.2, 0.1, -0.1], -0.067, 0.153, [True, False, True]),
        "overfit_moves_less_per_epoch": ([-0.2, -0.2, -0.1], -0.167, 0.058, [True, True, True]),
    }
    for key, (values, mean, std, holds) in expected.items():
        f = by_key[key]
        assert (f["values"], f["mean"], f["std"], f["holds"]) == (values, mean, std, holds), key
        assert f["holds_for_every_seed"] is all(holds)
        assert f["paper"].endswith(".") and f["title"] and f["measure"]
    assert summary["holds_for_every_seed"] == {key: all(v[3]) for key, v in expected.items()}

    # The detailed figures the bench printed before, unchanged in shape.
    assert summary["auc"]["across_unified"] == {"values": [0.9, 0.8, 0.85], "mean": 0.85, "std": 0.05}
    assert summary["auc"]["within_base_unified"] == {"values": [0.91, 0.81, 0.86], "mean": 0.86, "std": 0.05}
    assert summary["auc"]["across_umap"] == {"values": [0.7, 0.7, None], "mean": 0.7, "std": 0.0}
    assert summary["unified_beats_baselines_across"] == [True, True, False]
    assert summary["reversion"]["stages"] == [["1->2", "2->3"], ["1->2", "2->3"], ["1->2"]]
    assert summary["reversion"]["order_holds_train_top1"] == [[True, True], [True, False], [True]]
    assert summary["reversion"]["holds_at_every_stage"] == [True, False, True]
    assert summary["reversion"]["last_stage_train_top1"]["least"] == {
        "values": [0.02, 0.02, 0.02],
        "mean": 0.02,
        "std": 0.0,
    }
    assert summary["diversity"]["high-lr"] == {"kind": ["early", "late", None], "lead_epochs": [1, -1, None]}
    assert summary["movement"]["milestone_mean"]["overfit_moves_less"] == [True, False, True]
    assert summary["movement"]["per_epoch_mean"]["healthy"] == {
        "values": [0.9, 0.8, 1.0],
        "mean": 0.9,
        "std": 0.1,
    }
    json.dumps(summary, allow_nan=False)  # plain JSON


def test_missing_sections_read_as_none_and_do_not_hold() -> None:
    bare = report(
        across=0.9, beats=True, stages=[], high_lr=None, milestone=(1.0, 1.0), per_epoch=(None, 0.5)
    )
    del bare["alignment"], bare["movement"]["overfit"]
    summary = summarise([bare, WORLDS[0]])
    by_key = {f["key"]: f for f in summary["findings"]}
    assert summary["labels"] == ["1", "2"]
    assert by_key["unified_beats_baselines_across"]["values"] == [None, 0.9]
    assert by_key["unified_beats_baselines_across"]["std"] is None
    assert by_key["reversion_order"]["holds"] == [False, True]  # no stage is no evidence
    assert by_key["overfit_moves_less_per_epoch"]["values"] == [None, -0.2]
    assert not any(f["holds_for_every_seed"] for f in summary["findings"])


def test_summarise_refuses_nothing_and_mismatched_labels() -> None:
    with pytest.raises(ValueError):
        summarise([])
    with pytest.raises(ValueError):
        summarise(WORLDS, labels=["0", "1"])


def test_load_results_reads_a_folder_or_its_file_and_refuses_in_one_line(tmp_path: Path) -> None:
    folders = write_reports(tmp_path)
    assert (
        load_results(folders[0])
        == load_results(folders[0] / "results.json")
        == json.loads(json.dumps(WORLDS[0]))
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = {"": "no eval report", "[1, 2]": "not an eval report", "{oops": "unreadable"}
    for text, fragment in cases.items():
        if text:
            (bad / "results.json").write_text(text)
        with pytest.raises(ConceptEvoError) as caught:
            load_results(bad)
        assert fragment in str(caught.value) and "\n" not in str(caught.value), text


def test_markdown_lists_every_finding_with_its_verdict() -> None:
    text = markdown(summarise(WORLDS, labels=["0", "1", "2"], sources=["a", "b", "c"]))
    assert text.startswith("# Findings over 3 seeds\n")
    assert "| seed 0 | seed 1 | seed 2 | mean ± std | every seed? |" in text
    assert "| −0.060 ± 0.036 | no: 2 of 3 |" in text
    assert "| −0.167 ± 0.058 | **yes** |" in text
    # each in its unit: an AUC plain, a lead in whole epochs, a change signed
    assert "| 0.900 (holds) | 0.800 (holds) | 0.850 (does not hold) | 0.850 ± 0.050 |" in text
    assert "| +1 (holds) | −1 (does not hold) | – (does not hold) | +0.000 ± 1.414 |" in text
    assert "- seed 2: `c`" in text
    assert text.count("\n| ") == 1 + len(FINDINGS)


def test_the_bench_is_a_thin_wrapper_with_a_last_line_json(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("eval_seeds", ROOT / "bench" / "eval_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folders = write_reports(tmp_path)
    summary = module.main([str(f) for f in folders])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == summary and summary["bench"] == "eval_seeds" and summary["worlds"] == 3
    assert summary["holds_for_every_seed"]["overfit_moves_less_per_epoch"] is True
    assert math.isclose(summary["auc"]["across_unified"]["mean"], 0.85)
    with pytest.raises(SystemExit) as caught:
        module.main([str(tmp_path / "nowhere"), str(folders[0])])
    assert "no eval report" in str(caught.value.code)
