"""A run watched while it trains, in a real Chromium (issue 16): a tracker-driven run goes on beside a real worker,
and the page — listening to the server's event stream, never reloaded — shows the run as live, places each new
epoch on the slider and, with ``?follow=1``, moves the map to it; the badge goes when the tracker closes."""

from __future__ import annotations

import pytest
import torch

from tests.datadir import stop
from tests.frontend.browser import requires_browser
from tests.frontend.pagekit import run_url
from worker.models.registry import build_model
from worker.tracker import Tracker

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]


def test_a_new_epoch_appears_while_a_tracker_driven_run_goes_on(
    open_ui, copy_server, world_copy, demo_world, tmp_path
):
    store = world_copy.store()
    alerts: list[str] = []
    tracker = Tracker(
        run="live",
        arch="demo-vgg",
        dataset="demo-train",
        space="demo",
        out_dir=tmp_path / "live",
        store=store,
        echo=alerts.append,
    )
    model = build_model("demo-vgg", 12)
    worker = world_copy.worker("--poll", "0.3")
    try:
        tracker.epoch_end(model, 0)
        tracker.flush()
        ui = open_ui(copy_server)
        ui.goto(run_url(demo_world.space_id, tracker.run_id, follow=1))
        ui.page.evaluate("window.__sameDocument = true")  # gone if the page reloads
        ui.wait_until("() => window.conceptevo.liveMode() === 'events'", 20_000)
        ui.wait_until("() => !document.querySelector('[data-testid=live-badge]').hidden", 20_000)
        option = f"document.querySelector('[data-testid=run-select] option[value=\"{tracker.run_id}\"]')"
        ui.wait_until(f"() => {option}.textContent.endsWith('● live')", 20_000)  # marked in the run list too
        ui.wait_until("() => window.conceptevo.computedEpochs().includes(0)", 300_000)

        with torch.no_grad():  # the run goes on: the weights change, a new epoch ends
            for p in model.parameters():
                p.mul_(0.9)
        tracker.epoch_end(model, 1)
        ui.wait_until(
            "() => window.conceptevo.computedEpochs().includes(1) && window.conceptevo.state().epoch === 1",
            300_000,
        )
        assert ui.page.evaluate("window.__sameDocument === true")
        assert "follow=1" in ui.page.url and "epoch=1" in ui.page.url

        tracker.close()  # the run is no longer live
        ui.wait_until("() => document.querySelector('[data-testid=live-badge]').hidden", 20_000)
        ui.wait_until(f"() => {option}.textContent === 'live'", 20_000)  # the run's name, no longer marked
        ui.assert_no_problems()
    finally:
        tracker.close()
        stop(worker)
        store.dispose()
