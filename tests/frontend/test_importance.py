"""The importance view in a real Chromium: the ranked neurons of one computation with their patches before
and after (loaded), paging, a row opening its neuron on the map, the ranking's CSV export, and a reversion
check queued from the view's form that a real worker runs and the view then charts."""

from __future__ import annotations

import json

import pytest

from tests.datadir import stop, wait_exit
from tests.frontend.browser import requires_browser
from tests.frontend.pagekit import Neurons, download, read_csv, wait_images_loaded

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]

PAGE_SIZE = 20
RANKING_HEADER = ["rank", "neuron_id", "layer", "channel", "importance", "mean_s"]


def _computation(server, run_id: int) -> dict:
    """The computation the view lands on for a run: the first class of its stage computed for the most classes
    (the earliest such stage)."""
    stages: dict[tuple[int, int], list[dict]] = {}
    for info in server.get(f"/api/importance?run_id={run_id}"):
        stages.setdefault((info["epoch_from"], info["epoch_to"]), []).append(info)
    assert stages, f"the demo world has no importance computed for run {run_id}"
    key = max(sorted(stages), key=lambda k: len({i["class_idx"] for i in stages[k]}))
    return min(stages[key], key=lambda i: (i["class_idx"], -i["id"]))


def _rows(ui) -> list[int]:
    return ui.page.locator("[data-testid=importance-row]").evaluate_all(
        "els => els.map(e => Number(e.dataset.neuron))"
    )


def _open(ui, server, run_id: int) -> dict:
    info = _computation(server, run_id)
    ui.goto(f"/importance?run={run_id}&imp={info['id']}")
    state = ui.state()
    assert (state["view"], state["run"], state["imp"]) == ("importance", run_id, info["id"])
    return info


def test_the_ranking_lists_neurons_with_their_patches_and_a_row_opens_its_neuron_on_the_map(
    ui, server, demo_world
):
    run_id = server.get(f"/api/spaces/{demo_world.space_id}")["base_run_id"]
    neurons = Neurons.of(server, run_id)
    info = _open(ui, server, run_id)
    ranking = server.get(f"/api/importance/{info['id']}?limit={PAGE_SIZE}&offset=0")
    total = ranking["total"]
    items = ranking["items"]

    # One row per ranked neuron of the first page, in the API's order, each named and scored.
    assert _rows(ui) == [item["neuron_id"] for item in items]
    assert ui.page.get_by_test_id("importance-page").inner_text() == f"rows 1–{len(items)} of {total}"
    rows = ui.page.locator("[data-testid=importance-row]")
    for k, item in enumerate(items):
        row = rows.nth(k)
        assert row.locator(".imp-rank").inner_text() == str(item["rank"])
        assert row.locator(".imp-neuron").inner_text() == neurons.name(item["neuron_id"])
        assert row.locator(".imp-score .imp-num").inner_text() == f"{item['score']:.2f}"
        # Patches before → after: the sprite of each side's snapshot, where the API has patches.
        sprites = row.locator(".imp-patches img").evaluate_all("els => els.map(e => new URL(e.src).pathname)")
        expected = [
            f"/api/patches/{item[side][0]['snapshot_id']}/{item['neuron_id']}/sprite"
            for side in ("before", "after")
            if item[side]
        ]
        assert sprites == expected, (k, sprites, expected)
        # A side whose stimuli all tie says so over its patches (they show no concept).
        tied_sides = sum(bool(item.get(f"tied_{side}")) and bool(item[side]) for side in ("before", "after"))
        assert row.locator("[data-testid=tied-sprite]").count() == tied_sides, (k, item["neuron_id"])
    n_images = sum(bool(item["before"]) + bool(item["after"]) for item in items)
    assert n_images >= len(items), "most ranked neurons have patches at both ends of the stage"
    wait_images_loaded(ui, "[data-testid=importance-list] .imp-patches img", n_images)

    # The histogram of the scores, one row per layer; the reversion chart where a check was run.
    histogram = ui.page.get_by_test_id("importance-histogram")
    assert histogram.is_visible() and histogram.locator("svg").count() >= 1
    done_checks = [
        job
        for job in server.get("/api/jobs?kind=revert_eval&status=done&limit=1000")
        if int(job["params"]["run_id"]) == run_id
        and (int(job["params"]["epoch_from"]), int(job["params"]["epoch_to"]))
        == (info["epoch_from"], info["epoch_to"])
    ]
    if done_checks:
        assert ui.page.get_by_test_id("reversion-chart").is_visible()
    else:
        assert ui.page.get_by_test_id("reversion-empty").is_visible()
        assert ui.page.get_by_test_id("reversion-chart").count() == 0
    ui.screenshot("importance")

    # The next page.
    ui.page.get_by_test_id("importance-next").click()
    ui.wait_until(
        "(t) => document.querySelector('[data-testid=importance-page]').textContent.startsWith('rows 21')"
    )
    ui.wait_idle()
    second = server.get(f"/api/importance/{info['id']}?limit={PAGE_SIZE}&offset={PAGE_SIZE}")
    assert _rows(ui) == [item["neuron_id"] for item in second["items"]]
    ui.page.get_by_test_id("importance-prev").click()
    ui.wait_until(
        "() => document.querySelector('[data-testid=importance-page]').textContent.startsWith('rows 1–')"
    )
    ui.wait_idle()

    # A row opens its neuron on the map at the stage's end, coloured by this ranking.
    chosen = items[2]["neuron_id"]
    rows.nth(2).click()
    ui.wait_until("() => window.conceptevo.state().view === 'map'")
    ui.wait_until(
        "(t) => document.querySelector('section.map-view [data-testid=neuron-title]')?.textContent === t",
        arg=neurons.name(chosen),
    )
    ui.wait_idle()
    state = ui.state()
    assert (state["neuron"], state["color"], state["imp"], state["run"], state["epoch"]) == (
        chosen,
        "importance",
        info["id"],
        run_id,
        info["epoch_to"],
    )
    assert ui.page.get_by_test_id("colour-select").input_value() == "importance"
    # Back returns to the ranking.
    ui.page.go_back()
    ui.wait_until("() => window.conceptevo.state().view === 'importance'")
    ui.wait_idle()
    assert _rows(ui) == [item["neuron_id"] for item in items]
    ui.assert_no_problems()


