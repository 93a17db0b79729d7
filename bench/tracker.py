"""Benchmark of the in-loop tracker (issue 16): its cost inside a training loop, and how soon an epoch is served.

On the demo data (``--size small`` by default: 288 training images; ``default``: 4,000) and the demo net with the
``healthy`` run's optimiser:

* ``overhead_pct`` — the time ``Tracker.epoch_end`` holds the training loop (copying the weights to the CPU; the
  checkpoint, history, registration and queueing run on its background thread) as a percentage of the mean epoch's
  training time (goal ≤ 5 %). ``wall_overhead_pct`` compares whole epochs with and without the tracker (noisy on
  a shared machine: the background thread competes for the same cores).
* ``epoch_to_visible_s`` — median seconds from ``epoch_end`` to the epoch being served as computed by the API
  (``GET /api/runs/{id}/metrics``), with one CPU worker process and the space already built.

Usage: ``.venv/bin/python bench/tracker.py [--size small|default] [--epochs 3]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from backend.api.app import create_app  # noqa: E402
from backend.api.settings import Settings  # noqa: E402
from backend.store import open_store  # noqa: E402
from tests.datadir import wait_for  # noqa: E402
from tests.fixtures.training import preloaded, train_epoch  # noqa: E402
from worker.demo.generate import generate_demo_data  # noqa: E402
from worker.models.registry import build_model  # noqa: E402
from worker.tracker import Tracker  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "default"), default="small")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per phase")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    root = Path(tempfile.mkdtemp(prefix="conceptevo-bench-tracker-"))
    generate_demo_data(root / "dataset", size=args.size, seed=0, progress=False)
    train_dir = root / "dataset" / "train"
    images, labels, n_classes = preloaded(train_dir)
    torch.manual_seed(0)
    model = build_model("demo-vgg", n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    db = root / "conceptevo.db"
    store = open_store(str(db))

    plain = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        train_epoch(model, images, labels, opt)
        plain.append(time.perf_counter() - t)

    tracker = Tracker(
        run="bench",
        arch="demo-vgg",
        dataset=str(train_dir),
        space="bench",
        out_dir=root / "run",
        space_params={"epochs": 200},
        store=store,
    )
    tracker.epoch_end(model, 0)  # registration and the space's build are first-call costs, not per epoch
    tracker.flush()
    tracked, held = [], []
    for epoch in range(1, args.epochs + 1):
        t = time.perf_counter()
        train_epoch(model, images, labels, opt)
        h = time.perf_counter()
        tracker.epoch_end(model, epoch)
        held.append(time.perf_counter() - h)
        tracked.append(time.perf_counter() - t)
    tracker.flush()

    env = {**os.environ, "CONCEPTEVO_DB": str(db), "CONCEPTEVO_DATA": str(root), "TQDM_DISABLE": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--device", "cpu", "--poll", "0.2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    visible = []
    try:
        app = create_app(store, Settings(data_dir=root, frontend_dist=root / "no-dist"))
        with TestClient(app) as client:

            def computed(epoch: int) -> bool:
                answer = client.get(f"/api/runs/{tracker.run_id}/metrics").json()
                return any(e["epoch"] == epoch and e["computed"] for e in answer.get("epochs", []))

            wait_for(
                lambda: all(computed(e) for e in range(args.epochs + 1)), 1800, "the first epochs placed", 0.5
            )
            for epoch in range(args.epochs + 1, 2 * args.epochs + 1):
                train_epoch(model, images, labels, opt)
                t = time.perf_counter()
                tracker.epoch_end(model, epoch)
                wait_for(lambda e=epoch: computed(e), 600, f"epoch {epoch} served")
                visible.append(time.perf_counter() - t)
        tracker.close()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        store.dispose()

    epoch_s = statistics.mean(plain)
    result = {
        "bench": "tracker",
        "size": args.size,
        "images": len(labels),
        "epoch_s": round(epoch_s, 3),
        "epoch_end_held_s": round(statistics.mean(held), 4),
        "overhead_pct": round(100 * statistics.mean(held) / epoch_s, 2),
        "wall_overhead_pct": round(100 * (statistics.mean(tracked) - epoch_s) / epoch_s, 2),
        "epoch_to_visible_s": round(statistics.median(visible), 2),
        "epoch_to_visible_max_s": round(max(visible), 2),
        "goal_overhead_pct": 5,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
