"""The jobs view in a real Chromium, over a copy of the demo world (its queue is changed): every job listed
with its status, and the Cancel and Retry buttons changing a job's status in the page and in the API."""

from __future__ import annotations

import httpx
import pytest

from tests.frontend.browser import requires_browser

pytestmark = [
    pytest.mark.slow,
    requires_browser(),
]


def _uncomputed_stage(server, run_id: int) -> tuple[int, int]:
    """Two consecutive epochs of a run with no importance computed between them."""
    done = {(i["epoch_from"], i["epoch_to"]) for i in server.get(f"/api/importance?run_id={run_id}")}
    epochs = [s["epoch"] for s in server.get(f"/api/runs/{run_id}")["snapshots"]]
    stage = next(((a, b) for a, b in zip(epochs, epochs[1:], strict=False) if (a, b) not in done), None)
    assert stage is not None, f"every stage of run {run_id} has importance computed"
    return stage


def _row_status(ui, job_id: int) -> str | None:
    return ui.page.locator(f"[data-testid=job-row][data-job-id='{job_id}']").get_attribute("data-status")


def _wait_status(ui, job_id: int, status: str) -> None:
    ui.wait_until(
        "([id, s]) => document.querySelector(`[data-testid=job-row][data-job-id='${id}']`)?.dataset.status === s",
        arg=[job_id, status],
    )


def test_cancel_and_retry_in_the_jobs_view_change_the_jobs_status(open_ui, copy_server, demo_world):
    run_id = copy_server.get(f"/api/spaces/{demo_world.space_id}")["base_run_id"]
    start, end = _uncomputed_stage(copy_server, run_id)
    created = httpx.post(
        f"{copy_server.url}/api/jobs",
        json={
            "kind": "importance",
            "params": {"run_id": run_id, "epoch_from": start, "epoch_to": end, "classes": [0]},
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "queued"

    ui = open_ui(copy_server)
    ui.goto("/jobs")
    # Every job of the queue, newest first, with its status.
    listed = ui.page.get_by_test_id("job-row").evaluate_all(
        "els => els.map(e => [Number(e.dataset.jobId), e.dataset.status])"
    )
    assert listed == [[j["id"], j["status"]] for j in copy_server.get("/api/jobs?limit=200")]
    assert listed[0] == [job["id"], "queued"]
    row = ui.page.locator(f"[data-testid=job-row][data-job-id='{job['id']}']")
    assert "importance" in row.inner_text()
    assert row.locator("[data-action=retry]").count() == 0
    ui.wait_until(
        "() => document.querySelector('[data-testid=jobs-indicator]').textContent.includes('1 queued')"
    )
    ui.screenshot("jobs")

    # Cancel: the row and the API say cancelled; the button becomes Retry.
    row.locator("[data-action=cancel]").click()
    _wait_status(ui, job["id"], "cancelled")
    assert copy_server.get(f"/api/jobs/{job['id']}")["status"] == "cancelled"
    assert row.locator("[data-action=cancel]").count() == 0
    ui.wait_until("() => document.querySelector('[data-testid=jobs-indicator]').textContent === 'no jobs'")

    # Retry: queued again, attempts reset.
    row.locator("[data-action=retry]").click()
    _wait_status(ui, job["id"], "queued")
    again = copy_server.get(f"/api/jobs/{job['id']}")
    assert (again["status"], again["attempts"]) == ("queued", 0)
    assert row.locator("[data-action=cancel]").count() == 1

    # The status chips filter the list.
    ui.page.locator(".jobs-chip[data-filter=cancelled]").click()
    cancelled = [j["id"] for j in copy_server.get("/api/jobs?limit=200") if j["status"] == "cancelled"]
    ui.wait_until(
        "(n) => document.querySelectorAll('[data-testid=job-row]').length === n", arg=len(cancelled)
    )
    assert (
        ui.page.get_by_test_id("job-row").evaluate_all("els => els.map(e => Number(e.dataset.jobId))")
        == cancelled
    )
    ui.page.locator(".jobs-chip[data-filter=all]").click()

    # Leave nothing queued: cancel it again from the page.
    row.locator("[data-action=cancel]").click()
    _wait_status(ui, job["id"], "cancelled")
    assert copy_server.get(f"/api/jobs/{job['id']}")["status"] == "cancelled"
    ui.assert_no_problems()