def test_the_ranking_downloads_as_csv_with_every_ranked_neuron(ui, server, demo_world):
    run_id = server.get(f"/api/spaces/{demo_world.space_id}")["base_run_id"]
    neurons = Neurons.of(server, run_id)
    info = _open(ui, server, run_id)
    run_name = server.get(f"/api/runs/{run_id}")["name"]
    name, data = download(ui, lambda: ui.page.get_by_test_id("export-ranking").click())
    cls = info["class_name"] or f"class{info['class_idx']}"
    assert name == f"conceptevo-importance-{run_name}-{cls}-e{info['epoch_from']}-e{info['epoch_to']}.csv"
    header, rows = read_csv(data)
    assert header == RANKING_HEADER
    api = server.get(f"/api/importance/{info['id']}?limit=1000&offset=0")
    everything = list(api["items"])
    while len(everything) < api["total"]:
        page = server.get(f"/api/importance/{info['id']}?limit=1000&offset={len(everything)}")
        assert page["items"], "the API's ranking ends before its total"
        everything += page["items"]
    assert len(rows) == api["total"] > PAGE_SIZE
    assert [int(r[0]) for r in rows] == list(range(1, api["total"] + 1))
    for row, item in zip(rows, everything, strict=True):
        n = int(row[1])
        assert n == item["neuron_id"]
        assert row[2:4] == [neurons.layers[neurons.layer_idx[n]], str(neurons.channel[n])]
        assert float(row[4]) == pytest.approx(item["score"], abs=1e-12)
        assert float(row[5]) == pytest.approx(item["mean_s"], rel=1e-9, abs=1e-15)
    ui.assert_no_problems()


