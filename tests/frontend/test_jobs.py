"""Jobs from the page in a real Chromium: an epoch that is not computed yet is asked for on the slider, a real
``conceptevo worker`` computes it, and the page shows it without a reload; an empty database explains what
to do."""

from __future__ import annotations

import json

import pytest

from tests.datadir import stop, wait_exit
from tests.frontend.browser import requires_browser
from tests.frontend.pagekit import Neurons, run_url

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]


def _indicator(ui) -> str:
    return ui.page.get_by_test_id("jobs-indicator").inner_text()


def test_asking_for_an_uncomputed_epoch_queues_a_job_a_worker_finishes_and_the_page_shows_it(
    ui, server, demo_world
):
    run_id = demo_world.runs[demo_world.uncomputed_run]
    epoch = demo_world.uncomputed_epoch
    neurons = Neurons.of(server, run_id)
    ui.goto(run_url(demo_world.space_id, run_id))
    assert ui.app("computedEpochs()") == demo_world.computed[demo_world.uncomputed_run]
    assert epoch not in ui.app("computedEpochs()")
    tick = ui.map.locator(f"[data-testid=slider] g.tick[data-epoch='{epoch}']")
    assert tick.get_attribute("data-computed") == "0"
    ui.wait_until("() => document.querySelector('[data-testid=jobs-indicator]').textContent === 'no jobs'")
    ui.page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    with ui.page.expect_response(
        lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST"
    ) as posted:
        ui.click_tick(epoch)
    response = posted.value
    assert response.status == 201, response.text()
    request = json.loads(response.request.post_data)
    assert request["kind"] == "add_snapshot"
    assert request["params"] == {
        "space_id": demo_world.space_id,
        "snapshot_id": demo_world.uncomputed_snapshot,
    }
    job = response.json()
    assert (job["kind"], job["status"]) == ("add_snapshot", "queued")
    # The page shows the queued job: the indicator, and the tick as pending.
    ui.wait_until(
        "() => document.querySelector('[data-testid=jobs-indicator]').textContent.includes('1 queued')"
    )
    ui.wait_until(
        "(e) => document.querySelector(`section.map-view [data-testid=slider] g.tick[data-epoch='${e}']`)"
        ".classList.contains('pending')",
        arg=epoch,
    )
    ui.screenshot("job-queued")

    worker = demo_world.data.worker("--once", "--poll", "0.3")
    worker_log = demo_world.data.logs[-1]
    try:
        seen_running = ui.wait_until(
            """(e) => document.querySelector('[data-testid=jobs-indicator]').textContent.includes('1 running')
                 || window.conceptevo.computedEpochs().includes(e)""",
            arg=epoch,
            timeout_ms=300_000,
        ) and "running" in _indicator(ui)
        if seen_running:
            ui.screenshot("job-running")
        ui.wait_until("(e) => window.conceptevo.computedEpochs().includes(e)", arg=epoch, timeout_ms=300_000)
        assert wait_exit(worker, 120, worker_log) == 0, worker_log.read_text()[-3000:]
    finally:
        stop(worker)
    log = worker_log.read_text()
    assert f"claimed job {job['id']} (add_snapshot)" in log, log[-3000:]

    # The new epoch is placed and selectable without a reload; the page followed the epoch it asked for.
    ui.wait_until("(e) => window.conceptevo.state().epoch === e && window.conceptevo.idle()", arg=epoch)
    assert ui.page.evaluate("window.__sameDocument") is True
    assert tick.get_attribute("data-computed") == "1"
    assert ui.app("computedEpochs()") == sorted([*demo_world.computed[demo_world.uncomputed_run], epoch])
    assert ui.app("points()")["epoch"] == epoch
    assert ui.app("stats()")["pointsDrawn"] == len(neurons.ids)
    ui.wait_until("() => document.querySelector('[data-testid=jobs-indicator]').textContent === 'no jobs'")
    assert server.get(f"/api/jobs/{job['id']}")["status"] == "done"
    # It steps like any computed epoch.
    ui.page.keyboard.press("ArrowLeft")
    previous = demo_world.computed[demo_world.uncomputed_run][-1]
    ui.wait_until("(e) => window.conceptevo.state().epoch === e && window.conceptevo.idle()", arg=previous)
    ui.click_tick(epoch)
    ui.wait_until("(e) => window.conceptevo.state().epoch === e && window.conceptevo.idle()", arg=epoch)
    ui.screenshot("job-done")
    ui.assert_no_problems()


def test_an_empty_database_says_to_run_make_demo(open_ui, empty_server):
    ui = open_ui(empty_server)
    ui.goto("/")
    message = ui.map.get_by_test_id("map-message")
    message.wait_for()
    assert "make demo" in message.inner_text()
    assert ui.app("points()") is None
    assert ui.app("computedEpochs()") == []
    assert ui.app("stats()")["pointsDrawn"] == 0
    assert ui.canvas_ink()["ink"] == 0, "the empty map's canvas is not blank"
    assert ui.page.get_by_test_id("error").is_hidden()
    # the indicator answers once the first poll of the queue returns
    ui.wait_until("() => document.querySelector('[data-testid=jobs-indicator]').textContent === 'no jobs'")
    ui.screenshot("empty")
    ui.assert_no_problems()
