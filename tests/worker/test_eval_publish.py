"""Publishing an ``eval`` report (:func:`worker.jobs.eval._publish`): the new folder replaces the old report whole,
but the summary over several worlds (``seeds.json`` / ``seeds.md``, written by ``conceptevo eval-seeds``, not by
the job) is carried over, so re-running the eval of the seed-0 world does not lose the page's seeds view."""

from __future__ import annotations

from pathlib import Path

from worker.jobs.eval import _publish


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_publish_replaces_the_report_and_keeps_the_seeds_summary(tmp_path: Path) -> None:
    target = _folder(
        tmp_path / "reports" / "demo",
        {"results.json": "old", "old.svg": "<svg/>", "seeds.json": "{}", "seeds.md": "# seeds"},
    )
    staged = _folder(tmp_path / "scratch" / "report", {"results.json": "new", "report.md": "# new"})
    _publish(staged, target)
    assert {p.name: p.read_text() for p in target.iterdir()} == {
        "results.json": "new",
        "report.md": "# new",
        "seeds.json": "{}",
        "seeds.md": "# seeds",
    }
    assert sorted(p.name for p in target.parent.iterdir()) == ["demo"]  # no old folder left

    # A first report (no folder yet) and a report without a seeds summary publish as before.
    fresh = _folder(tmp_path / "scratch2" / "report", {"results.json": "first"})
    _publish(fresh, tmp_path / "reports" / "other")
    assert [p.name for p in (tmp_path / "reports" / "other").iterdir()] == ["results.json"]
