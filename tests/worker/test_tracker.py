"""Watching runs while they train (issue 16): the in-loop tracker beside a real worker process, a training process
killed mid-save, and ``conceptevo watch`` on a folder another process fills (partial file, watcher restart)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
import torch
from sqlalchemy import select

from backend.store import Run, Snapshot, SpaceSnapshot, list_jobs
from backend.store.alerts import live_runs
from tests.datadir import REPO, make_data_dir, stop, wait_exit, wait_for
from tests.fixtures.training import preloaded, train_epoch
from worker.errors import ConceptEvoError
from worker.models.registry import build_model
from worker.tracker import Tracker

SPACE_PARAMS = {"epochs": 40}  # a quick embedding: the test is about the feed, not the space's quality


def _epochs_of(store, run: str) -> dict[int, str]:
    with store.session(readonly=True) as s:
        rows = s.execute(
            select(Snapshot.epoch, Snapshot.checkpoint_path).join(Run).where(Run.name == run)
        ).all()
    return {int(e): p for e, p in rows}


def test_tracker_in_a_training_loop_with_a_worker_places_every_epoch_once(tiny_demo_world, tmp_path) -> None:
    data = make_data_dir(tmp_path / "data", tiny_demo_world)
    worker = data.worker("--poll", "0.3")
    store = data.store()
    try:
        train_dir = tiny_demo_world / "dataset" / "train"
        images, labels, n_classes = preloaded(train_dir)
        torch.manual_seed(0)
        model = build_model("demo-vgg", n_classes)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        lines: list[str] = []
        tracker = Tracker(
            run="live",
            arch="demo-vgg",
            dataset=str(train_dir),
            space="watched",
            out_dir=tmp_path / "runs" / "live",
            space_params=SPACE_PARAMS,
            store=store,
            echo=lines.append,
        )
        tracker.epoch_end(model, 0)  # the initialisation builds the space (first epoch fed)
        for epoch in (1, 2):
            loss, top1 = train_epoch(model, images, labels, opt)
            tracker.epoch_end(model, epoch, train_top1=top1, train_loss=loss)
        with store.session(readonly=True) as s:
            assert set(live_runs(s)) == {tracker.run_id}  # the badge while it trains
        tracker.close()

        def placed() -> Counter:
            with store.session(readonly=True) as s:
                rows = s.execute(
                    select(Snapshot.epoch).join(SpaceSnapshot).join(Run).where(Run.name == "live")
                ).all()
            return Counter(e for (e,) in rows)

        wait_for(lambda: len(placed()) == 3, 420, "every epoch placed", poll=1.0)
        assert placed() == Counter({0: 1, 1: 1, 2: 1})
        jobs = list_jobs(store, limit=1000)
        assert [j.status for j in jobs if j.status in ("failed", "cancelled")] == []
        per_snapshot = Counter(j.params["snapshot_id"] for j in jobs if j.kind == "add_snapshot")
        assert max(per_snapshot.values()) == 1, per_snapshot  # placed exactly once each
        assert sorted(p.name for p in (tmp_path / "runs" / "live").iterdir()) == [
            "epoch_000.pt",
            "epoch_001.pt",
            "epoch_002.pt",
            "history.json",
        ]
        with store.session(readonly=True) as s:
            assert live_runs(s) == {}  # closed: no longer live
            snap = s.scalars(select(Snapshot).join(Run).where(Run.name == "live", Snapshot.epoch == 2)).one()
            assert snap.train_top1 is not None and snap.train_loss is not None
    finally:
        stop(worker)
        store.dispose()


def test_tracker_refuses_bad_input_in_one_line(tiny_demo_world, tmp_path) -> None:
    data = make_data_dir(tmp_path / "data", tiny_demo_world)
    store = data.store()
    train_dir = str(tiny_demo_world / "dataset" / "train")
    model = build_model("demo-vgg", 12)
    cases = [
        ({"dataset": str(tmp_path / "nowhere")}, "neither a registered dataset"),
        ({"arch": "no-such-net"}, "no-such-net"),
        ({"layers": ["features.99"]}, "features.99"),
        ({"reference": "ghost"}, "ghost"),
        ({"space_params": {"k": 0}}, "space_params"),
    ]
    for i, (bad, words) in enumerate(cases):
        kwargs = {
            "run": f"bad{i}",
            "arch": "demo-vgg",
            "dataset": train_dir,
            "space": "s",
            "out_dir": tmp_path / "o",
        }
        with pytest.raises(ConceptEvoError) as caught:
            Tracker(**{**kwargs, **bad}, store=store).epoch_end(model, 0)
        assert words in str(caught.value) and "\n" not in str(caught.value)
    store.dispose()


KILLED_CHILD = """
import sys, time, torch
from backend.store import open_store
from worker.models.registry import build_model
from worker.tracker import Tracker

