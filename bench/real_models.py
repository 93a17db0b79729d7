"""Benchmark: ``build_space`` and ``add_snapshot`` on ResNet-size torchvision models (issue 12).

For each model (torchvision ``resnet18`` and ``vgg16``, random init — timing needs no training) over a
generated ImageFolder of 64×64 images (2,000 by default): register the data set and a 2-epoch run, build a space
on epoch 2 and add epoch 1, through the real job handlers in one in-process worker on a fresh SQLite file.

Per job, per-stage seconds: ``stimuli`` (the hooked forward pass), ``embed`` (build_space only: neuron and
image embedding, UMAP fit), ``place`` (Eq 2 + UMAP transform), ``patches`` (crops and JPEG sprites),
``write`` (staging the rows, the final transaction, removing the staged copies); and ``write_lock_max_s``, the
longest any write transaction held SQLite's write lock (timed from after ``BEGIN IMMEDIATE`` returned to its commit or rollback) during that job.
Goals (issue 12): ``write_lock_max_s`` ≤ 1 s; for add_snapshot, ``other_over_stimuli`` = (place + patches +
write) / stimuli ≤ 0.5.

Usage: ``.venv/bin/python bench/real_models.py [--quick] [--models resnet18,vgg16] [--images N] [--threads N]
[--workdir DIR]``.

Everything (images, checkpoints, the database, sprites) goes into a temporary folder under ``--workdir``, by
default the repository's ``data/`` — where ``conceptevo`` keeps its data. Not the system's temporary folder: on
the development machine creating files under ``/tmp`` is 5–10× slower than elsewhere on the same disk (4,800
sprite-sized files: 1.4–3.8 s against 0.29–0.39 s, measured), which made the sprites' stage look twice as long
as it is where users keep their data.
``--quick`` uses 400 images: on this shared 2-core machine a whole VGG16 run over 2,000 images takes many minutes.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.store import dialects, open_store  # noqa: E402
from backend.store import queue as job_queue  # noqa: E402
from worker import runner  # noqa: E402
from worker.jobs import space as space_jobs  # noqa: E402
from worker.registration import add_dataset, add_run  # noqa: E402

log = logging.getLogger("bench.real_models")
N_CLASSES = 10
GOAL_LOCK_S = 1.0
GOAL_OTHER_OVER_STIMULI = 0.5


def make_images(root: Path, n_images: int, size: int = 64, seed: int = 0) -> None:
    """An ImageFolder of ``n_images`` random ``size``×``size`` PNGs in :data:`N_CLASSES` classes."""
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        folder = root / f"c{i % N_CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        # smooth-ish blobs rather than pure noise, so that maps have distinct maxima and patches mean something
        coarse = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
        image.save(folder / f"{i:05d}.png")


def save_run(arch: str, folder: Path, epochs: int = 2) -> None:
    """``epochs`` random-init checkpoints of torchvision ``arch`` (one seed per epoch)."""
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, epochs + 1):
        torch.manual_seed(epoch)
        model = getattr(torchvision.models, arch)(num_classes=N_CLASSES)
        torch.save(model.state_dict(), folder / f"epoch_{epoch:03d}.pt")


class Probe:
    """Stage timings (by wrapping the handlers' module-level calls) and write-lock hold times (engine events)."""

    def __init__(self, store: Any) -> None:
        self.stages: dict[str, float] = defaultdict(float)
        self.lock_max_s = 0.0
        self._began: dict[int, float] = {}
        dialects_option = dialects.BEGIN_OPTION

        def began(conn: Any) -> None:  # runs after the dialect's own listener has issued BEGIN IMMEDIATE
            if conn.get_execution_options().get(dialects_option, "IMMEDIATE") == "IMMEDIATE":
                self._began[id(conn)] = time.perf_counter()

        def ended(conn: Any) -> None:
            started = self._began.pop(id(conn), None)
            if started is not None:
                self.lock_max_s = max(self.lock_max_s, time.perf_counter() - started)

        from sqlalchemy import event

        event.listen(store.engine, "begin", began)
        event.listen(store.engine, "commit", ended)
        event.listen(store.engine, "rollback", ended)

    def reset(self) -> None:
        self.stages = defaultdict(float)
        self.lock_max_s = 0.0

    def wrap(self, name: str, stage: str) -> None:
        """Time every call of ``worker.jobs.space.<name>`` into ``stage``."""
        real = getattr(space_jobs, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.stages[stage] += time.perf_counter() - started

        setattr(space_jobs, name, timed)

    def wrap_finishing(self) -> None:
        real = space_jobs.finishing

        @contextmanager
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            started = time.perf_counter()
            try:
                with real(*args, **kwargs) as session:
                    yield session
            finally:
                self.stages["write"] += time.perf_counter() - started

        space_jobs.finishing = timed


def run_model(store: Any, probe: Probe, arch: str, work: Path, dataset: str, epochs: int) -> dict[str, Any]:
    """Register ``arch``'s run, build a space on epoch 3, add epochs 1 and 2; the jobs' figures.

    The first ``add_snapshot`` of a process also pays numba's JIT compilation of the UMAP transform (several
    seconds, once per worker process); ``add_snapshot`` is the second one (steady state), ``add_snapshot_first``
    the first.
    """
    save_run(arch, work / "runs" / arch, epochs=3)
    run_id = add_run(store, arch, arch, work / "runs" / arch, dataset).id
    with store.session(readonly=True) as s:
        from backend.store import list_snapshots

        snaps = {snap.epoch: snap.id for snap in list_snapshots(s, run_id)}
    out: dict[str, Any] = {}
    build = {"base_snapshot_id": snaps[3], "name": arch, "epochs": epochs}
    for label, kind, epoch in (
        ("build_space", "build_space", 3),
        ("add_snapshot_first", "add_snapshot", 1),
        ("add_snapshot", "add_snapshot", 2),
    ):
        params = build
        if kind == "add_snapshot":
            with store.session(readonly=True) as s:
                from backend.store import find_space

                params = {"space_id": find_space(s, arch).id, "snapshot_id": snaps[epoch]}
        job, _ = job_queue.enqueue(store, kind, params)
        probe.reset()
        started = time.perf_counter()
        runner.run_worker(store, once=True, poll=0.01, install_signals=False)
        total = time.perf_counter() - started
        info = job_queue.get_job(store, job.id)
        if info.status != "done":
            raise SystemExit(f"{arch} {kind} ended {info.status}: {info.error}")
        stages = dict(probe.stages)
        if kind == "build_space":
            stimuli_s = float(info.result.get("stimuli_s", 0.0))
            stages["embed"] = stages.pop("build", 0.0) - stimuli_s
            stages["stimuli"] = stimuli_s
        rounded = {key: round(value, 3) for key, value in sorted(stages.items())}
        other = sum(v for k, v in stages.items() if k in ("place", "patches", "write"))
        out[label] = {
            "total_s": round(total, 3),
            "stages_s": rounded,
            "write_lock_max_s": round(probe.lock_max_s, 3),
            "other_over_stimuli": round(other / stages["stimuli"], 3) if stages.get("stimuli") else None,
        }
        log.info("%s %s: %s", arch, label, out[label])
    out["neurons"] = int(info.result.get("neurons", 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 images instead of 2,000")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--models", default="resnet18,vgg16")
    parser.add_argument("--epochs", type=int, default=100, help="neuron-embedding epochs of build_space")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "data",
        help="folder that receives the run's temporary folder (default: the repository's data/)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("backend", "worker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    n_images = args.images or (400 if args.quick else 2000)
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-real-models-", dir=args.workdir) as tmp:
        work = Path(tmp)
        os.environ["CONCEPTEVO_DATA"] = str(work / "data")
        os.environ.pop("CONCEPTEVO_DB", None)
        started = time.perf_counter()
        make_images(work / "images", n_images)
        log.info("generated %d images in %.1f s", n_images, time.perf_counter() - started)
        store = open_store(str(work / "data" / "conceptevo.db"))
        add_dataset(store, work / "images", name="bench")
        probe = Probe(store)
        probe.wrap("snapshot_stimuli", "stimuli")
        probe.wrap("build_space", "build")
        probe.wrap("place_stimuli", "place")
        probe.wrap("write_patch_files", "patches")
        for name in ("stage_snapshot_in_space", "stage_patches", "discard_stage"):
            probe.wrap(name, "write")
        probe.wrap_finishing()
        models = {
            arch: run_model(store, probe, arch, work, "bench", args.epochs) for arch in args.models.split(",")
        }
        store.dispose()
    add = [m["add_snapshot"] for m in models.values()]
    every = [
        m[label] for m in models.values() for label in ("build_space", "add_snapshot_first", "add_snapshot")
    ]
    result = {
        "bench": "real_models",
        "images": n_images,
        "image_size": 64,
        "threads": args.threads,
        "models": models,
        "write_lock_max_s": max(job["write_lock_max_s"] for job in every),
        "add_snapshot_other_over_stimuli_max": max(job["other_over_stimuli"] for job in add),
        "goal_write_lock_s": GOAL_LOCK_S,
        "goal_other_over_stimuli": GOAL_OTHER_OVER_STIMULI,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
