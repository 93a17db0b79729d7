"""What a job handler gets and may raise: :class:`JobContext`, :class:`Deferred`, and the stop signals.

These types live here, not in :mod:`worker.runner`, so that handlers (``worker/jobs/*``) import nothing of the
loop that calls them: the runner imports the handlers and this module, and nothing here imports the runner.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from backend.store import data_dir
from worker.progress import LineProgress


class StopRequested(Exception):
    """Raised inside a handler at a progress report once the worker was asked to stop."""


class JobLost(Exception):
    """Raised inside a handler when its job was cancelled or claimed by another worker."""


class Deferred(Exception):
    """A handler's input is not ready yet (e.g. the space is still being built): requeue, try later.

    The job waits with backoff (:func:`backend.store.queue.defer`) while the worker runs other jobs; deferred
    more than ``worker.runner.MAX_DEFERRALS`` times it fails with ``gave_up`` — why the input presumably never
    comes. ``patient``: the input is being made by another job that is still queued or running (the handler
    checked), so the wait is bounded by that job, not by ``MAX_DEFERRALS`` (only by
    ``worker.runner.PATIENT_MAX_DEFERRALS``).
    """

    def __init__(self, reason: str, gave_up: str | None = None, patient: bool = False) -> None:
        super().__init__(reason)
        self.gave_up = gave_up
        self.patient = patient


def scratch_root() -> Path:
    """Where jobs' scratch folders live: ``<data>/tmp`` (on the data directory's file system, so that moving a
    finished file into place is a rename)."""
    return Path(data_dir()) / "tmp"


def scratch_dir(job_id: int, worker_id: str) -> Path:
    """The scratch folder of job ``job_id`` as run by ``worker_id`` (one per claim: a job taken over from a dead
    worker gets a fresh one)."""
    tag = hashlib.sha256(worker_id.encode()).hexdigest()[:12]
    return scratch_root() / f"job{int(job_id)}-{tag}"


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
    _bar: tqdm | LineProgress | None = None
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

    @property
    def scratch(self) -> Path:
        """This job's scratch folder (created on first use, removed when the job ends): write files here, then
        move them into place inside the transaction that writes the rows referencing them."""
        path = scratch_dir(self.job.id, self.worker_id)
        path.mkdir(parents=True, exist_ok=True)
        return path


Handler = Callable[[JobContext], dict[str, Any] | None]
