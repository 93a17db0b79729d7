"""Issue 12, item 4: every CLI error is one line on stderr and exit status 2 — every command, a bad value of each
of its options (and of its arguments).

The CLI runs in-process (:func:`worker.cli.run`, typer's parser and the commands' own checks) against one
SQLite file holding a synthetic world (runs ``run-0``/``run-1``, space ``synthetic-space``) plus a registered
digits-style ImageFolder and a run of the user's own ``module:factory``. Nothing is trained, served or
watched: every case must be refused before any work starts. :func:`test_every_option_has_a_bad_value_case`
keeps the table complete as commands gain options.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
import typer.main

from backend.store import open_store
from tests.fixtures.synthetic import build_synthetic_store
from tests.worker.test_door import MYNETS, N_CLASSES, _write_digits
from worker.cli import app
from worker.cli import run as cli_run
from worker.models.registry import build_model


def _watch(
    *extra: str, folder: str = "{tmp}/run", arch: str = "mynets_cli:small", dataset: str = "digits"
) -> list[str]:
    """``watch`` arguments (with ``--once``: nothing waits) plus ``extra``."""
    return ["watch", folder, "--arch", arch, "--dataset", dataset, "--once", *extra]


#: (command, option or argument name) → arguments that give it a bad value, and a fragment of the error.
#: ``{tmp}`` is the test folder: ``digits`` (a split root, registered as ``digits``), ``run`` (checkpoints of
#: ``mynets_cli:small``), ``file.txt`` (a regular file), ``missing`` (nothing).
CASES: dict[tuple[str, str], tuple[list[str], str]] = {
    ("demo-data", "--out"): (["demo-data", "--out", "{tmp}/file.txt", "--size", "small"], "file.txt"),
    ("demo-data", "--size"): (["demo-data", "--size", "huge"], "size must be"),
    ("demo-data", "--seed"): (["demo-data", "--seed", "-1"], "--seed"),
    ("demo-train", "--out"): (["demo-train", "--out", "{tmp}/missing"], "missing"),
    ("demo-train", "--run"): (["demo-train", "--run", "bogus"], "unknown demo run 'bogus'"),
    ("demo-train", "--seed"): (["demo-train", "--seed", "x"], "--seed"),
    ("train", "dataset"): (["train", "{tmp}/missing", "--out", "{tmp}/out"], "does not exist"),
    ("train", "--out"): (["train", "{tmp}/digits", "--out", "{tmp}/file.txt"], "not a directory"),
    ("train", "--arch"): (["train", "{tmp}/digits", "--out", "{tmp}/out", "--arch", "resnet1"], "resnet1"),
    ("train", "--epochs"): (["train", "{tmp}/digits", "--out", "{tmp}/out", "--epochs", "0"], "epochs"),
    ("train", "--batch-size"): (["train", "{tmp}/digits", "--out", "{tmp}/o", "--batch-size", "0"], "batch"),
    ("train", "--optimizer"): (
        ["train", "{tmp}/digits", "--out", "{tmp}/o", "--optimizer", "adamw"],
        "adamw",
    ),
    ("train", "--lr"): (["train", "{tmp}/digits", "--out", "{tmp}/o", "--lr", "-1"], "lr"),
    ("train", "--schedule"): (
        ["train", "{tmp}/digits", "--out", "{tmp}/o", "--schedule", "cosine"],
        "cosine",
    ),
    ("train", "--image-size"): (
        ["train", "{tmp}/digits", "--out", "{tmp}/o", "--image-size", "0"],
        "image-size",
    ),
    ("train", "--seed"): (["train", "{tmp}/digits", "--out", "{tmp}/o", "--seed", "-3"], "--seed"),
    ("train", "--device"): (["train", "{tmp}/digits", "--out", "{tmp}/o", "--device", "gpu0"], "gpu0"),
    ("train", "--model-kwargs"): (
        ["train", "{tmp}/digits", "--out", "{tmp}/o", "--model-kwargs", "{"],
        "JSON",
    ),
    ("demo", "--size"): (["demo", "--size", "huge"], "size"),
    ("demo", "--seed"): (["demo", "--seed", "-1"], "--seed"),
    ("demo", "--host"): (["demo", "--host", "8.8.8.8"], "refusing to serve on 8.8.8.8"),
    ("demo", "--port"): (["demo", "--port", "0"], "--port"),
    ("demo", "--device"): (["demo", "--device", "tpu"], "'tpu'"),
    ("serve", "--host"): (["serve", "--host", "8.8.8.8"], "refusing to serve on 8.8.8.8"),
    ("serve", "--port"): (["serve", "--port", "70000"], "--port"),
    ("serve", "--db"): (["serve", "--db", "{tmp}/digits"], "directory"),
    ("worker", "--device"): (["worker", "--device", "cuda:x"], "'cuda:x'"),
    ("worker", "--poll"): (["worker", "--poll", "0"], "--poll"),
    ("worker", "--max-jobs"): (["worker", "--max-jobs", "0"], "--max-jobs"),
    ("add-dataset", "root"): (["add-dataset", "{tmp}/missing"], "does not exist"),
    ("add-dataset", "--name"): (["add-dataset", "{tmp}/digits", "--name", " "], "name must not be empty"),
    ("add-run", "name"): (
        ["add-run", "", "--arch", "x", "--checkpoints", "{tmp}/run", "--dataset", "digits"],
        "name",
    ),
    ("add-run", "--arch"): (
        ["add-run", "r", "--arch", "resnet1", "--checkpoints", "{tmp}/run", "--dataset", "digits"],
        "unknown architecture 'resnet1'",
    ),
    ("add-run", "--checkpoints"): (
        [
            "add-run",
            "r",
            "--arch",
            "mynets_cli:small",
            "--checkpoints",
            "{tmp}/missing",
            "--dataset",
            "digits",
        ],
        "does not exist",
    ),
    ("add-run", "--dataset"): (
        ["add-run", "r", "--arch", "mynets_cli:small", "--checkpoints", "{tmp}/run", "--dataset", "nope"],
        "unknown dataset 'nope'",
    ),
    ("add-run", "--layer"): (
        ["add-run", "r", "--arch", "mynets_cli:small", "--checkpoints", "{tmp}/run", "--dataset", "digits"]
        + ["--layer", "features.9"],
        "features.9",
    ),
    ("add-run", "--model-kwargs"): (
        ["add-run", "r", "--arch", "mynets_cli:small", "--checkpoints", "{tmp}/run", "--dataset", "digits"]
        + ["--model-kwargs", '{"depth": 3}'],
        "depth",
    ),
    ("watch", "folder"): (_watch("--space", "synthetic-space", folder="{tmp}/file.txt"), "file.txt"),
    ("watch", "--arch"): (_watch("--space", "synthetic-space", arch="resnet1"), "resnet1"),
    ("watch", "--dataset"): (_watch("--space", "synthetic-space", dataset="nope"), "nope"),
    ("watch", "--space"): (_watch("--space", "a/b"), "a/b"),
    ("watch", "--run"): (_watch("--space", "synthetic-space", "--run", "run-0"), "run-0"),
    ("watch", "--pattern"): (_watch("--space", "synthetic-space", "--pattern", "ckpt.pt"), "pattern"),
    ("watch", "--layer"): (_watch("--space", "synthetic-space", "--layer", "features.9"), "features.9"),
    ("watch", "--base-epoch"): (_watch("--space", "synthetic-space", "--base-epoch", "x"), "--base-epoch"),
    ("watch", "--reference"): (_watch("--space", "new-space", "--reference", "nope"), "nope"),
    ("watch", "--poll"): (_watch("--space", "synthetic-space", "--poll", "0"), "--poll"),
    ("watch", "--settle"): (_watch("--space", "synthetic-space", "--settle", "-1"), "--settle"),
    ("build-space", "--base"): (["build-space", "--base", "run-0"], "RUN@EPOCH"),
    ("build-space", "--name"): (["build-space", "--base", "run-0@1", "--name", "a/b"], "name"),
    ("build-space", "--compute"): (["build-space", "--base", "run-0@1", "--compute", "nope"], "nope"),
    ("build-space", "--k"): (["build-space", "--base", "run-0@1", "--k", "0"], "k"),
    ("build-space", "--dim"): (["build-space", "--base", "run-0@1", "--dim", "1"], "dim"),
    ("build-space", "--epochs"): (["build-space", "--base", "run-0@1", "--epochs", "0"], "epochs"),
    ("build-space", "--lr"): (["build-space", "--base", "run-0@1", "--lr", "0"], "lr"),
    ("build-space", "--negatives"): (["build-space", "--base", "run-0@1", "--negatives", "0"], "negatives"),
    ("build-space", "--batch-size"): (
        ["build-space", "--base", "run-0@1", "--batch-size", "0"],
        "batch_size",
    ),
    ("build-space", "--seed"): (["build-space", "--base", "run-0@1", "--seed", "-1"], "seed"),
    ("compute", "run"): (["compute", "nope", "--space", "synthetic-space"], "nope"),
    ("compute", "--space"): (["compute", "run-0", "--space", "nope"], "no space 'nope'"),
    ("compute", "--epochs"): (
        ["compute", "run-0", "--space", "synthetic-space", "--epochs", "1-x"],
        "epochs",
    ),
    ("compute", "--shards"): (
        ["compute", "run-0", "--space", "synthetic-space", "--shards", "4096"],
        "use at most",
    ),
    ("importance", "run"): (["importance", "nope", "--from", "0", "--to", "1"], "nope"),
    ("importance", "--from"): (["importance", "run-0", "--from", "2", "--to", "1"], "--from"),
    ("importance", "--to"): (["importance", "run-0", "--from", "0", "--to", "99"], "99"),
    ("importance", "--classes"): (
        ["importance", "run-0", "--from", "0", "--to", "1", "--classes", "42"],
        "42",
    ),
    ("importance", "--images"): (
        ["importance", "run-0", "--from", "0", "--to", "1", "--images", "0"],
        "images",
    ),
    ("importance", "--seed"): (["importance", "run-0", "--from", "0", "--to", "1", "--seed", "-1"], "seed"),
    ("importance", "--reps"): (
        ["importance", "run-0", "--from", "0", "--to", "1", "--revert", "--reps", "0"],
        "reps",
    ),
    ("eval", "--space"): (["eval", "--space", "nope"], "no space 'nope'"),
    ("eval", "--reps"): (["eval", "--reps", "0"], "reps"),
    ("eval", "--images"): (["eval", "--images", "0"], "images"),
    ("eval", "--seed"): (["eval", "--seed", "-1"], "seed"),
    ("eval-seeds", "reports"): (["eval-seeds", "{tmp}/missing", "{tmp}/missing"], "no eval report"),
    ("eval-seeds", "--name"): (["eval-seeds", "{tmp}/missing", "{tmp}/missing", "--name", ".."], "--name"),
    ("eval-seeds", "--labels"): (
        ["eval-seeds", "{tmp}/missing", "{tmp}/missing", "--labels", "0"],
        "--labels",
    ),
    ("rm", "kind"): (["rm", "model", "x"], "'model'"),
    ("rm", "name"): (["rm", "run", "nope"], "nope"),
    ("jobs", "action"): (["jobs", "restart"], "jobs list"),
    ("jobs", "job_id"): (["jobs", "cancel", "99999"], "99999"),
    ("jobs", "--status"): (["jobs", "list", "--status", "bogus"], "bogus"),
    ("jobs", "--unknown-option"): (["jobs", "--bogus"], "--bogus"),
}

#: Options without a value that could be bad (flags) or that take any text.
NO_BAD_VALUE = {"--verbose", "--augment", "--overwrite", "--serve", "--insecure-no-token", "--open", "--once"}
NO_BAD_VALUE |= {"--revert", "--notes", "--replace", "--force"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory):
    """The test folder and environment (see :data:`CASES`), with the synthetic world and ``digits`` registered."""
    tmp = tmp_path_factory.mktemp("cli-errors")
    models = tmp / "models"
    models.mkdir()
    (models / "mynets_cli.py").write_text(textwrap.dedent(MYNETS))
    patch = pytest.MonkeyPatch()
    patch.setenv("CONCEPTEVO_DB", str(tmp / "conceptevo.db"))
    patch.setenv("CONCEPTEVO_DATA", str(tmp / "data"))
    patch.setenv("CONCEPTEVO_MODEL_PATH", str(models))
    patch.delenv("CONCEPTEVO_TOKEN", raising=False)
    patch.setenv("TQDM_DISABLE", "1")
    (tmp / "file.txt").write_text("not a folder\n")
    _write_digits(tmp / "digits", per_class=1)
    (tmp / "run").mkdir()
    model = build_model("mynets_cli:small", N_CLASSES)
    for epoch in (0, 1):
        torch.save({"state_dict": model.state_dict(), "epoch": epoch}, tmp / "run" / f"epoch_{epoch}.pt")
    store = open_store(str(tmp / "conceptevo.db"))
    build_synthetic_store(store, n_neurons=4, n_epochs=3, n_runs=2)
    store.dispose()
    assert cli_run(["add-dataset", str(tmp / "digits")]) == 0
    yield tmp
    patch.undo()


def _options() -> set[tuple[str, str]]:
    """Every (command, option or argument) of the CLI."""
    group = typer.main.get_command(app)
    found = set()
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            found.add((name, max(param.opts, key=len) if param.opts[0].startswith("-") else param.name))
    return found


def test_every_option_has_a_bad_value_case() -> None:
    missing = sorted(key for key in _options() if key not in CASES and key[1] not in NO_BAD_VALUE)
    assert not missing, f"add a bad-value case to CASES for {missing}"


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda key: f"{key[0]}:{key[1]}")
def test_a_bad_value_is_one_line_and_status_2(folder: Path, capsys, key) -> None:
    args, fragment = CASES[key]
    capsys.readouterr()
    status = cli_run([arg.replace("{tmp}", str(folder)) for arg in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (status, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert fragment in lines[0], (fragment, lines[0])
    for left in ("out", "o", "missing"):  # a failed train (or demo-train) leaves no folder behind
        assert not (folder / left).exists(), left
