"""The worker loop: claim a job, run its handler, report progress, finish or fail — and go on.

One process, one job at a time. A background thread renews the job's lease every few seconds with
the latest progress, so a long single step (a UMAP fit) never loses the lease while the process is
alive, and a SIGKILLed worker's lease expires so another worker claims the job again. SIGTERM/SIGINT
ask the current job to stop at its next progress report: the job is released back to the queue
(without counting an attempt) and the worker exits.

Handlers write their results through :func:`backend.store.finishing`, in one transaction that also
marks the job done, so a killed or failed job leaves nothing half-written.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from backend.store import queue
from backend.store.errors import LeaseLost, StoreError
from worker.errors import ConceptEvoError

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


class StopRequested(Exception):
    """Raised inside a handler at a progress report once the worker was asked to stop."""


class JobLost(Exception):
    """Raised inside a handler when its job was cancelled or claimed by another worker."""


class Deferred(Exception):
    """A handler's input is not ready yet (e.g. the space is still being built): requeue, try later."""


@dataclass
class JobContext:
    """What a handler gets: the store, its job, a device, a progress reporter and a per-worker cache."""

    store: Any
    job: Any
    worker_id: str
    device: str
    cache: dict[str, Any]
    stop: threading.Event
    _progress: float = 0.0
    _message: str = ""
    _lost: bool = False
    _bar: tqdm | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0–1) for the job row and the terminal bar; raise if the job must stop."""
        with self._lock:
            self._progress = max(0.0, min(1.0, float(fraction)))
            self._message = message or self._message
        if self._bar is not None:
            self._bar.n = round(self._progress * 1000)
            self._bar.set_postfix_str(self._message[:60], refresh=False)
            self._bar.refresh()
        self.check()

    def stage(self, start: float, end: float) -> Callable[[float, str], None]:
        """A progress callback for one stage that maps its own 0–1 onto ``[start, end]`` of the job."""
        return lambda fraction, message="": self.progress(start + (end - start) * fraction, message)

    def check(self) -> None:
        if self._lost:
            raise JobLost(f"job {self.job.id} was cancelled or taken over")
        if self.stop.is_set():
            raise StopRequested()

    def snapshot(self) -> tuple[float, str]:
        with self._lock:
            return self._progress, self._message


Handler = Callable[[JobContext], dict[str, Any] | None]


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

    Returns:
        The number of jobs this worker finished successfully.
    """
    if handlers is None:
        from worker.jobs import handlers as default_handlers

        handlers = default_handlers()
    worker_id = worker_id or queue.default_worker_id()
    stop = threading.Event()
    if install_signals and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    cache: dict[str, Any] = {}
    done = handled = 0
    log.info("worker %s started on %s", worker_id, device)
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
        if outcome == "deferred":
            stop.wait(poll)
    log.info("worker %s stopping after %d job(s) (%d done)", worker_id, handled, done)
    return done


def _run_one(store, job, worker_id, device, cache, stop, handlers) -> str:
    ctx = JobContext(store=store, job=job, worker_id=worker_id, device=device, cache=cache, stop=stop)
    beat_stop = threading.Event()
    beat = threading.Thread(target=_heartbeat_loop, args=(ctx, beat_stop), daemon=True)
    ctx._bar = tqdm(total=1000, desc=f"job {job.id} {job.kind}", unit="‰", leave=True, dynamic_ncols=True)
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
        queue.release(store, job.id, worker_id)
        log.info("job %s deferred: %s", job.id, exc)
        return "deferred"
    except (JobLost, LeaseLost):
        log.warning("job %s was cancelled or taken over; dropping its work", job.id)
        return "lost"
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
    while not stop.wait(HEARTBEAT_S):
        fraction, message = ctx.snapshot()
        try:
            alive = queue.heartbeat(
                ctx.store, ctx.job.id, ctx.worker_id, progress=fraction, message=message, lease_s=LEASE_S
            )
        except Exception:  # a busy database must not kill the job; the next beat retries
            log.warning("heartbeat for job %s failed", ctx.job.id, exc_info=True)
            continue
        if not alive:
            ctx._lost = True
            return
