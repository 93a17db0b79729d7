"""``GET /api/spaces/{id}/report`` and its files (issue 14) on the synthetic world: not ready without a report;
with one (written where the eval job writes it) the results and links; files only by a report file name."""

from __future__ import annotations

import json
import shutil

from backend.store import get_space
from backend.store.evaluation import report_dir


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
