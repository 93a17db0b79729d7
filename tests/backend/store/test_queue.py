"""The job queue, single process: dedupe, order, leases, attempts, cancel/retry/release, finishing."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, text

from backend.store import (
    ConflictError,
    Dataset,
    LeaseLost,
    NotFoundError,
    Store,
    cancel,
    claim,
    enqueue,
    enqueue_in,
    fail,
    finish,
    finishing,
    get_job,
    heartbeat,
    list_jobs,
    release,
    retry,
)


def _count_datasets(store: Store) -> int:
    with store.session(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(Dataset)) or 0)


def test_enqueue_dedupes_identical_active_jobs(store: Store) -> None:
    a, created_a = enqueue(store, "add_snapshot", {"run": 1, "epoch": 2}, priority=1)
    b, created_b = enqueue(store, "add_snapshot", {"epoch": 2, "run": 1})  # same params, other key order
    c, created_c = enqueue(store, "add_snapshot", {"run": 1, "epoch": 3})
    assert (created_a, created_b, created_c) == (True, False, True)
    assert b.id == a.id and c.id != a.id
    assert a.status == "queued" and a.attempts == 0 and a.max_attempts == 3 and a.progress == 0.0
    assert a.params == {"run": 1, "epoch": 2}
    assert a.created_at.tzinfo is not None
    # a higher priority on a duplicate raises the queued job's priority
    d, created_d = enqueue(store, "add_snapshot", {"run": 1, "epoch": 2}, priority=5)
    assert (d.id, created_d, d.priority) == (a.id, False, 5)
    # once the job ends, the same job may be queued again
    job = claim(store, "w1")
    assert job is not None and job.id == a.id
    finish(store, a.id, "w1", {"ok": True})
    e, created_e = enqueue(store, "add_snapshot", {"run": 1, "epoch": 2})
    assert created_e and e.id not in (a.id, c.id)


def test_enqueue_rejects_bad_input(store: Store) -> None:
    with pytest.raises(ValueError, match="job kind"):
        enqueue(store, "", {})
    with pytest.raises(ValueError, match="not plain JSON"):
        enqueue(store, "demo", {"x": object()})
    with pytest.raises(ValueError, match="max_attempts"):
        enqueue(store, "demo", {}, max_attempts=0)


def test_claim_order_priority_then_age_and_kinds(store: Store) -> None:
    low_old, _ = enqueue(store, "a", {"i": 0}, priority=0)
    high_new, _ = enqueue(store, "b", {"i": 1}, priority=10)
    low_new, _ = enqueue(store, "a", {"i": 2}, priority=0)
    mid, _ = enqueue(store, "a", {"i": 3}, priority=5)
    assert claim(store, "w", kinds=["c"]) is None
    got = [claim(store, "w") for _ in range(4)]
    assert [j.id for j in got if j] == [high_new.id, mid.id, low_old.id, low_new.id]
    assert claim(store, "w") is None
    job = got[0]
    assert job is not None
    assert (job.status, job.worker_id, job.attempts, job.message) == ("running", "w", 1, "started")
    assert job.lease_expires_at is not None and job.started_at is not None


def test_claim_kinds_filter(store: Store) -> None:
    enqueue(store, "importance", {"i": 0}, priority=9)
    only, _ = enqueue(store, "add_snapshot", {"i": 1})
    job = claim(store, "w", kinds=["add_snapshot", "demo"])
    assert job is not None and job.id == only.id


def test_heartbeat_progress_and_ownership(store: Store) -> None:
    enqueue(store, "demo", {})
    job = claim(store, "w1", lease_s=30)
    assert job is not None
    assert heartbeat(store, job.id, "w1", progress=0.25, message="stimuli 1/4", lease_s=30)
    info = get_job(store, job.id)
    assert (info.progress, info.message) == (0.25, "stimuli 1/4")
    assert heartbeat(store, job.id, "w1", progress=7.0)  # clipped
    assert get_job(store, job.id).progress == 1.0
    assert not heartbeat(store, job.id, "intruder", progress=0.5)
    assert get_job(store, job.id).progress == 1.0


def test_expired_lease_is_reclaimed_and_attempts_are_limited(store: Store) -> None:
    job, _ = enqueue(store, "build_space", {"base": "healthy@9"}, max_attempts=2)
    first = claim(store, "dead-1", lease_s=0.05)
    assert first is not None and first.attempts == 1
    assert claim(store, "w2", lease_s=30) is None  # lease still valid
    time.sleep(0.1)
    second = claim(store, "dead-2", lease_s=0.05)
    assert second is not None
    assert (second.id, second.worker_id, second.attempts) == (job.id, "dead-2", 2)
    assert second.message == "reclaimed from lost worker dead-1"
    assert not heartbeat(store, job.id, "dead-1")  # the first worker learns it lost the job
    time.sleep(0.1)
    assert claim(store, "w3") is None  # attempts used up → failed, not claimed
    final = get_job(store, job.id)
    assert final.status == "failed"
    assert final.error == "worker lost 2 times (last: dead-2); gave up after 2 attempts"
    assert final.finished_at is not None
    # the failed job no longer blocks an identical new one
    _, created = enqueue(store, "build_space", {"base": "healthy@9"})
    assert created


def test_finishing_commits_rows_and_done_together(store: Store) -> None:
    enqueue(store, "demo", {})
    job = claim(store, "w1")
    assert job is not None
    with finishing(store, job.id, "w1", result={"rows": 1}) as s:
        s.add(Dataset(name="result-a", root="/r", n_images=0, class_names=[]))
    info = get_job(store, job.id)
    assert (info.status, info.result, info.progress, info.worker_id) == ("done", {"rows": 1}, 1.0, "w1")
    assert _count_datasets(store) == 1
    with pytest.raises(LeaseLost):  # finishing twice is refused
        finish(store, job.id, "w1")


def test_finishing_writes_nothing_when_lease_was_lost(store: Store) -> None:
    enqueue(store, "demo", {})
    slow = claim(store, "slow", lease_s=0.05)
    assert slow is not None
    time.sleep(0.1)
    fast = claim(store, "fast", lease_s=30)
    assert fast is not None and fast.id == slow.id and fast.attempts == 2
    with pytest.raises(
        LeaseLost, match=rf"job {slow.id} is no longer owned by worker slow \(running, owned by fast\)"
    ):
        with finishing(store, slow.id, "slow", result={"who": "slow"}) as s:
            s.add(Dataset(name="result-slow", root="/r", n_images=0, class_names=[]))
    assert _count_datasets(store) == 0
    assert get_job(store, slow.id).status == "running"
    with finishing(store, fast.id, "fast", result={"who": "fast"}) as s:
        s.add(Dataset(name="result-fast", root="/r", n_images=0, class_names=[]))
    assert get_job(store, fast.id).result == {"who": "fast"}
    assert _count_datasets(store) == 1


def test_finishing_rolls_back_when_the_block_raises(store: Store) -> None:
    enqueue(store, "demo", {})
    job = claim(store, "w1")
    assert job is not None
    with pytest.raises(RuntimeError), finishing(store, job.id, "w1") as s:
        s.add(Dataset(name="half", root="/r", n_images=0, class_names=[]))
        s.flush()
        raise RuntimeError("disk full")
    assert _count_datasets(store) == 0
    assert get_job(store, job.id).status == "running"
    assert fail(store, job.id, "w1", "disk full\ntraceback…")
    info = get_job(store, job.id)
    assert (info.status, info.error, info.message) == ("failed", "disk full\ntraceback…", "disk full")


def test_follow_up_jobs_commit_or_vanish_with_the_results(store: Store) -> None:
    enqueue(store, "build_space", {"base": 1})
    job = claim(store, "w1")
    assert job is not None
    with pytest.raises(RuntimeError), finishing(store, job.id, "w1") as s:
        created = enqueue_in(s, "add_snapshot", {"snapshot": 2})
        assert created is not None and created[1]
        raise RuntimeError("killed before commit")
    assert [j.kind for j in list_jobs(store)] == ["build_space"]  # the follow-up went with the rollback
    with finishing(store, job.id, "w1") as s:
        first = enqueue_in(s, "add_snapshot", {"snapshot": 2}, priority=3)
        again = enqueue_in(s, "add_snapshot", {"snapshot": 2}, priority=5)
        assert first is not None and again is not None
        assert (again[0].id, again[1]) == (first[0].id, False)
    follow_up = get_job(store, first[0].id)
    assert (follow_up.status, follow_up.priority) == ("queued", 5)
    assert get_job(store, job.id).status == "done"


def test_fail_with_and_without_retry(store: Store) -> None:
    job, _ = enqueue(store, "add_snapshot", {"e": 1}, max_attempts=2)
    assert claim(store, "w") is not None
    assert not fail(store, job.id, "other", "nope")
    assert fail(store, job.id, "w", "CUDA out of memory", retry=True)
    info = get_job(store, job.id)
    assert (info.status, info.attempts, info.worker_id) == ("queued", 1, None)
    assert info.message == "attempt 1 failed, will retry: CUDA out of memory"
    assert claim(store, "w") is not None
    assert fail(store, job.id, "w", "CUDA out of memory", retry=True)  # attempts used up → failed
    assert get_job(store, job.id).status == "failed"
    corrupt, _ = enqueue(store, "add_snapshot", {"e": 2})
    assert claim(store, "w") is not None
    assert fail(store, corrupt.id, "w", "checkpoint epoch2.pt is corrupt", retry=False)
    info = get_job(store, corrupt.id)
    assert (info.status, info.attempts, info.error) == ("failed", 1, "checkpoint epoch2.pt is corrupt")


def test_cancel_retry_release(store: Store) -> None:
    queued, _ = enqueue(store, "a", {"i": 0})
    running, _ = enqueue(store, "a", {"i": 1})
    assert cancel(store, queued.id).status == "cancelled"
    assert cancel(store, queued.id).status == "cancelled"  # idempotent
    job = claim(store, "w")
    assert job is not None and job.id == running.id
    assert cancel(store, running.id).status == "cancelled"
    assert not heartbeat(store, running.id, "w")
    with pytest.raises(LeaseLost):
        finish(store, running.id, "w", {})
    # retry puts it back with attempts reset
    again = retry(store, running.id)
    assert (again.status, again.attempts, again.error, again.worker_id) == ("queued", 0, None, None)
    with pytest.raises(ConflictError, match=rf"job {running.id} cannot be retried: it is queued"):
        retry(store, running.id)
    # an identical job queued meanwhile blocks the retry of the cancelled twin
    twin, created = enqueue(store, "a", {"i": 0})
    assert created
    with pytest.raises(ConflictError, match=rf"identical job {twin.id} is already queued"):
        retry(store, queued.id)
    # release: back to the queue without counting the attempt
    job = claim(store, "w")
    assert job is not None and job.attempts == 1
    assert not release(store, job.id, "someone-else")
    assert release(store, job.id, "w")
    info = get_job(store, job.id)
    assert (info.status, info.attempts, info.worker_id) == ("queued", 0, None)
    done_job = claim(store, "w")
    assert done_job is not None
    finish(store, done_job.id, "w")
    with pytest.raises(ConflictError, match="already done"):
        cancel(store, done_job.id)
    with pytest.raises(ConflictError, match="it is done"):
        retry(store, done_job.id)


def test_get_and_list_jobs(store: Store) -> None:
    ids = [enqueue(store, "k", {"i": i})[0].id for i in range(5)]
    cancel(store, ids[1])
    assert [j.id for j in list_jobs(store)] == ids[::-1]
    assert [j.id for j in list_jobs(store, status="cancelled")] == [ids[1]]
    assert [j.id for j in list_jobs(store, status=["queued"], limit=2)] == [ids[4], ids[3]]
    assert list_jobs(store, kind="other") == []
    with pytest.raises(ValueError, match="unknown job status 'weird'"):
        list_jobs(store, status="weird")
    with pytest.raises(NotFoundError, match="job 999 not found"):
        get_job(store, 999)
    with pytest.raises(NotFoundError):
        cancel(store, 999)


def test_job_row_round_trip(store: Store) -> None:
    job, _ = enqueue(store, "importance", {"run": "healthy", "classes": [1, 2], "t": [0, 5]}, priority=-3)
    with store.session(readonly=True) as s:
        row = s.execute(text("SELECT kind, priority, status, dedupe_key, active_key FROM jobs")).one()
    assert row == ("importance", -3, "queued", job.dedupe_key, job.dedupe_key)
    assert len(job.dedupe_key) == 64
    assert get_job(store, job.id) == job
