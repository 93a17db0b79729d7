"""Issue 12: a user's own model and data — mistakes caught when the command is typed, in one line, exit 2.

Each test first reproduces the mistake the issue reports (sklearn-digits-style split folders, a wrong ``--arch``,
a class count that disagrees with the dataset, a truncated or foreign ``.pt``, ``importance --classes 42``, a
factory that does not take ``num_classes``), then checks the one-line refusal and that nothing was registered.
The CLI runs in-process (:func:`worker.cli.run`) against a real SQLite file.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from backend.store import list_jobs, list_snapshots, open_store
from backend.store.models import Dataset, Run
from backend.store.queries import run_model_kwargs
from worker.cli import run as cli_run
from worker.data.imagefolder import load_split, split_folders
from worker.errors import ConceptEvoError
from worker.models.checkpoints import read_checkpoint
from worker.models.registry import build_model

N_CLASSES = 10


def _write_digits(root: Path, per_class: int = 3, size: int = 16) -> Path:
    """A digits-like ImageFolder with split folders: ``root/train/<digit>/*.png`` and ``root/val/<digit>/*.png``
    (random strokes; the tests only need the layout and the class count)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for digit in range(N_CLASSES):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


MYNETS = '''
from torch import nn


def small(num_classes: int, width: int = 8) -> nn.Module:
    """A user's own factory: takes num_classes= and one keyword argument."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, num_classes),
    )


def no_classes(width: int = 8) -> nn.Module:
    """A factory that forgot num_classes."""
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.Flatten())
'''


@pytest.fixture
def door(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh database (via ``$CONCEPTEVO_DB``), the digits folder, and the user's ``mynets`` module in a folder
    that is on the model path only through ``$CONCEPTEVO_MODEL_PATH``."""
    monkeypatch.setenv("CONCEPTEVO_DB", str(tmp_path / "conceptevo.db"))
    monkeypatch.setenv("CONCEPTEVO_DATA", str(tmp_path / "data"))
    models = tmp_path / "models"
    models.mkdir()
    (models / "mynets_door.py").write_text(textwrap.dedent(MYNETS))
    monkeypatch.setenv("CONCEPTEVO_MODEL_PATH", str(models))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    _write_digits(tmp_path / "digits")
    store = open_store(str(tmp_path / "conceptevo.db"))
    yield tmp_path, store
    store.dispose()


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run ``conceptevo ARGS`` in-process: ``(exit status, stdout, stderr)``."""
    capsys.readouterr()
    status = cli_run([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (status, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _save_run(folder: Path, model: nn.Module, epochs: tuple[int, ...] = (0, 1, 2), **meta) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in epochs:
        torch.save(
            {"state_dict": model.state_dict(), "epoch": epoch, **meta}, folder / f"epoch_{epoch:03d}.pt"
        )
    return folder


# ---------------------------------------------------------------------------------------------- item 1
def test_add_dataset_on_a_split_root_registers_its_train_split(door, capsys) -> None:
    tmp, store = door
    status, out, err = cli(capsys, "add-dataset", tmp / "digits")
    assert status == 0, err
    assert "dataset 'digits'" in out and "10 classes" in out and "val/ is its held-out split" in out
    with store.session(readonly=True) as s:
        (ds,) = s.query(Dataset).all()
        assert (ds.name, len(ds.class_names), Path(ds.root)) == (
            "digits",
            10,
            (tmp / "digits" / "train").resolve(),
        )
    # `train` reads the same root with the same rule: train/ to learn, val/ to validate
    assert load_split(tmp / "digits", "val").root == tmp / "digits" / "val"


def test_split_roots_that_cannot_be_registered_are_refused_in_one_line(door, capsys) -> None:
    tmp, _ = door
    only_val = tmp / "only-val"
    (only_val / "val").mkdir(parents=True)
    (only_val / "test").mkdir()
    status, _, err = cli(capsys, "add-dataset", only_val)
    assert_one_line_error(status, err, "no train/", "conceptevo add-dataset")
    (tmp / "digits" / "cats").mkdir()
    status, _, err = cli(capsys, "add-dataset", tmp / "digits")
    assert_one_line_error(status, err, "mixes split folders", "cats")


def test_split_folder_names_are_recognised_in_any_usual_spelling(tmp_path: Path) -> None:
    for name in ("Train", "validation", "test"):
        (tmp_path / name).mkdir()
    assert {split: path.name for split, path in split_folders(tmp_path).items()} == {
        "train": "Train",
        "val": "validation",
        "test": "test",
    }
    (tmp_path / "val").mkdir()
    with pytest.raises(ConceptEvoError, match="both the 'val' split"):
        split_folders(tmp_path)


# ---------------------------------------------------------------------------------------------- item 2
def _digits_registered(door, capsys) -> Path:
    tmp, _ = door
    status, _, err = cli(capsys, "add-dataset", tmp / "digits")
    assert status == 0, err
    return tmp


def _text_file(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "epoch_000.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    return folder


def _truncated_last(folder: Path) -> Path:
    _save_run(folder, build_model("mynets_door:small", N_CLASSES))
    last = folder / "epoch_002.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    return folder


@pytest.mark.parametrize(
    ("case", "arch", "make", "fragments"),
    [
        (
            "resnet34-for-resnet18-weights",
            "resnet34",
            lambda f: _save_run(f, torchvision.models.resnet18(num_classes=N_CLASSES), epochs=(0, 1)),
            ("does not fit architecture resnet34", "epoch_000.pt", "check --arch"),
        ),
        (
            "class-count",
            "mynets_door:small",
            lambda f: _save_run(f, build_model("mynets_door:small", 5)),
            ("has 5 classes but dataset 'digits' has 10",),
        ),
        ("truncated-last", "mynets_door:small", _truncated_last, ("epoch_002.pt", "corrupt or truncated")),
        ("text-file", "mynets_door:small", _text_file, ("not a PyTorch checkpoint", "epoch_000.pt")),
    ],
    ids=["resnet34-for-resnet18-weights", "class-count", "truncated-last", "text-file"],
)
def test_add_run_opens_the_first_and_last_checkpoint(door, capsys, case, arch, make, fragments) -> None:
    tmp = _digits_registered(door, capsys)
    folder = make(tmp / case)
    status, _, err = cli(
        capsys, "add-run", case, "--arch", arch, "--checkpoints", folder, "--dataset", "digits"
    )
    assert_one_line_error(status, err, *fragments)
    with door[1].session(readonly=True) as s:
        assert s.query(Run).count() == 0  # nothing half-registered


def test_a_text_file_named_pt_is_not_called_a_pickle_problem(tmp_path: Path) -> None:
    path = _text_file(tmp_path / "run") / "epoch_000.pt"
    with pytest.raises(ConceptEvoError) as caught:
        read_checkpoint(path)
    assert "not a PyTorch checkpoint" in str(caught.value)
    assert "Python objects" not in str(caught.value)


# ---------------------------------------------------------------------------------------------- item 3
def test_cli_refuses_a_class_the_run_does_not_have_like_the_api(door, capsys) -> None:
    from tests.fixtures.synthetic import build_synthetic_store

    _, store = door
    build_synthetic_store(store, n_neurons=4, n_epochs=3, n_runs=1)
    status, _, err = cli(capsys, "importance", "run-0", "--from", "0", "--to", "2", "--classes", "42")
    assert_one_line_error(status, err, "class 42 not found", "3 classes")
    assert not [job for job in list_jobs(store, limit=100) if job.kind == "importance"]  # nothing queued


# ---------------------------------------------------------------------------------------------- item 8
def test_own_factory_with_model_kwargs_is_stored_and_used_by_the_worker(door, capsys) -> None:
    from types import SimpleNamespace

    from worker.jobs.common import model_of

    tmp = _digits_registered(door, capsys)
    folder = _save_run(tmp / "wide", build_model("mynets_door:small", N_CLASSES, width=32))
    args = ["add-run", "wide", "--arch", "mynets_door:small", "--checkpoints", folder, "--dataset", "digits"]
    status, _, err = cli(capsys, *args)  # without the kwargs the weights do not fit
    assert_one_line_error(status, err, "does not fit", "shape mismatch")
    status, out, err = cli(capsys, *args, "--model-kwargs", json.dumps({"width": 32}))
    assert status == 0, err
    assert "32 neurons" in out
    _, store = door
    with store.session(readonly=True) as s:
        run = s.query(Run).one()
        assert run_model_kwargs(s, run.id) == {"width": 32}
        snapshot = list_snapshots(s, run.id)[-1]
    model = model_of(SimpleNamespace(store=store, device="cpu"), run, snapshot)  # what a job loads
    assert model[0].out_channels == 32
    status, _, err = cli(capsys, *args, "--model-kwargs", "[32]")
    assert_one_line_error(status, err, "--model-kwargs must be a JSON object")


def test_factory_contract_errors_say_what_to_change(door, monkeypatch, tmp_path) -> None:
    with pytest.raises(ConceptEvoError, match=r"must accept num_classes="):
        build_model("mynets_door:no_classes", N_CLASSES)
    with pytest.raises(ConceptEvoError, match=r"rejected its arguments .*depth.*check --model-kwargs"):
        build_model("mynets_door:small", N_CLASSES, depth=3)
    monkeypatch.delenv("CONCEPTEVO_MODEL_PATH")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConceptEvoError) as caught:
        build_model("mynets_elsewhere:small", N_CLASSES)
    message = str(caught.value)
    assert "cannot import module 'mynets_elsewhere'" in message and "CONCEPTEVO_MODEL_PATH" in message
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------- item 9
def test_worker_once_exits_1_and_says_how_many_jobs_failed(door, capsys, monkeypatch) -> None:
    from backend.store import queue
    from worker import runner

    _, store = door
    failing = [queue.enqueue(store, "demo", {"size": "small", "seed": seed})[0].id for seed in (1, 2)]

    def broken(ctx) -> None:
        raise ConceptEvoError("dataset /nowhere does not exist")

    outcomes: dict[int, str] = {}
    done = runner.run_worker(
        store, once=True, handlers={"demo": broken}, install_signals=False, outcomes=outcomes, poll=0.01
    )
    assert (done, outcomes) == (0, dict.fromkeys(failing, "failed"))

    def fake_run_worker(store, outcomes, **kwargs) -> int:
        outcomes.update({1: "failed", 2: "done", 3: "failed", 4: "deferred"})
        return 1

    monkeypatch.setattr(runner, "run_worker", fake_run_worker)
    status, _, err = cli(capsys, "worker", "--once", "--device", "cpu")
    assert status == 1 and "worker finished 1 job(s); 2 failed" in err, (status, err)


def test_progress_is_plain_lines_every_few_seconds_off_a_terminal(monkeypatch) -> None:
    import io

    from worker.progress import LineProgress, progress_bar

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("CONCEPTEVO_PROGRESS_S", "3600")
    log = io.StringIO()
    bar = progress_bar(1000, "job 7 add_snapshot", unit=None, stream=log)
    assert isinstance(bar, LineProgress)
    for step in range(1, 1001):  # the runner's use: set n, a message, refresh — a thousand times
        bar.n = step
        bar.set_postfix_str("placing neurons", refresh=False)
        bar.refresh()
    bar.close()
    assert log.getvalue() == log.getvalue().splitlines()[0] + "\n"  # one line, printed when it closed
    assert log.getvalue().startswith("job 7 add_snapshot: 100%") and "placing neurons" in log.getvalue()
    assert "‰" not in log.getvalue() and "\r" not in log.getvalue()
    every = LineProgress(10, "train 1/3", unit="step", stream=log, interval=0.0)
    every.update(4)
    assert log.getvalue().splitlines()[-1].startswith("train 1/3:  40% (4/10 step)")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    tty_bar = progress_bar(1000, "job 7", unit=None, stream=screen)
    tty_bar.n = 500
    tty_bar.refresh()
    tty_bar.close()
    assert "50%" in screen.getvalue() and "‰" not in screen.getvalue() and "it/s" not in screen.getvalue()
