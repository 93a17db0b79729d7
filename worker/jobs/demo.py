"""Job handler ``demo``: make the demo world (images + three training runs), register it, queue the rest.

Params (``DemoParams`` in :mod:`backend.store.jobspec`; the API and ``conceptevo demo`` queue the same form): ``size``
(``default`` or ``small``) and ``seed``. The files land under ``<data dir>/demo``; what is already complete
there is reused.

Progress, for the page's job list: the images (with a fraction), then each run epoch by epoch with its
accuracy in the message (``training high-lr (2/3): epoch 4/10 — train top-1 0.41, val top-1 0.39``), then
the registration. Reports only update the job context in memory; the runner's heartbeat writes the latest
one to the job row every few seconds, so a fast loop cannot flood the database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.store import finishing
from backend.store.jobspec import DemoParams, JobParamsError, parse
from worker.demo.generate import DemoDataSummary, generate_demo_data
from worker.demo.plan import enqueue_demo_jobs, register_demo
from worker.demo.runs import DEMO_RUNS, train_demo_runs
from worker.demo.world import demo_root
from worker.errors import ConceptEvoError
from worker.jobs.context import JobContext
from worker.training import TrainConfig

__all__ = ["build_demo_world", "demo_root", "epoch_message", "handle_demo_world"]

#: A progress callback: ``report(fraction 0–1, message)``.
Report = Callable[[float, str], None]

#: Share of the world's progress bar taken by the images; the runs share the rest by their training work.
IMAGES_SHARE = 0.1

#: A forward pass (evaluation) costs about a third of a training step per image.
_EVAL_COST = 1 / 3


def _silent(fraction: float, message: str) -> None:
    """The report of a build without a job (the CLI's own progress bars show it)."""


def build_demo_world(
    root: Path, size: str = "default", seed: int = 0, progress: Report | None = None
) -> None:
    """Generate the demo images and train the demo runs under ``root`` (skipping what is complete).

    Args:
        root: the demo world's folder (``dataset/``, ``runs/<name>/``).
        size: ``default`` or ``small`` (see :func:`worker.demo.generate.generate_demo_data`).
        seed: seed of the images and of every run.
        progress: ``report(fraction, message)``, fraction 0–1 over the whole build; None shows tqdm bars.
    """
    report = _forward_only(progress or _silent)
    report(0.0, "generating demo images")
    summary = generate_demo_data(
        root / "dataset",
        size=size,
        seed=seed,
        progress=progress is None,
        on_image=_image_reporter(report),
    )
    weights = _run_weights(summary)
    start = IMAGES_SHARE
    for i, name in enumerate(DEMO_RUNS, start=1):
        span = (1.0 - IMAGES_SHARE) * weights[name]
        label = f"training {name} ({i}/{len(DEMO_RUNS)})"
        report(start, f"{label}: loading images")
        on_epoch = _EpochReporter(report, label, DEMO_RUNS[name].epochs, start, span)
        history = train_demo_runs(
            root / "dataset",
            root / "runs",
            names=[name],
            seed=seed,
            progress=progress is None,
            on_epoch=on_epoch,
        )[name]
        if not on_epoch.called:  # complete from an earlier build: say so with its final accuracy
            report(start + span, epoch_message(f"{name} ({i}/{len(DEMO_RUNS)}) already trained", history[-1]))
        start += span


def _forward_only(report: Report) -> Report:
    """``report`` with fractions that never go back (stage boundaries are sums of floats)."""
    furthest = 0.0

    def forward(fraction: float, message: str) -> None:
        nonlocal furthest
        furthest = max(furthest, fraction)
        report(furthest, message)

    return forward


def epoch_message(label: str, entry: dict[str, Any], epochs: int | None = None) -> str:
    """``{label}: epoch 4/10 — train top-1 0.41, val top-1 0.39`` for one history entry (no ``/10`` without
    ``epochs``); an accuracy that is unknown (a diverged run) reads ``n/a``."""

    def acc(key: str) -> str:
        value = entry.get(key)
        return "n/a" if value is None else f"{value:.2f}"

    of = f"/{epochs}" if epochs is not None else ""
    return (
        f"{label}: epoch {entry['epoch']}{of} — train top-1 {acc('train_top1')}, val top-1 {acc('val_top1')}"
    )


class _EpochReporter:
    """``on_epoch`` for one run: maps its epochs onto ``[start, start + span]`` of the build's progress."""

    def __init__(self, report: Report, label: str, epochs: int, start: float, span: float) -> None:
        self.report, self.label, self.epochs, self.start, self.span = report, label, epochs, start, span
        self.called = False

    def __call__(self, run: str, entry: dict[str, Any]) -> None:
        self.called = True
        fraction = self.start + self.span * entry["epoch"] / max(1, self.epochs)
        self.report(fraction, epoch_message(self.label, entry, self.epochs))


def _image_reporter(report: Report) -> Callable[[int, int], None]:
    """``on_image(done, total)`` reporting once per whole percent (5,000 calls would only redraw the bar)."""

    def on_image(done: int, total: int) -> None:
        if done == total or done * 100 // total != (done - 1) * 100 // total:
            report(IMAGES_SHARE * done / total, f"generating demo images ({done:,}/{total:,})")

    return on_image


def _run_weights(summary: DemoDataSummary) -> dict[str, float]:
    """Each demo run's share of the training work (epochs × images trained and evaluated), summing to 1."""
    work = {
        name: _training_work(config, summary.n_train, summary.n_val) for name, config in DEMO_RUNS.items()
    }
    total = sum(work.values()) or 1.0
    return {name: w / total for name, w in work.items()}


def _training_work(config: TrainConfig, n_train: int, n_val: int) -> float:
    trained = min(config.train_subset or n_train, n_train)
    evaluated = min(config.eval_train_images, trained) + n_val
    return config.epochs * (trained + _EVAL_COST * evaluated)


def _params(params: dict[str, Any]) -> tuple[str, int]:
    """``(size, seed)`` of a demo job, read through its spec (``DemoParams``; the queue accepts any JSON)."""
    try:
        spec = parse("demo", params)
    except JobParamsError as exc:
        raise ConceptEvoError(str(exc)) from None
    assert isinstance(spec, DemoParams)
    return spec.size, spec.seed


def handle_demo_world(ctx: JobContext) -> None:
    """Build the world (0–95 %), register it, finish the job, then queue the space and importance jobs."""
    size, seed = _params(ctx.params)
    root = demo_root()
    build_demo_world(root, size, seed, ctx.stage(0.0, 0.95))
    ctx.progress(0.96, "registering the demo world")
    summaries = register_demo(ctx.store, root)
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"registered": summaries}):
        pass
    # Queued after this job is done, so that a concurrent `conceptevo demo` sees a consistent state.
    enqueue_demo_jobs(ctx.store, root)
