"""The worker loop: claim a job, run its handler, report progress, finish or fail — and go on.

One process, one job at a time. A background thread renews the job's lease every few seconds with
the latest progress, so a long single step (a UMAP fit) never loses the lease while the process is
alive, and a SIGKILLed worker's lease expires so another worker claims the job again. SIGTERM/SIGINT
ask the current job to stop at its next progress report: the job is released back to the queue
(without counting an attempt) and the worker exits.

Handlers write their results through :func:`backend.store.finishing`, in one transaction that also
marks the job done, so a killed or failed job leaves nothing half-written. Files go the same way: a handler writes
them into its job's scratch folder (:attr:`JobContext.scratch`, under ``<data>/tmp``) and moves them into place in
that transaction; the folder is removed when the job ends however it ends, and a starting worker removes the
folders of jobs no longer running where they were made (a killed worker's). What a handler gets and may raise
(:class:`~worker.jobs.context.JobContext`, :class:`~worker.jobs.context.Deferred`, …) is defined in
:mod:`worker.jobs.context`, which imports nothing of this loop.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
import traceback
from typing import Any

from backend.store import queue
from backend.store.errors import DatabaseBusyError, LeaseLost, StoreError, is_busy_error
from backend.store.writes import discard_stale_stages
from worker.allocator import keep_freed_memory
from worker.errors import ConceptEvoError
from worker.jobs import handlers as default_handlers
from worker.jobs.context import (
    Deferred,
    Handler,
    JobContext,
    JobLost,
    StopRequested,
    scratch_dir,
    scratch_root,
)
from worker.progress import progress_bar

log = logging.getLogger(__name__)


def _env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (tests shorten leases), else ``default``."""
    value = os.environ.get(name)
    try:
        seconds = float(value) if value else default
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        log.warning("ignoring %s=%r (not a positive number of seconds); using %s", name, value, default)
        return default
    return seconds


#: A job's lease: a worker that has not renewed it for this long is presumed dead and its job is claimed again.
LEASE_S = _env_seconds("CONCEPTEVO_LEASE_S", 60.0)
#: How often the heartbeat thread renews the lease and writes the job's progress.
HEARTBEAT_S = _env_seconds("CONCEPTEVO_HEARTBEAT_S", 3.0)
#: A deferred job waits this long before it is claimed again, doubling with each deferral up to DEFER_CAP_S …
DEFER_BASE_S = _env_seconds("CONCEPTEVO_DEFER_S", queue.DEFER_BASE_S)
DEFER_CAP_S = _env_seconds("CONCEPTEVO_DEFER_CAP_S", queue.DEFER_CAP_S)
#: … and fails once deferred this often.
MAX_DEFERRALS = queue.MAX_DEFERRALS
#: A job waiting for another job that is still queued or running (a space being built) waits while that job lives;
#: this bound (about 8 hours at the 30 s cap) only ends a wait that would never end.
PATIENT_MAX_DEFERRALS = 1000


def remove_stale_scratch(store: Any) -> int:
    """Remove the scratch folders of jobs that are not running under the worker that made them (cancelled,
    finished, or taken over after their worker died); returns how many were removed."""
    root = scratch_root()
    try:
        folders = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("job")]
    except FileNotFoundError:
        return 0
    # List the folders first, then the running jobs: a folder made after its job was claimed is then always kept.
    running = queue.list_jobs(store, status="running", limit=1_000_000)
    keep = {scratch_dir(job.id, job.worker_id or "").name for job in running}
    removed = 0
    for folder in folders:
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed %d scratch folder(s) of jobs no longer running in %s", removed, root)
    return removed


def run_worker(
    store: Any,
    device: str = "cpu",
    once: bool = False,
    poll: float = 2.0,
    max_jobs: int | None = None,
    worker_id: str | None = None,
    kinds: list[str] | None = None,
    handlers: dict[str, Handler] | None = None,
    install_signals: bool = True,
    outcomes: dict[int, str] | None = None,
) -> int:
    """Claim and run jobs until stopped.

    Args:
        store: an open store.
        device: torch device for the handlers (``cpu``, ``cuda``, ``cuda:1``).
        once: exit as soon as the queue holds nothing claimable (drain mode).
        poll: seconds between polls of an empty queue.
        max_jobs: exit after this many jobs.
        worker_id: name written in the job rows (default host:pid).
        kinds: only claim these job kinds.
        handlers: kind → handler (default: :func:`worker.jobs.handlers`).
        install_signals: turn SIGTERM/SIGINT into a clean release of the current job.
        outcomes: filled with job id → its last outcome here (``done``, ``failed``, ``deferred``, ``released``,
            ``lost``), so a caller can tell how many jobs failed (a job retried and then done counts as done).

    Returns:
        The number of jobs this worker finished successfully.
    """
    if handlers is None:
        handlers = default_handlers()
    keep_freed_memory()  # every job here allocates the same big buffers again: see worker.allocator
    worker_id = worker_id or queue.default_worker_id()
    stop = threading.Event()
    if install_signals and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    cache: dict[str, Any] = {}
    done = handled = 0
    log.info("worker %s started on %s", worker_id, device)
    try:
        remove_stale_scratch(store)
        discard_stale_stages(store)  # rows a killed worker staged (never visible; see store.writes)
    except (OSError, StoreError):
        log.warning("could not clean up old scratch folders", exc_info=True)
    while not stop.is_set() and (max_jobs is None or handled < max_jobs):
        job = queue.claim(store, worker_id, kinds=kinds or list(handlers), lease_s=LEASE_S)
        if job is None:
            if once:
                break
            stop.wait(poll)
            continue
        handled += 1
        outcome = _run_one(store, job, worker_id, device, cache, stop, handlers)
        done += outcome == "done"
        if outcomes is not None:
            outcomes[job.id] = outcome
    log.info("worker %s stopping after %d job(s) (%d done)", worker_id, handled, done)
    return done


