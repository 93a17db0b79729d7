"""The trainer: per-epoch checkpoints, history, determinism, subsets, the demo run definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worker.demo.runs import DEMO_RUNS, train_demo_runs
from worker.errors import ConceptEvoError
from worker.models.checkpoints import discover_epochs, load_model, read_checkpoint
from worker.training import TrainConfig, _balanced_subset, checkpoint_path, is_complete, train

COLOURS = [(220, 40, 30), (30, 200, 40), (40, 60, 220)]


def write_split_folder(root: Path, train_per_class: int = 24, val_per_class: int = 8, size: int = 16) -> Path:
    """A tiny dataset: per class a colour, with a randomly placed square of the other colour and noise."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, colour in enumerate(COLOURS):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                array = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255)
                y, x = rng.integers(0, size - 5, 2)
                array[y : y + 5, x : x + 5] = COLOURS[(label + 1) % 3]
                Image.fromarray(array.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def tiny_config(**changes) -> TrainConfig:
    base = TrainConfig(
        arch="demo-vgg",
        epochs=3,
        batch_size=16,
        optimizer="adam",
        lr=5e-3,
        schedule="onecycle",
        dropout=0.0,
        augment=True,
        image_size=16,
        model_kwargs={"widths": [8, "M", 16, "M"]},
        threads=1,
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return write_split_folder(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def tiny_run(tiny_root, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("run") / "run"
    return out, train(tiny_config(), tiny_root, out, progress=False)


def test_writes_every_epoch_and_history(tiny_run, tiny_root):
    out, history = tiny_run
    assert list(discover_epochs(out)) == [0, 1, 2, 3]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert json.loads((out / "history.json").read_text()) == history
    keys = {"train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5", "seconds"}
    assert keys <= set(history[0])
    assert history[-1]["train_top1"] > history[0]["train_top1"] + 0.2
    assert history[-1]["val_top1"] > history[0]["val_top1"] + 0.2
    assert history[-1]["val_top1"] >= 0.8
    assert all(h["train_top5"] == 1.0 for h in history)  # 3 classes: top-5 is trivially right
    info = json.loads((out / "run.json").read_text())
    assert info["class_names"] == ["class_0", "class_1", "class_2"]
    assert info["dataset_root"] == str(tiny_root.resolve())
    assert info["config"]["epochs"] == 3 and is_complete(out)
    assert not list(out.glob(".*tmp"))


def test_checkpoints_load_and_epoch_zero_is_the_initialisation(tiny_run):
    out, history = tiny_run
    state, meta = read_checkpoint(out / "epoch_000.pt")
    assert meta["epoch"] == 0 and meta["arch"] == "demo-vgg" and meta["num_classes"] == 3
    assert meta["class_names"] == ["class_0", "class_1", "class_2"]
    torch.manual_seed(0)
    from worker.models.registry import build_model

    fresh = build_model("demo-vgg", 3, widths=[8, "M", 16, "M"], dropout=0.0, image_size=16)
    assert all(torch.equal(state[k], v) for k, v in fresh.state_dict().items())
    model = load_model(None, None, out / "epoch_003.pt")
    assert not model.training
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    last, _ = read_checkpoint(out / "epoch_003.pt")
    assert not torch.equal(last["features.0.weight"], state["features.0.weight"])


def test_same_seed_same_weights_other_seed_differs(tiny_root, tmp_path):
    config = tiny_config(epochs=1)
    train(config, tiny_root, tmp_path / "a", progress=False)
    train(config, tiny_root, tmp_path / "b", progress=False)
    config.seed = 1
    train(config, tiny_root, tmp_path / "c", progress=False)
    a, b, c = (read_checkpoint(tmp_path / name / "epoch_001.pt")[0] for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.0.weight"], c["features.0.weight"])


def test_existing_run_needs_overwrite_and_bad_config(tiny_root, tiny_run, tmp_path):
    out, _ = tiny_run
    with pytest.raises(ConceptEvoError, match="already holds a training run"):
        train(tiny_config(), tiny_root, out, progress=False)
    with pytest.raises(ConceptEvoError, match="optimizer must be one of adam, sgd"):
        train(tiny_config(optimizer="rmsprop"), tiny_root, tmp_path / "x", progress=False)
    with pytest.raises(ConceptEvoError, match="has 3 classes, config asks for 5"):
        train(tiny_config(num_classes=5), tiny_root, tmp_path / "y", progress=False)
    with pytest.raises(ConceptEvoError, match="unknown architecture"):
        train(tiny_config(arch="resnet1000"), tiny_root, tmp_path / "z", progress=False)


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "data" / "train" / "a").mkdir(parents=True)
    (tmp_path / "data" / "val" / "a").mkdir(parents=True)
    with pytest.raises(ConceptEvoError, match=r"train is empty"):
        train(tiny_config(), tmp_path / "data", tmp_path / "out", progress=False)


def test_subset_streaming_and_sgd(tiny_root, tmp_path):
    # a 12-image class-balanced subset, streamed through a DataLoader (preload disabled), SGD, constant lr
    config = tiny_config(
        epochs=1, train_subset=12, preload_limit_mb=0, optimizer="sgd", schedule="constant", lr=0.05
    )
    history = train(config, tiny_root, tmp_path / "run", progress=False)
    assert len(history) == 2 and history[1]["lr"] == 0.05
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["num_train"] == 12


def test_balanced_subset():
    targets = np.repeat(np.arange(4), [10, 10, 10, 2])
    picked = _balanced_subset(targets, 14, np.random.default_rng(0))
    assert len(picked) == 14 and len(set(picked.tolist())) == 14
    counts = np.bincount(targets[picked], minlength=4)
    assert counts[3] == 2 and counts[:3].min() >= 3
    again = _balanced_subset(targets, 14, np.random.default_rng(0))
    assert np.array_equal(picked, again)
    assert np.array_equal(_balanced_subset(targets, None, np.random.default_rng(0)), np.arange(32))


def test_torchvision_arch_trains_on_imagefolder(tiny_root, tmp_path):
    config = tiny_config(
        arch="resnet18", epochs=1, model_kwargs={}, dropout=0.3, image_size=32, augment=False
    )
    history = train(config, tiny_root, tmp_path / "resnet", progress=False)
    assert len(history) == 2
    model = load_model("resnet18", 3, tmp_path / "resnet" / "epoch_001.pt")
    assert model.fc.out_features == 3


def test_demo_runs_are_defined_as_the_issue_asks():
    healthy, high, overfit = DEMO_RUNS["healthy"], DEMO_RUNS["high-lr"], DEMO_RUNS["overfit"]
    assert healthy.epochs >= 8 and healthy.augment and healthy.dropout
    assert high.optimizer == "sgd" and high.lr >= 0.3 and high.schedule == "constant"
    assert (
        overfit.dropout == 0 and not overfit.augment and overfit.train_subset <= 500 and overfit.epochs >= 15
    )
    for config in DEMO_RUNS.values():
        config.validate()


def test_train_demo_runs_skips_complete_runs(tiny_root, tmp_path, monkeypatch):
    import worker.demo.runs as runs

    monkeypatch.setitem(runs.DEMO_RUNS, "healthy", tiny_config(epochs=1))
    first = train_demo_runs(tiny_root, tmp_path, names=["healthy"], progress=False)
    stamp = (tmp_path / "healthy" / "epoch_001.pt").stat().st_mtime_ns
    second = train_demo_runs(tiny_root, tmp_path, names=["healthy"], progress=False)
    assert first == second
    assert (tmp_path / "healthy" / "epoch_001.pt").stat().st_mtime_ns == stamp
    with pytest.raises(ConceptEvoError, match="unknown demo run 'nope'"):
        train_demo_runs(tiny_root, tmp_path, names=["nope"])


def test_on_epoch_sees_each_entry_once_written_and_can_stop_the_run(tiny_root, tmp_path):
    seen: list[tuple[dict, bool]] = []

    def on_epoch(entry: dict) -> None:
        seen.append((entry, checkpoint_path(tmp_path / "a", entry["epoch"]).is_file()))

    history = train(tiny_config(epochs=2), tiny_root, tmp_path / "a", progress=False, on_epoch=on_epoch)
    assert [entry for entry, _ in seen] == history and [e["epoch"] for e in history] == [0, 1, 2]
    assert all(written for _, written in seen)

    class Stop(Exception):
        pass

    def stop_after_one(entry: dict) -> None:
        if entry["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train(tiny_config(epochs=2), tiny_root, tmp_path / "b", progress=False, on_epoch=stop_after_one)
    assert not is_complete(tmp_path / "b") and not (tmp_path / "b" / "epoch_002.pt").exists()