def test_a_reversion_check_queued_from_the_form_is_charted_when_the_worker_is_done(
    open_ui, copy_server, world_copy, demo_world
):
    """On a copy of the world: the check for one class (about half a minute on the tiny world; all classes
    would take minutes)."""
    run_id = copy_server.get(f"/api/spaces/{demo_world.space_id}")["base_run_id"]
    ui = open_ui(copy_server)
    info = _open(ui, copy_server, run_id)
    stage = (info["epoch_from"], info["epoch_to"])
    done = copy_server.get("/api/jobs?kind=revert_eval&status=done&limit=1000")
    mine = [j for j in done if int(j["params"]["run_id"]) == run_id]
    if any((int(j["params"]["epoch_from"]), int(j["params"]["epoch_to"])) == stage for j in mine):
        pytest.skip("a reversion check is already done for the stage: nothing to queue")
    assert ui.page.get_by_test_id("reversion-empty").is_visible()
    assert ui.page.get_by_test_id("reversion-chart").count() == 0

    # The form: this stage, this class, "Run reversion check".
    ui.page.get_by_test_id("importance-from").select_option(str(stage[0]))
    ui.page.get_by_test_id("importance-to").select_option(str(stage[1]))
    ui.page.get_by_test_id("importance-form-class").select_option(str(info["class_idx"]))
    with ui.page.expect_response(
        lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST"
    ) as posted:
        ui.page.get_by_test_id("reversion-compute").click()
    response = posted.value
    assert response.status == 201, response.text()
    assert json.loads(response.request.post_data) == {
        "kind": "revert_eval",
        "params": {
            "run_id": run_id,
            "epoch_from": stage[0],
            "epoch_to": stage[1],
            "classes": [info["class_idx"]],
        },
        "priority": 50,
    }
    job = response.json()
    ui.wait_until(
        "(id) => document.querySelector(`[data-testid=importance-jobs] [data-job='${id}']`) !== null",
        arg=job["id"],
    )

    worker = world_copy.worker("--once", "--poll", "0.3")
    log = world_copy.logs[-1]
    try:
        ui.page.get_by_test_id("reversion-chart").wait_for(timeout=600_000)
        assert wait_exit(worker, 120, log) == 0, log.read_text()[-3000:]
    finally:
        stop(worker)
    ui.wait_idle()
    finished = copy_server.get(f"/api/jobs/{job['id']}")
    assert finished["status"] == "done", finished
    table = finished["result"]["table"]
    chart = ui.page.get_by_test_id("reversion-chart")
    caption = chart.locator("figcaption").inner_text()
    assert f"epoch {stage[0]} → {stage[1]}" in caption and "only" in caption, caption
    assert chart.locator("text.rev-bin").count() == len(table["rows"])
    assert chart.locator("g.rev-series").count() >= 1
    # What the chart says must be readable and true; both are checked before failing on either.
    faults = []
    # The y axis: distinct tick labels.
    ticks = (
        chart.locator("g.rev-axis")
        .first.locator(".tick text")
        .evaluate_all("els => els.map(e => e.textContent)")
    )
    if len(ticks) < 2 or len(set(ticks)) != len(ticks):
        faults.append(f"the y axis reads {ticks} (table means {table['mean']})")
    # The sentence: it says the run shows the paper's ordering only where reverting the most important quarter
    # hurts top-1 more than reverting the least important one.
    verdict = ui.page.get_by_test_id("reversion-verdict").inner_text()
    quarters = [i for i, row in enumerate(table["rows"]) if not row.lower().startswith("random")]
    changes = {
        column: (
            table["mean"][quarters[0]][table["columns"].index(column)],
            table["mean"][quarters[-1]][table["columns"].index(column)],
        )
        for column in ("train_top1", "val_top1")
        if column in table["columns"]
    }
    if "This run shows that ordering" in verdict and not all(
        most < least for most, least in changes.values()
    ):
        faults.append(
            "the verdict says the run shows the paper's ordering, but the changes (most important, least "
            f"important quarter) are {changes}: {verdict!r}"
        )
    ui.screenshot("importance-reversion")
    assert not faults, "the reversion chart:\n" + "\n".join(faults)
    ui.assert_no_problems()