def _run_one(store, job, worker_id, device, cache, stop, handlers) -> str:
    ctx = JobContext(store=store, job=job, worker_id=worker_id, device=device, cache=cache, stop=stop)
    beat_stop = threading.Event()
    beat = threading.Thread(target=_heartbeat_loop, args=(ctx, beat_stop), daemon=True)
    # a percentage bar (no rate of an abstract count); plain lines every few seconds when not on a terminal
    ctx._bar = progress_bar(1000, f"job {job.id} {job.kind}", unit=None)
    beat.start()
    started = time.perf_counter()
    try:
        handler = handlers[job.kind]
        handler(ctx)  # handlers finish the job themselves, in the transaction that writes their results
        log.info("job %s %s done in %.1f s", job.id, job.kind, time.perf_counter() - started)
        return "done"
    except StopRequested:
        queue.release(store, job.id, worker_id)
        log.info("job %s released on stop request", job.id)
        return "released"
    except Deferred as exc:
        # Not ready: the job waits (not claimable until its not-before time) while this worker goes on.
        after = queue.defer(
            store,
            job.id,
            worker_id,
            str(exc),
            gave_up=exc.gave_up,
            base_s=DEFER_BASE_S,
            cap_s=DEFER_CAP_S,
            max_deferrals=PATIENT_MAX_DEFERRALS if exc.patient else MAX_DEFERRALS,
        )
        log.info("job %s deferred: %s", job.id, after.message if after is not None else exc)
        return "failed" if after is not None and after.status == "failed" else "deferred"
    except (JobLost, LeaseLost):
        log.warning("job %s was cancelled or taken over; dropping its work", job.id)
        return "lost"
    except DatabaseBusyError as exc:  # transient: another process held the lock too long
        _fail(store, job, worker_id, str(exc), retry=True)
        return "failed"
    except (ConceptEvoError, StoreError) as exc:
        # The user's input is wrong: retrying cannot help.
        _fail(store, job, worker_id, str(exc), retry=False)
        return "failed"
    except MemoryError:
        _fail(store, job, worker_id, f"out of memory while running {job.kind}", retry=False)
        return "failed"
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            return _unexpected(store, job, worker_id, exc)
        # CUDA's OutOfMemoryError is a RuntimeError; retrying the same job on the same card cannot help.
        _fail(store, job, worker_id, f"out of memory on {device} while running {job.kind}", retry=False)
        return "failed"
    except Exception as exc:  # an unexpected failure: keep the worker alive, record it readably
        return _unexpected(store, job, worker_id, exc)
    finally:
        beat_stop.set()
        beat.join(timeout=5)
        ctx._bar.close()
        # Whatever happened, the job's scratch files are either in place (committed) or garbage.
        shutil.rmtree(scratch_dir(job.id, worker_id), ignore_errors=True)


def _unexpected(store, job, worker_id: str, exc: BaseException) -> str:
    """Record an unexpected failure readably (first line of the message) and let the job be retried."""
    log.error("job %s failed:\n%s", job.id, traceback.format_exc())
    message = str(exc).splitlines()[0] if str(exc) else ""
    _fail(store, job, worker_id, f"{type(exc).__name__}: {message}"[:500], retry=True)
    return "failed"


def _fail(store, job, worker_id: str, error: str, retry: bool) -> None:
    log.error("job %s %s failed: %s", job.id, job.kind, error)
    try:
        queue.fail(store, job.id, worker_id, error, retry=retry)
    except LeaseLost:
        log.warning("job %s: lease lost before its failure could be recorded", job.id)


def _heartbeat_loop(ctx: JobContext, stop: threading.Event) -> None:
    failing = False  # log the first failure of a run of them, and the recovery, nothing in between
    while not stop.wait(HEARTBEAT_S):
        fraction, message = ctx.snapshot()
        try:
            alive = queue.heartbeat(
                ctx.store, ctx.job.id, ctx.worker_id, progress=fraction, message=message, lease_s=LEASE_S
            )
        except Exception as exc:  # a busy database must not kill the job; the next beat retries
            if not failing:
                what = "database busy" if is_busy_error(exc) else f"{type(exc).__name__}: {exc}"
                first_line = str(what).splitlines()[0]
                log.warning("heartbeat for job %s failed (%s); retrying quietly", ctx.job.id, first_line)
            failing = True
            continue
        if failing:
            log.info("heartbeat for job %s works again", ctx.job.id)
            failing = False
        if not alive:
            ctx._lost = True
            return
