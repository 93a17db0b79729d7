"""``GET /api/spaces/{id}/report`` and its files (issue 14) on the synthetic world: not ready without a report;
with one (written where the eval job writes it) the results and links; files only by a report file name. And
``GET /api/spaces/{id}/report/seeds``: the summary over several worlds when ``conceptevo eval-seeds`` wrote one,
else 404."""

from __future__ import annotations

import json
import shutil

from backend.store import get_space
from backend.store.evaluation import report_dir
from tests.fixtures.eval_reports import WORLDS
from worker.eval.seeds import markdown, summarise


def test_report_is_not_ready_then_served_with_links_and_files_only_by_name(client, world):
    space_id = world.ids.space_id
    assert client.get("/api/spaces/999999/report").status_code == 404
    empty = client.get(f"/api/spaces/{space_id}/report").json()
    assert empty["ready"] is False and empty["results"] is None and empty["files"] == {}

    with world.store.session(readonly=True) as s:
        folder = report_dir(get_space(s, space_id), world.data_dir)
    folder.mkdir(parents=True)
    try:
        results = {"space": {"id": space_id}, "files": ["reversion.svg", "results.json", "../x.svg"]}
        (folder / "results.json").write_text(json.dumps(results))
        (folder / "reversion.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        (folder.parent / "outside.svg").write_text("<svg/>")
        report = client.get(f"/api/spaces/{space_id}/report").json()
        assert report["ready"] is True and report["results"]["space"]["id"] == space_id
        assert set(report["files"]) == {"reversion.svg", "results.json"}  # only report file names get links
        svg = client.get(report["files"]["reversion.svg"])
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert client.get(report["files"]["results.json"]).json() == results
        for name in ("..%2Foutside.svg", "outside.svg", "missing.svg", "x.exe", "REPORT.MD"):
            assert client.get(f"/api/spaces/{space_id}/report/files/{name}").status_code == 404, name
        # A broken results.json (a job's report is written whole) reads as no report, not a 500.
        (folder / "results.json").write_text("{not json")
        assert client.get(f"/api/spaces/{space_id}/report").json()["ready"] is False
    finally:
        shutil.rmtree(folder.parent)


def test_seeds_summary_is_served_exactly_when_present_and_404_otherwise(client, world):
    space_id = world.ids.space_id
    with world.store.session(readonly=True) as s:
        space = get_space(s, space_id)
        folder = report_dir(space, world.data_dir)
        name = space.name
    assert client.get("/api/spaces/999999/report/seeds").status_code == 404
    absent = client.get(f"/api/spaces/{space_id}/report/seeds")
    assert absent.status_code == 404 and "conceptevo eval-seeds" in absent.json()["detail"]
    assert "\n" not in absent.json()["detail"]
    assert client.get(f"/api/spaces/{space_id}/report").json()["seeds"] is False

    folder.mkdir(parents=True)
    try:
        finding = {
            "key": "reversion_order",
            "title": "Reversion of important evolutions (Table 1)",
            "paper": "Reverting the most important quarter lowers accuracy the most.",
            "measure": "train top-1 change, most important quarter",
            "values": [-0.1, None],
            "mean": -0.1,
            "std": None,
            "holds": [True, False],
            "holds_for_every_seed": False,
        }
        summary = {
            "kind": "eval_seeds",
            "worlds": 2,
            "labels": ["0", "1"],
            "sources": ["/x"],
            "findings": [finding],
        }
        (folder / "seeds.json").write_text(json.dumps(summary))
        served = client.get(f"/api/spaces/{space_id}/report/seeds")
        assert served.status_code == 200
        assert served.json() == {
            "space_id": space_id,
            "space_name": name,
            "worlds": 2,
            "labels": ["0", "1"],
            "findings": [{**finding, "short": "", "unit": "change"}],  # written before units: read as changes
            "files": {"seeds.json": f"/api/spaces/{space_id}/report/files/seeds.json"},
        }
        assert client.get(f"/api/spaces/{space_id}/report").json()["seeds"] is True
        assert client.get(f"/api/spaces/{space_id}/report/files/seeds.json").json() == summary

        # The summary conceptevo eval-seeds writes is served as is (with its Markdown linked).
        full = summarise(WORLDS, labels=["0", "1", "2"])
        (folder / "seeds.json").write_text(json.dumps(full))
        (folder / "seeds.md").write_text(markdown(full))
        body = client.get(f"/api/spaces/{space_id}/report/seeds").json()
        assert body["findings"] == [{k: f[k] for k in [*finding, "short", "unit"]} for f in full["findings"]]
        assert [f["unit"] for f in body["findings"]] == ["auc", "change", "epochs", "change", "change"]
        assert set(body["files"]) == {"seeds.json", "seeds.md"}

        # Anything that does not read as a summary is no summary: 404, never a 500.
        broken = [
            "{not json",
            "[]",
            json.dumps({**summary, "worlds": 1}),
            json.dumps({**summary, "labels": ["0"]}),
            json.dumps({**summary, "findings": [{**finding, "holds": [True]}]}),
            json.dumps({**summary, "findings": [{"key": "x"}]}),
            json.dumps({**summary, "findings": [{**finding, "mean": float("nan")}]}),  # NaN is no JSON
        ]
        for text in broken:
            (folder / "seeds.json").write_text(text)
            assert client.get(f"/api/spaces/{space_id}/report/seeds").status_code == 404, text
            assert client.get(f"/api/spaces/{space_id}/report").json()["seeds"] is False, text
    finally:
        shutil.rmtree(folder.parent)
