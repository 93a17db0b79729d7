"""``conceptevo eval-seeds`` (issue 14, "One run is not a finding"): several worlds' eval reports combined into
``seeds.json`` + ``seeds.md`` in the report folder the page reads; bad input refused in one line with status 2,
leaving nothing written. The CLI runs in-process (:func:`worker.cli.run`) on hand-built reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.eval_reports import WORLDS, write_reports
from worker.cli import run as cli_run
from worker.eval.seeds import summarise


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data folder the command writes into (``CONCEPTEVO_DATA``)."""
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CONCEPTEVO_DB", str(tmp_path / "data" / "conceptevo.db"))
    return tmp_path / "data"


def _refused(args: list[str], capsys) -> str:
    capsys.readouterr()
    status = cli_run(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), (status, err)
    return lines[0]


def test_bad_input_is_one_line_status_2_and_writes_nothing(data: Path, tmp_path: Path, capsys) -> None:
    folders = [str(f) for f in write_reports(tmp_path / "worlds")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "give 2 or more" in _refused(["eval-seeds", folders[0]], capsys)
    assert f"{empty / 'results.json'}: no eval report" in _refused(
        ["eval-seeds", folders[0], str(empty)], capsys
    )
    assert "--labels" in _refused(["eval-seeds", *folders, "--labels", "0,1"], capsys)
    assert "--labels" in _refused(["eval-seeds", *folders[:2], "--labels", "0,"], capsys)
    assert "--name" in _refused(["eval-seeds", *folders, "--name", "..."], capsys)
    assert "repeats a label" in _refused(["eval-seeds", *folders, "--labels", "0,1,0"], capsys)
    # one world given twice (the same folder, or a copy of its report) is no second seed
    assert "is the same report as" in _refused(["eval-seeds", folders[0], folders[1], folders[0]], capsys)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "results.json").write_text((Path(folders[1]) / "results.json").read_text())
    assert f"{copy} is the same report as {folders[1]}" in _refused(
        ["eval-seeds", folders[1], str(copy)], capsys
    )
    (empty / "results.json").write_text("[]")
    assert "not an eval report" in _refused(["eval-seeds", folders[0], str(empty)], capsys)
    assert not (data / "reports").exists()


def test_writes_seeds_json_and_md_into_the_first_spaces_report_folder(
    data: Path, tmp_path: Path, capsys
) -> None:
    folders = [str(f) for f in write_reports(tmp_path / "worlds")]
    capsys.readouterr()
    assert cli_run(["eval-seeds", *folders, "--labels", "0, 1, 2"]) == 0
    out = capsys.readouterr().out
    target = data / "reports" / "demo"  # the space of the first report: where the page looks for it
    assert f"wrote {target / 'seeds.json'}" in out and "1 of 5 findings hold for every one of 3 seeds" in out
    written = json.loads((target / "seeds.json").read_text())
    assert written == json.loads(json.dumps(summarise(WORLDS, labels=["0", "1", "2"], sources=folders)))
    assert (target / "seeds.md").read_text().startswith("# Findings over 3 seeds")
    assert sorted(p.name for p in target.iterdir()) == ["seeds.json", "seeds.md"]  # no partial files left

    # --name picks another space's folder (made safe as the report folders are); a results.json path works too
    assert cli_run(["eval-seeds", f"{folders[0]}/results.json", folders[1], "--name", "my space"]) == 0
    other = json.loads((data / "reports" / "my_space" / "seeds.json").read_text())
    assert other["worlds"] == 2 and other["labels"] == ["1", "2"]
