"""The diversity alarm on the demo world (issue 16): replay the ``high-lr`` run through the tracker epoch by epoch.

Trains the demo world's ``healthy`` and ``high-lr`` runs (``--size small``: 288 training images, a few minutes on a
CPU; ``default``: the full demo world), builds the demo space on ``healthy``'s last epoch with every ``healthy``
epoch placed (one CPU worker process), then feeds ``high-lr``'s checkpoints one by one to a
:class:`worker.tracker.Tracker` with ``reference="healthy"``, as its training loop would have, waiting after each
epoch until the worker placed it. Reports the epoch the alarm was raised at, the epoch its condition started, the
epoch ``high-lr``'s accuracy fell behind ``healthy``'s, and the lead in epochs.

Usage: ``.venv/bin/python bench/alarm_replay.py [--size small|default] [--root DIR]``. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from backend.store import Run, Snapshot, SpaceSnapshot, find_run, find_space, list_snapshots, open_store  # noqa: E402
from backend.store.alerts import list_alerts  # noqa: E402
from backend.store.jobspec import BuildSpaceParams, enqueue_job  # noqa: E402
from tests.datadir import wait_for  # noqa: E402
from worker.demo.generate import generate_demo_data  # noqa: E402
from worker.demo.runs import train_demo_runs  # noqa: E402
from worker.models.checkpoints import discover_epochs, load_model  # noqa: E402
from worker.registration import add_dataset, add_run  # noqa: E402
from worker.tracker import SNAPSHOT_METRICS, Tracker  # noqa: E402


def placed_epochs(store, run: str) -> set[int]:
    """Epochs of ``run`` placed in any space."""
    with store.session(readonly=True) as s:
        rows = s.execute(select(Snapshot.epoch).join(SpaceSnapshot).join(Run).where(Run.name == run)).all()
    return {int(e) for (e,) in rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("small", "default"), default="small")
    parser.add_argument(
        "--root", type=Path, default=None, help="work folder (kept; reused when already trained)"
    )
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="conceptevo-alarm-replay-"))
    started = time.monotonic()
    if not (root / "dataset" / "train").is_dir():
        generate_demo_data(root / "dataset", size=args.size, seed=0, progress=False)
    train_demo_runs(root / "dataset", root / "runs", names=["healthy", "high-lr"], seed=0, progress=False)
    trained_s = time.monotonic() - started

    store = open_store(str(root / "replay.db"))
    add_dataset(store, root / "dataset" / "train", name="demo-train")
    add_run(store, "healthy", "demo-vgg", root / "runs" / "healthy", "demo-train")
    with store.session(readonly=True) as s:
        healthy = find_run(s, "healthy")
        base = max(list_snapshots(s, healthy.id), key=lambda snap: snap.epoch)
        built = find_space(s, "demo") is not None
        healthy_id, base_id = healthy.id, base.id
    if not built:
        enqueue_job(
            store, BuildSpaceParams(base_snapshot_id=base_id, name="demo", compute_runs=[healthy_id]), 50
        )
    env = {
        **os.environ,
        "CONCEPTEVO_DB": str(root / "replay.db"),
        "CONCEPTEVO_DATA": str(root),
        "TQDM_DISABLE": "1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker", "--device", "cpu", "--poll", "0.3"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    printed: list[tuple[int, str]] = []
    replay_epoch = -1
    try:
        n_healthy = len(discover_epochs(root / "runs" / "healthy"))
        wait_for(lambda: len(placed_epochs(store, "healthy")) == n_healthy, 7200, "healthy placed")
        history = {
            int(r["epoch"]): r for r in json.loads((root / "runs" / "high-lr" / "history.json").read_text())
        }
        tracker = Tracker(
            run="high-lr",
            arch="demo-vgg",
            dataset="demo-train",
            space="demo",
            out_dir=root / "replay" / "high-lr",
            reference="healthy",
            store=store,
            echo=lambda line: printed.append((replay_epoch, line)),
        )
        for epoch, path in discover_epochs(root / "runs" / "high-lr").items():
            replay_epoch = epoch
            model = load_model(None, None, path)
            tracker.epoch_end(model, epoch, **{k: history.get(epoch, {}).get(k) for k in SNAPSHOT_METRICS})
            tracker.flush()
            wait_for(
                lambda e=epoch: e in placed_epochs(store, "high-lr"), 3600, f"high-lr epoch {epoch} placed"
            )
            tracker.check_alarms()
        tracker.close()
        with store.session(readonly=True) as s:
            alerts = list_alerts(s, find_run(s, "high-lr").id)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        store.dispose()
    band = next((a for a in alerts if a.rule == "band" and a.metric == "diversity"), None)
    result = {
        "bench": "alarm_replay",
        "size": args.size,
        "alert": band is not None,
        "raised_at_epoch": next((e for e, line in printed if "diversity" in line.lower()), None),
        "start_epoch": band.start_epoch if band else None,
        "accuracy_behind_epoch": band.accuracy_epoch if band else None,
        "lead_epochs": band.lead if band else None,
        "reason": band.reason if band else None,
        "other_alerts": [f"{a.metric}/{a.rule} from epoch {a.start_epoch}" for a in alerts if a is not band],
        "train_s": round(trained_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        "root": str(root),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
