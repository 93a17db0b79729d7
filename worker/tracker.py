"""Watch a run while it trains, from inside any PyTorch training loop (issue 16)::

    from worker.tracker import Tracker
    tracker = Tracker(run="resnet18-lr0.1", arch="resnet18", dataset="~/data/flowers/train", space="flowers")
    for epoch in range(epochs):
        ...train...
        tracker.epoch_end(model, epoch, train_top1=..., val_top1=..., train_loss=...)
    tracker.close()

Each ``epoch_end`` copies the weights to the CPU (the only work done in the loop), then a background thread writes
the checkpoint in the standard layout (``epoch_NNN.pt`` written to a hidden temporary file and renamed into place,
``history.json`` appended likewise), registers the snapshot and queues its placement in the space(s). A snapshot is
registered only after its file is complete, so a training process killed mid-save leaves no half checkpoint
registered. The first call registers the run (dataset, architecture and layers are checked at once, with the
CLI's one-line errors); when a space does not exist yet, the first epoch (or ``base_epoch``) builds it.

While it runs the tracker beats (the page's "live" badge), places epochs the worker finished building the space
for, and evaluates the diversity alarm (:mod:`worker.engine.alarm`): a new alert is stored and printed to the
training log. :class:`RunFeed` is the part shared with the folder watcher (:mod:`worker.watch`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select
from torch import nn

from backend.store import (
    Dataset,
    Run,
    Store,
    find_run,
    find_space,
    list_jobs,
    open_store,
    run_metrics,
    upsert_snapshot,
)
from backend.store.alerts import HEARTBEAT_S, beat, record_alert
from backend.store.errors import NotFoundError
from backend.store.jobspec import PRIORITY, BuildSpaceParams, JobParamsError, enqueue_job, parse
from worker.engine.alarm import DROP_WINDOW, MAX_DROP, Alarm, alarms
from worker.errors import ConceptEvoError
from worker.files import write_text_atomically
from worker.jobs.queueing import queue_snapshots
from worker.models.checkpoints import check_fits
from worker.models.registry import build_model
from worker.registration import add_dataset, add_live_run
from worker.training import checkpoint_path

log = logging.getLogger(__name__)

#: Metrics ``epoch_end`` stores on the snapshot (the rest of its keyword arguments go to history.json only).
SNAPSHOT_METRICS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")


def _default_echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class RunFeed:
    """Feeds one run into the store as it trains: registers the run once, then each epoch's snapshot, queues its
    placement (building the space first when it does not exist), beats, and raises the diversity alarm.

    Args:
        run: run name.
        arch: torchvision name or ``package.module:factory``.
        dataset: a registered dataset's name, or an ImageFolder path (registered on first use).
        space: space name, or several.
        run_dir: the folder holding the run's checkpoints.
        layers: dotted module names to analyse (default: every conv, its BN where one follows).
        base_epoch: the epoch that builds a space that does not exist yet (default: the first one fed).
        reference: a run to compare with (the alarm's band); None uses only the drop rule.
        max_drop, drop_window: the drop rule (nats of diversity lost within that many computed epochs).
        source: ``tracker`` or ``watch`` (stored with the heartbeat).
        space_params: hyper-parameters of a space this feed builds (``build_space`` job fields: ``k``, ``dim``,
            ``epochs``, …; default: the job's defaults).
        model_kwargs: the architecture factory's arguments besides ``num_classes`` (stored with the run).
        store: the store (default: :func:`backend.store.open_store`).
        notes: free text stored with the run.
        echo: where alert lines go (default: stderr, i.e. the training log).
    """

    def __init__(
        self,
        run: str,
        arch: str,
        dataset: str | Path,
        space: str | Sequence[str],
        run_dir: str | Path,
        layers: list[str] | None = None,
        base_epoch: int | None = None,
        reference: str | None = None,
        max_drop: float = MAX_DROP,
        drop_window: int = DROP_WINDOW,
        source: str = "tracker",
        space_params: dict[str, Any] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        store: Store | None = None,
        notes: str = "",
        echo: Callable[[str], None] = _default_echo,
    ) -> None:
        self.run, self.arch, self.layers, self.notes = run, arch, layers, notes
        self.model_kwargs = dict(model_kwargs or {})
        self.dataset = dataset
        self.spaces = [space] if isinstance(space, str) else list(space)
        if not self.spaces:
            raise ConceptEvoError("name at least one space to place the run's epochs in")
        self.run_dir = Path(run_dir).expanduser().resolve()
        self.base_epoch, self.reference = base_epoch, reference
        self.max_drop, self.drop_window = max_drop, drop_window
        self.source, self.echo = source, echo
        self.space_params = dict(space_params or {})
        try:  # checked now, with placeholders for what the first epoch decides
            parse("build_space", {**self.space_params, "base_snapshot_id": 1, "name": self.spaces[0]})
        except JobParamsError as exc:
            raise ConceptEvoError(f"space_params: {exc}") from None
        self.store = store or open_store()
        self.run_id: int | None = None
        self.num_classes = 0
        self.reference_id: int | None = None
        self._lock = threading.Lock()
        self._seen_alerts: set[tuple[int, str, str, int]] = set()
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    # -- registration ------------------------------------------------------------------------------------------
    def register(self) -> int:
        """Register the dataset (when a path), the run and its layers, and check the spaces and the reference.

        Returns:
            The run id.

        Raises:
            ConceptEvoError: unknown dataset / architecture / layer / reference run, or a space on other images.
        """
        if self.run_id is not None:
            return self.run_id
        dataset_name = self._dataset_name()
        self.run_id = add_live_run(
            self.store,
            self.run,
            self.arch,
            self.run_dir,
            dataset_name,
            self.layers,
            self.notes,
            self.model_kwargs,
        ).id
        with self.store.session(readonly=True) as session:
            row = session.get(Run, self.run_id)
            self.num_classes = row.num_classes
            for name in self.spaces:
                space = find_space(session, name)
                if space is not None and space.dataset_id != row.dataset_id:
                    raise ConceptEvoError(
                        f"space {name!r} is built on dataset {space.dataset_id}, run {self.run!r} uses dataset "
                        f"{row.dataset_id}: name a space on the run's images, or a new space name"
                    )
            if self.reference is not None:
                try:
                    self.reference_id = find_run(session, self.reference).id
                except NotFoundError as exc:
                    raise ConceptEvoError(f"reference run: {exc}") from None
        self.start_beating()
        return self.run_id

    def _dataset_name(self) -> str:
        """The registered name of ``dataset``: as given, or the dataset registered at that path (registering it)."""
        text = str(self.dataset)
        with self.store.session(readonly=True) as session:
            names = dict(session.execute(select(Dataset.name, Dataset.root)).all())
        if text in names:
            return text
        root = Path(text).expanduser()
        if not root.is_dir():
            known = ", ".join(sorted(names)) or "none"
            raise ConceptEvoError(
                f"dataset {text!r} is neither a registered dataset ({known}) nor an ImageFolder directory"
            )
        resolved = str(root.resolve())
        for name, stored in names.items():
            if stored == resolved:
                return name
        dataset_id = add_dataset(self.store, resolved).id
        with self.store.session(readonly=True) as session:
            return session.get(Dataset, dataset_id).name

    # -- epochs ------------------------------------------------------------------------------------------------
    def add_epoch(self, epoch: int, path: Path, metrics: dict[str, float | None]) -> int:
        """Register epoch ``epoch`` (its complete checkpoint at ``path``) and queue its placement.

        Args:
            epoch: epoch number.
            path: the checkpoint file, already complete.
            metrics: any of :data:`SNAPSHOT_METRICS` (None: unknown).

        Returns:
            The snapshot id.
        """
        run_id = self.register()
        known = {k: (None if v is None else float(v)) for k, v in metrics.items() if k in SNAPSHOT_METRICS}
        with self._lock:
            with self.store.session() as session:
                snapshot_id = upsert_snapshot(session, run_id, int(epoch), str(path), **known).id
            for name in self.spaces:
                self._place(name, int(epoch), snapshot_id)
        return snapshot_id

    def _place(self, space_name: str, epoch: int, snapshot_id: int) -> None:
        """Queue the run's unplaced epochs in the space, or the build of the space when it is missing."""
        with self.store.session() as session:
            space = find_space(session, space_name)
            if space is not None:
                queue_snapshots(session, space.id, [self.run_id])
                return
        if self._building(space_name):
            return  # its build places every epoch registered by then; later ones are caught up on
        if self.base_epoch is not None and epoch != self.base_epoch:
            return
        spec = BuildSpaceParams(
            **self.space_params, base_snapshot_id=snapshot_id, name=space_name, compute_runs=[self.run_id]
        )
        job, created = enqueue_job(self.store, spec, priority=PRIORITY["build_space"])
        if created:
            log.info(
                "space %r does not exist: job %d builds it on %s@%d", space_name, job.id, self.run, epoch
            )

    def _building(self, space_name: str) -> bool:
        return any(
            job.kind == "build_space" and job.params.get("name") == space_name
            for status in ("queued", "running")
            for job in list_jobs(self.store, status=status, limit=1000)
        )

    def catch_up(self) -> None:
        """Queue placements missed while a space was being built (cheap when there are none)."""
        if self.run_id is None:
            return
        with self._lock, self.store.session() as session:
            for name in self.spaces:
                space = find_space(session, name)
                if space is not None:
                    queue_snapshots(session, space.id, [self.run_id])

    # -- health ------------------------------------------------------------------------------------------------
    def check_alarms(self) -> list[Alarm]:
        """Evaluate the alarm rules on what is placed so far; store the alerts, print the new ones.

        Returns:
            The alarms printed now (an alarm is printed once per start epoch).
        """
        if self.run_id is None:
            return []
        raised = []
        with self.store.session() as session:
            for name in self.spaces:
                space = find_space(session, name)
                if space is None:
                    continue
                mine = [vars(m) for m in run_metrics(session, self.run_id, space.id)]
                ref = None
                if self.reference_id is not None:
                    ref = [vars(m) for m in run_metrics(session, self.reference_id, space.id)]
                for alarm in alarms(
                    mine, ref, self.reference or "reference", self.max_drop, self.drop_window
                ):
                    key = (space.id, alarm.metric, alarm.rule, alarm.start_epoch)
                    record_alert(
                        session,
                        self.run_id,
                        space.id,
                        alarm.metric,
                        alarm.rule,
                        alarm.start_epoch,
                        alarm.reason,
                        self.reference_id if alarm.rule == "band" else None,
                        alarm.accuracy_epoch,
                    )
                    if key not in self._seen_alerts:
                        self._seen_alerts.add(key)
                        raised.append((space.name, alarm))
        for space_name, alarm in raised:
            self.echo(f"ConceptEvo ALERT run {self.run!r} in space {space_name!r}: {alarm.reason}")
        return [alarm for _, alarm in raised]

    # -- liveness ----------------------------------------------------------------------------------------------
    def start_beating(self) -> None:
        """Beat now and every :data:`HEARTBEAT_S` on a daemon thread (also catching up and checking alarms)."""
        self._beat()
        if self._beater is None:
            self._beater = threading.Thread(
                target=self._beat_loop, name=f"conceptevo-beat-{self.run}", daemon=True
            )
            self._beater.start()

    def _beat(self, ended: bool = False) -> None:
        if self.run_id is not None:
            with self.store.session() as session:
                beat(session, self.run_id, self.source, ended=ended)

    def _beat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
                self.catch_up()
                self.check_alarms()
            except Exception:  # a busy database must not kill the beat; the next tick retries
                log.warning("run %r: heartbeat failed", self.run, exc_info=True)

    def stop(self) -> None:
        """Stop beating and mark the run as no longer live (its epochs stay queued for the worker)."""
        self._stop.set()
        if self._beater is not None:
            self._beater.join(timeout=10)
        self._beat(ended=True)


class Tracker:
    """Register, checkpoint and place each epoch of a training loop (see the module docstring).

    Args:
        run: run name (unique; calling it again with the same arch and dataset continues the run).
        arch: torchvision name or ``package.module:factory`` (the model given to :meth:`epoch_end` must fit it).
        dataset: a registered dataset's name, or an ImageFolder path (registered on first use).
        space: space name(s) to place the epochs in.
        out_dir: where to write the checkpoints (default: ``<data dir>/runs/<run>``).
        layers: dotted module names to analyse (default: every conv, its BN where one follows).
        base_epoch: the epoch that builds a missing space (default: the first one).
        reference: a reference run for the alarm's band (e.g. ``"healthy"``).
        model_kwargs: extra factory arguments of ``arch``, stored in each checkpoint.
        space_params: hyper-parameters of a space the tracker builds (``build_space`` job fields).
        max_drop: the alarm's drop rule (nats of diversity lost within a few computed epochs).
        store: the store (default: :func:`backend.store.open_store`).
        echo: where alert lines go (default: stderr).
    """

    def __init__(
        self,
        run: str,
        arch: str,
        dataset: str | Path,
        space: str | Sequence[str],
        out_dir: str | Path | None = None,
        layers: list[str] | None = None,
        base_epoch: int | None = None,
        reference: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        space_params: dict[str, Any] | None = None,
        max_drop: float = MAX_DROP,
        store: Store | None = None,
        echo: Callable[[str], None] = _default_echo,
    ) -> None:
        if out_dir is None:
            from backend.store.config import data_dir

            out_dir = Path(data_dir()) / "runs" / run
        self.out_dir = Path(out_dir).expanduser().resolve()
        self.feed = RunFeed(
            run,
            arch,
            dataset,
            space,
            self.out_dir,
            layers=layers,
            base_epoch=base_epoch,
            reference=reference,
            max_drop=max_drop,
            space_params=space_params,
            model_kwargs=model_kwargs,
            store=store,
            echo=echo,
        )
        self.model_kwargs = self.feed.model_kwargs
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conceptevo-save")
        self._pending: list[Future] = []
        self._checked = False
        self._closed = False

    @property
    def run_id(self) -> int | None:
        """The run's id once registered (after the first :meth:`epoch_end`)."""
        return self.feed.run_id

    def epoch_end(self, model: nn.Module, epoch: int, **metrics: float | None) -> None:
        """Hand over epoch ``epoch``: its weights are copied now, written and registered in the background.

        Args:
            model: the model being trained (its ``state_dict`` is copied to the CPU before returning).
            epoch: epoch number (0 may be the initialisation).
            **metrics: ``train_top1=``, ``val_top1=``, ``train_loss=`` … (top-1 as a fraction); every value goes to
                history.json, the :data:`SNAPSHOT_METRICS` also to the snapshot.

        Raises:
            ConceptEvoError: at the first call, a bad dataset / architecture / layer / reference, or a model that
                does not fit ``arch``; at later calls, a failure of an earlier background save.
        """
        if self._closed:
            raise ConceptEvoError(f"tracker of run {self.feed.run!r} is closed")
        self._raise_failed()
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if not self._checked:
            self.feed.register()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fresh = build_model(self.feed.arch, self.feed.num_classes, **self.model_kwargs)
            check_fits(fresh, state, checkpoint_path(self.out_dir, epoch), self.feed.arch)
            self._checked = True
        entry = {"epoch": int(epoch), **{k: (None if v is None else float(v)) for k, v in metrics.items()}}
        self._pending.append(self._writer.submit(self._save, int(epoch), state, entry))

    def _save(self, epoch: int, state: dict[str, torch.Tensor], entry: dict[str, Any]) -> None:
        final = checkpoint_path(self.out_dir, epoch)
        temp = final.with_name(f".{final.name}.tmp")
        meta = {
            "arch": self.feed.arch,
            "num_classes": self.feed.num_classes,
            "model_kwargs": self.model_kwargs,
        }
        torch.save({"state_dict": state, "epoch": epoch, **meta}, temp)
        os.replace(temp, final)  # complete on disk before it is registered
        self._append_history(entry)
        self.feed.add_epoch(epoch, final, entry)
        self.feed.check_alarms()

    def _append_history(self, entry: dict[str, Any]) -> None:
        path = self.out_dir / "history.json"
        rows = json.loads(path.read_text()) if path.exists() else []
        rows = [row for row in rows if int(row.get("epoch", -1)) != entry["epoch"]] + [entry]
        rows.sort(key=lambda row: int(row["epoch"]))
        write_text_atomically(path, json.dumps(rows, indent=2, allow_nan=False))

    def _raise_failed(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            error = future.exception()
            if error is not None:
                raise ConceptEvoError(f"run {self.feed.run!r}: saving an epoch failed: {error}") from error

    def flush(self) -> None:
        """Wait until every handed-over epoch is written, registered and queued (re-raising a failure)."""
        for future in list(self._pending):
            future.result()
        self._raise_failed()

    def check_alarms(self) -> list[Alarm]:
        """Evaluate the alarm now on what the worker has placed (see :meth:`RunFeed.check_alarms`)."""
        return self.feed.check_alarms()

    def close(self) -> None:
        """Finish the pending saves, check the alarm once more and mark the run as no longer live."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._writer.shutdown(wait=True)
            if self.feed.run_id is not None:
                self.feed.check_alarms()
                self.feed.stop()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
