"""A deferred job (its input is not ready) waits with backoff and never stalls the rest of the queue (issue 11.1)."""

from __future__ import annotations

from backend.store import finishing, get_job, list_jobs, open_store
from backend.store import queue as job_queue
from worker import runner
from worker.runner import Deferred, run_worker


def _handlers():
    def ok(ctx):
        with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"i": ctx.params["i"]}):
            pass

    def waits(ctx):
        raise Deferred(
            "space 'demo' (id 3) is not built yet",
            gave_up="space 'demo' (id 3) was never built: its build job failed or was cancelled",
        )

    return {"ok": ok, "waits": waits}


def test_a_deferred_high_priority_job_does_not_stall_thirty_others(tmp_path) -> None:
    store = open_store(str(tmp_path / "q.db"))
    try:
        waiting = job_queue.enqueue(store, "waits", {}, priority=1000)[0]
        for i in range(30):
            job_queue.enqueue(store, "ok", {"i": i})
        # Before the fix the worker claimed the deferred job again and again and ran nothing else.
        done = run_worker(
            store, once=True, poll=0.01, max_jobs=40, handlers=_handlers(), install_signals=False
        )
        assert done == 30
        jobs = list_jobs(store, limit=100)
        assert sum(j.status == "done" for j in jobs) == 30
        held = get_job(store, waiting.id)
        assert held.status == "queued" and held.attempts == 0
        assert held.deferrals == 1
        assert held.not_before is not None and held.not_before > held.created_at
        assert "not built yet" in held.message
    finally:
        store.dispose()


def test_a_job_deferred_too_often_fails_with_the_handlers_reason(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runner, "DEFER_BASE_S", 0.01)
    monkeypatch.setattr(runner, "DEFER_CAP_S", 0.02)
    monkeypatch.setattr(runner, "MAX_DEFERRALS", 3)
    store = open_store(str(tmp_path / "q.db"))
    try:
        waiting = job_queue.enqueue(store, "waits", {}, priority=5)[0]
        run_worker(store, once=False, poll=0.01, max_jobs=4, handlers=_handlers(), install_signals=False)
        job = get_job(store, waiting.id)
        assert job.status == "failed"
        assert job.deferrals == 3
        assert job.error.startswith(
            "space 'demo' (id 3) was never built: its build job failed or was cancelled"
        )
        assert "deferred 3 times" in job.error
        assert job.active is False
    finally:
        store.dispose()