real_save = torch.save

def slow_disk(obj, path):
    real_save(obj, path)
    if obj["epoch"] == 1:  # half the bytes are on disk when the process dies
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        print("HALF", flush=True)
        time.sleep(600)

torch.save = slow_disk
tracker = Tracker(run="killed", arch="demo-vgg", dataset=sys.argv[1], space="k", out_dir=sys.argv[2],
                  store=open_store(sys.argv[3]))
model = build_model("demo-vgg", 12)
tracker.epoch_end(model, 0)
tracker.flush()
tracker.epoch_end(model, 1)
time.sleep(600)
"""


def test_training_killed_mid_save_registers_no_half_checkpoint(tiny_demo_world, tmp_path) -> None:
    data = make_data_dir(tmp_path / "data", tiny_demo_world)
    out = tmp_path / "runs" / "killed"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(KILLED_CHILD),
            str(tiny_demo_world / "dataset" / "train"),
            str(out),
            str(data.db),
        ],
        cwd=REPO,
        env=data.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in child.stdout:
            if line.strip() == "HALF":
                break
        else:
            raise AssertionError(f"the training process ended early (status {child.wait()})")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        stop(child)
    store = data.store()
    assert _epochs_of(store, "killed") == {0: str(out / "epoch_000.pt")}
    assert (out / ".epoch_001.pt.tmp").is_file() and not (out / "epoch_001.pt").exists()
    store.dispose()


FILLER = """
import sys, time, torch
from pathlib import Path
from worker.models.registry import build_model

folder, gate = Path(sys.argv[1]), Path(sys.argv[2])
model = build_model("demo-vgg", 12)
for epoch in (0, 1):
    torch.save({"state_dict": model.state_dict(), "epoch": epoch}, folder / f"ckpt-{epoch}.pth")
torch.save(model.state_dict(), folder / "scratch.bin")
data = (folder / "scratch.bin").read_bytes()
(folder / "scratch.bin").unlink()
with open(folder / "ckpt-2.pth", "wb") as f:  # written slowly, the way a big file arrives
    f.write(data[: len(data) // 2])
    f.flush()
    print("PARTIAL", flush=True)
    while not gate.exists():
        time.sleep(0.1)
    f.write(data[len(data) // 2 :])
torch.save(model.state_dict(), folder / "ckpt-3.pth")
print("DONE", flush=True)
"""


def test_watch_a_folder_another_process_fills(tiny_demo_world, tmp_path) -> None:
    data = make_data_dir(tmp_path / "data", tiny_demo_world)
    folder = tmp_path / "trainer"
    folder.mkdir()
    gate = tmp_path / "gate"
    filler = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FILLER), str(folder), str(gate)],
        cwd=REPO,
        env=data.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    store = data.store()
    args = [
        "watch",
        str(folder),
        "--arch",
        "demo-vgg",
        "--dataset",
        str(tiny_demo_world / "dataset" / "train"),
    ]
    args += ["--space", "w", "--pattern", "ckpt-{epoch}.pth", "--poll", "0.3", "--settle", "0.5"]
    watcher = None
    try:
        assert filler.stdout.readline().strip() == "PARTIAL"
        watcher = data.start("watch", *args)
        wait_for(lambda: set(_epochs_of(store, "trainer")) == {0, 1}, 120, "epochs 0 and 1 registered")
        time.sleep(1.5)  # several scans: the half-written epoch 2 must not be taken
        assert set(_epochs_of(store, "trainer")) == {0, 1}
        watcher.send_signal(signal.SIGTERM)  # stops like Ctrl-C
        assert wait_exit(watcher, 30, data.logs[-1]) == 0
        assert "stopping" in data.logs[-1].read_text()

        gate.touch()
        assert filler.stdout.readline().strip() == "DONE"
        watcher = data.start("watch", *args)  # a restart: takes 2 and 3, nothing twice
        wait_for(lambda: set(_epochs_of(store, "trainer")) == {0, 1, 2, 3}, 120, "epochs 2 and 3 registered")
        watcher.send_signal(signal.SIGTERM)
        assert wait_exit(watcher, 30, data.logs[-1]) == 0
        jobs = Counter(job.kind for job in list_jobs(store, limit=100))
        assert jobs == Counter({"build_space": 1})  # the missing space is built once, on epoch 0
        with store.session(readonly=True) as s:
            assert s.scalar(select(Snapshot.id).join(Run).where(Run.name == "trainer").limit(1)) is not None
            assert live_runs(s) == {}
    finally:
        if watcher is not None:
            stop(watcher)
        stop(filler)
        store.dispose()
