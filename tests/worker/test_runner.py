"""The worker loop in-process, on a real SQLite store, with small hand-made handlers."""

from __future__ import annotations

from backend.store import finishing, get_job, list_jobs, open_store
from backend.store import queue as job_queue
from worker.errors import ConceptEvoError
from worker.runner import run_worker


def _handlers():
    def ok(ctx):
        ctx.progress(0.5, "halfway")
        with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"value": ctx.params["value"] * 2}):
            pass

    def user_error(ctx):
        raise ConceptEvoError("checkpoint /tmp/x/epoch_3.pt is truncated")

    def out_of_memory(ctx):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def flaky(ctx):
        raise ValueError("something odd\nwith a second line")

    return {"ok": ok, "user_error": user_error, "out_of_memory": out_of_memory, "flaky": flaky}


def test_failures_are_recorded_and_the_worker_goes_on(tmp_path) -> None:
    store = open_store(str(tmp_path / "q.db"))
    ids = {
        kind: job_queue.enqueue(store, kind, {"value": 21}, priority=priority, max_attempts=2)[0].id
        for kind, priority in (("user_error", 4), ("out_of_memory", 3), ("flaky", 2), ("ok", 1))
    }
    done = run_worker(store, once=True, poll=0.01, handlers=_handlers(), install_signals=False)
    assert done == 1
    jobs = {job.kind: job for job in list_jobs(store)}
    assert jobs["ok"].status == "done" and jobs["ok"].result == {"value": 42}
    assert (jobs["user_error"].status, jobs["user_error"].attempts) == ("failed", 1)
    assert jobs["user_error"].error == "checkpoint /tmp/x/epoch_3.pt is truncated"
    assert (jobs["out_of_memory"].status, jobs["out_of_memory"].attempts) == ("failed", 1)
    assert jobs["out_of_memory"].error == "out of memory on cpu while running out_of_memory"
    # An unexpected error is retried up to max_attempts, with the first line of its message kept.
    assert (jobs["flaky"].status, jobs["flaky"].attempts) == ("failed", 2)
    assert jobs["flaky"].error == "ValueError: something odd"
    assert get_job(store, ids["ok"]).progress == 1.0
