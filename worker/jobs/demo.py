"""Job handler ``demo``: make the demo world (images + three training runs), register it, queue the rest.

Params: ``size`` (``default`` or ``small``) and ``seed``. The files land under ``<data dir>/demo``; a
world already complete there is reused.
"""

from __future__ import annotations

from pathlib import Path

from backend.store import data_dir, finishing
from worker.demo.generate import generate_demo_data
from worker.demo.plan import enqueue_demo_jobs, register_demo
from worker.demo.runs import DEMO_RUNS, train_demo_runs
from worker.errors import ConceptEvoError
from worker.runner import JobContext


def demo_root() -> Path:
    return Path(data_dir()) / "demo"


def build_demo_world(root: Path, size: str = "default", seed: int = 0, progress=None) -> None:
    """Generate the demo images and train the demo runs under ``root`` (skipping what is complete)."""
    report = progress or (lambda fraction, message: None)
    report(0.0, "generating demo images")
    generate_demo_data(root / "dataset", size=size, seed=seed, progress=progress is None)
    for i, name in enumerate(DEMO_RUNS):
        report(0.1 + 0.9 * i / len(DEMO_RUNS), f"training demo run {name}")
        train_demo_runs(root / "dataset", root / "runs", names=[name], seed=seed, progress=progress is None)


def handle_demo_world(ctx: JobContext) -> None:
    size = ctx.params.get("size", "default")
    if size not in ("default", "small"):
        raise ConceptEvoError(f"demo job: size must be 'default' or 'small', got {size!r}")
    root = demo_root()
    build_demo_world(root, size, int(ctx.params.get("seed", 0)), ctx.stage(0.0, 0.95))
    ctx.progress(0.96, "registering the demo world")
    summaries = register_demo(ctx.store, root)
    with finishing(ctx.store, ctx.job.id, ctx.worker_id, result={"registered": summaries}):
        pass
    # Queued after this job is done, so that a concurrent `conceptevo demo` sees a consistent state.
    enqueue_demo_jobs(ctx.store, root)
