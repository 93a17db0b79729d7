"""The evaluation report (issue 14) end to end over a copy of the tiny demo world: the Findings view offers to run
the ``eval`` job when there is no report; ``conceptevo eval`` + a real worker write a complete, consistent report
(every section; bins partition each layer; AUCs in [0, 1]; the shuffled space near chance; files published and
no half-written report); the API serves it and refuses bad ids and file names; the page renders every section.
And the findings over several seeds: ``conceptevo eval-seeds`` on hand-built reports (no seed worlds are built
here) writes the summary the page shows on a synthetic world — or, without one, the line giving the command."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from pathlib import Path

import httpx
import pytest

from backend.store import open_store
from tests.datadir import DataDir, wait_exit
from tests.fixtures.eval_reports import write_reports
from tests.fixtures.synthetic import build_synthetic_store
from tests.frontend.browser import requires_browser
from tests.frontend.conftest import _serve

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, requires_browser()]

SECTIONS = ("reversion", "diversity", "movement", "alignment", "sensitivity", "ties")
#: A cheap evaluation of the tiny world: every section, small samples; the per-snapshot UMAP baseline (its fits
#: and numba compilation cost most of a minute on 2 cores) is left out here and run by bench/eval.py.
CHEAP_PARAMS = {
    "queries": 60,
    "probe_images": 32,
    "sweep_epochs": 5,
    "epochs_per_run": 2,
    "umap_baseline": False,
}


def _check_report(results: dict, world) -> None:
    assert set(SECTIONS) <= set(results["sections"])
    for said in results["sections"].values():
        assert said["paper"] and said["run"] and said["run"] != "Not measured."
    rev = results["reversion"]
    for layer, sizes in rev["bins"].items():  # the 4 importance bins partition the layer
        assert sum(sizes[:4]) == rev["channels"][layer] and max(sizes[:4]) - min(sizes[:4]) <= 1
    for stage in rev["stages"]:
        assert stage["epoch_from"] < stage["epoch_to"]
        assert len(stage["mean"]) == 5 and all(len(row) == 4 for row in stage["mean"])
        assert stage["reps"] == 2
    settings = results["alignment"]["settings"]
    assert set(settings) == {"within_base", "within_model", "across"}
    for row in settings.values():
        for score in row.values():
            assert 0.0 <= score["auc"] <= 1.0 and 0.0 <= score["agreement"] <= 1.0
        assert abs(row["shuffled"]["auc"] - 0.5) < 0.15  # a space that groups nothing: chance
        assert row["unified"]["auc"] > row["shuffled"]["auc"]
    assert set(results["diversity"]["runs"]) == set(world.runs)
    assert "high-lr" in results["diversity"]["warnings"]
    for runs in results["ties"].values():
        for epoch in runs:
            assert 0.0 <= epoch["share"] <= 1.0
    k = results["sensitivity"]["k"]
    assert len(k["within_base"]) == len(k["k"]) and all(0 <= a <= 1 for a in k["within_base"])
    assert len(results["sensitivity"]["dim"]["agreement"]) == len(results["sensitivity"]["dim"]["dim"])


def test_eval_job_writes_a_complete_report_that_the_findings_view_renders(
    open_ui, copy_server, world_copy, demo_world
):
    space = demo_world.space_id
    url = copy_server.url

    # No report yet: the API says so and the page offers the job; its button queues it.
    assert copy_server.get(f"/api/spaces/{space}/report")["ready"] is False
    ui = open_ui(copy_server)
    ui.goto(f"/findings?space={space}")
    ui.page.get_by_test_id("findings-empty").wait_for()
    ui.page.get_by_test_id("findings-run").click()
    ui.wait_until(
        "() => /queued|evaluation job/i.test(document.querySelector('[data-testid=findings-progress]').textContent)"
    )
    (queued,) = [j for j in copy_server.get("/api/jobs?status=queued") if j["kind"] == "eval"]
    assert queued["params"]["space_id"] == space
    assert httpx.post(f"{url}/api/jobs/{queued['id']}/cancel", timeout=30).status_code == 200

    # Bad input at the door: one line, exit 2; the API 404s unknown spaces and files, never a path.
    bad = world_copy.cli("eval", "--space", "no-such-space")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no-such-space" in bad.stderr
    assert httpx.get(f"{url}/api/spaces/999999/report", timeout=30).status_code == 404
    for name in ("..%2Fconceptevo.db", "results.json"):
        assert httpx.get(f"{url}/api/spaces/{space}/report/files/{name}", timeout=30).status_code == 404

    # The job, run by a real worker with cheap samples.
    created = httpx.post(
        f"{url}/api/jobs",
        json={"kind": "eval", "params": {"space_id": space, "reps": 2, "images": 4, **CHEAP_PARAMS}},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    worker = world_copy.worker("--once", "--poll", "0.2")
    assert wait_exit(worker, 600, world_copy.logs[-1]) == 0, world_copy.logs[-1].read_text()[-3000:]
    job = copy_server.get(f"/api/jobs/{created.json()['id']}")
    assert job["status"] == "done", job["error"]

    report = copy_server.get(f"/api/spaces/{space}/report")
    assert report["ready"] is True
    results = report["results"]
    _check_report(results, demo_world)
    folder = world_copy.root / "reports"
    (published,) = [p for p in folder.iterdir()]  # one report folder, no staged or old leftovers
    assert json.loads((published / "results.json").read_text())["space"]["id"] == space
    assert "## 4. Alignment" in (published / "report.md").read_text()
    for name, link in report["files"].items():
        response = httpx.get(url + link, timeout=30)
        assert response.status_code == 200, name
        if name.endswith(".svg"):
            assert response.text.startswith("<svg") and response.headers["content-type"].startswith(
                "image/svg"
            )
    assert not math.isnan(results["timings"]["total_s"])
    # bench/eval_seeds.py reads such reports side by side: the same world twice has no spread and every verdict
    # of the one world "holds for every seed"
    seeds = _eval_seeds().main([str(published), str(published / "results.json")])
    assert seeds["worlds"] == 2
    unified = seeds["auc"]["across_unified"]
    assert unified["std"] == 0.0 and unified["mean"] == round(
        results["alignment"]["settings"]["across"]["unified"]["auc"], 3
    )
    holds = [s["order_holds"]["train_top1"] for s in results["reversion"]["stages"]]
    assert seeds["holds_for_every_seed"]["reversion_order"] == (bool(holds) and all(holds))
    assert seeds["holds_for_every_seed"]["unified_beats_baselines_across"] == bool(
        results["alignment"]["beats_baselines_across"]
    )

    # The page renders every section: both sentences, its plot loaded, and the tables.
    ui.goto(f"/findings?space={space}")
    ui.wait_idle()
    for key in SECTIONS:
        section = ui.page.get_by_test_id(f"finding-{key}")
        assert results["sections"][key]["run"] in section.inner_text()
    ui.wait_until(
        "n => [...document.querySelectorAll('.findings-plot')].filter(i => i.complete && i.naturalWidth > 0).length >= n",
        arg=len([f for f in report["files"] if f.endswith(".svg")]),
    )
    assert ui.page.get_by_test_id("reversion-table").count() == len(results["reversion"]["stages"])
    assert ui.page.get_by_test_id("alignment-table").count() == 1
    ui.assert_no_problems()


def _eval_seeds():
    """``bench/eval_seeds.py`` as a module (the bench folder is not a package)."""
    spec = importlib.util.spec_from_file_location("eval_seeds", ROOT / "bench" / "eval_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_findings_over_seeds_render_from_the_summary_eval_seeds_writes(open_ui, tmp_path):
    # A synthetic world (nothing trained) whose space has a report of its own; the page has no seeds summary.
    data = DataDir(tmp_path / "data")
    data.root.mkdir()
    store = open_store(str(data.db))
    world = build_synthetic_store(store, n_neurons=4, n_epochs=2, n_runs=1, data_dir=data.root)
    store.dispose()
    space, folder = world.space_id, data.root / "reports" / "synthetic-space"
    folder.mkdir(parents=True)
    said = {"paper": "The paper's sentence.", "run": "This run's sentence.", "plot": None}
    results = {
        "space": {"id": space, "name": "synthetic-space", "base_run": "run-0", "base_epoch": 1},
        "timings": {"total_s": 1.0},
        "sections": {"reversion": said},
        "files": ["results.json"],
    }
    (folder / "results.json").write_text(json.dumps(results))
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(contextlib.contextmanager(_serve)(data))
        ui = open_ui(server)
        ui.goto(f"/findings?space={space}")
        ui.page.get_by_test_id("finding-reversion").wait_for()
        assert "conceptevo eval-seeds" in ui.page.get_by_test_id("findings-seeds-hint").inner_text()
        assert ui.page.get_by_test_id("findings-seeds").count() == 0

        # Three worlds' reports combined into this space's report folder by the CLI, as the README says.
        reports = [str(f) for f in write_reports(tmp_path / "worlds")]
        made = data.cli("eval-seeds", *reports, "--name", "synthetic-space", "--labels", "0,1,2")
        assert made.returncode == 0, made.stderr
        assert sorted(p.name for p in folder.iterdir()) == ["results.json", "seeds.json", "seeds.md"]
        ui.goto(f"/findings?space={space}")
        block = ui.page.get_by_test_id("findings-seeds")
        block.wait_for()
        assert (
            "Over 3 seeds" in block.inner_text()
            and ui.page.get_by_test_id("findings-seeds-hint").count() == 0
        )
        lines = {
            "unified_beats_baselines_across": "over 3 seeds: intruder AUC across models 0.850 ± 0.050; "
            "holds for every seed: no (2 of 3)",
            "reversion_order": "over 3 seeds: most important quarter reverted, train top-1 change −0.060 ± 0.036; "
            "holds for every seed: no (2 of 3)",
            "high_lr_warning_early": "over 3 seeds: warning lead (epochs) +0.000 ± 1.414; "
            "holds for every seed: no (1 of 3)",
            "overfit_moves_less_per_epoch": "over 3 seeds: overfit − healthy movement −0.167 ± 0.058; "
            "holds for every seed: yes",
        }
        for key, line in lines.items():
            assert line in ui.page.get_by_test_id(f"seed-finding-{key}").inner_text(), key
        table = ui.page.get_by_test_id("seeds-table")
        assert [c.strip() for c in table.locator("thead th").all_inner_texts()] == [
            "finding",
            "seed 0",
            "seed 1",
            "seed 2",
            "mean ± std",
            "every seed",
        ]
        assert table.locator("tbody tr").count() == 5
        assert table.locator("tbody tr").nth(2).locator("td").all_inner_texts() == [
            "+1 ✓",  # a lead in whole epochs
            "−1 ✗",
            "– ✗",
            "+0.000 ± 1.414",
            "✗ no",
        ]
        markdown = httpx.get(
            server.url + block.get_by_role("link", name="seeds.md").get_attribute("href"), timeout=30
        )
        assert markdown.status_code == 200 and markdown.text.startswith("# Findings over 3 seeds")

        # Without a report of its own the space still shows its findings over seeds, below the run button.
        (folder / "results.json").unlink()
        ui.goto(f"/findings?space={space}")
        ui.page.get_by_test_id("findings-empty").wait_for()
        assert ui.page.get_by_test_id("seeds-table").count() == 1
        ui.assert_no_problems()
