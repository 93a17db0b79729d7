"""The ``conceptevo`` command line.

Every command imports its heavy dependencies (torch, umap) lazily, so ``conceptevo serve`` and
``conceptevo --help`` start in well under a second. User errors (:class:`~worker.errors.ConceptEvoError`,
the store's ``StoreError``, and bad option values found once the command runs) are printed as one line
on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.main

from worker.errors import ConceptEvoError

# OpenMP's busy-waiting makes torch several times slower when other processes share the cores
# (a worker beside the server, two workers on a laptop); must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="conceptevo",
    help="ConceptEvo: see how the concepts learned by a CNN's neurons are born and change during training.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("conceptevo")


def _data_dir() -> Path:
    from backend.store.config import data_dir

    return Path(data_dir())


def _demo_root(out: Path | None) -> Path:
    return out if out is not None else _data_dir() / "demo"


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """ConceptEvo. With no command, runs the embedded demo (same as `conceptevo demo`)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if ctx.invoked_subcommand is None:
        ctx.invoke(demo)


@app.command("demo-data")
def demo_data(
    out: Annotated[Path | None, typer.Option(help="Output folder (default: data/demo/dataset).")] = None,
    size: Annotated[
        str, typer.Option(help="small (a few hundred images) or default (4,000 + 1,000).")
    ] = "default",
    seed: Annotated[int, typer.Option(min=0, help="Random seed; same seed, same bytes.")] = 0,
) -> None:
    """Generate the demo image set (an ImageFolder of known visual concepts).

    Example: conceptevo demo-data --out /tmp/demo --size small --seed 1
    """
    from worker.demo.generate import generate_demo_data

    if size not in ("small", "default"):
        raise ConceptEvoError("size must be 'small' or 'default'")
    root = out if out is not None else _demo_root(None) / "dataset"
    summary = generate_demo_data(root, size=size, seed=seed, progress=True)
    typer.echo(
        f"demo dataset: {summary.root} — {len(summary.classes)} classes, "
        f"{summary.n_train} train + {summary.n_val} val images"
    )


@app.command("demo-train")
def demo_train(
    out: Annotated[Path | None, typer.Option(help="Demo world folder (default: data/demo).")] = None,
    runs: Annotated[list[str] | None, typer.Option("--run", help="Only these runs (repeatable).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
) -> None:
    """Train the demo runs (healthy, high-lr, overfit) with a checkpoint per epoch.

    Example: conceptevo demo-train --run healthy
    """
    from worker.demo.runs import train_demo_runs

    root = _demo_root(out)
    histories = train_demo_runs(root / "dataset", root / "runs", names=runs or None, seed=seed, progress=True)
    for name, history in histories.items():
        last = history[-1]
        typer.echo(
            f"run {name}: {len(history) - 1} epochs, train top-1 {last['train_top1']:.3f}, "
            f"val top-1 {last['val_top1']:.3f} → {root / 'runs' / name}"
        )


@app.command("train")
def train(
    dataset: Annotated[Path, typer.Argument(help="ImageFolder root (with train/ and val/, or one folder).")],
    out: Annotated[Path, typer.Option(help="Run folder to write epoch_NNN.pt and history.json into.")],
    arch: Annotated[
        str, typer.Option(help="torchvision name (resnet18) or package.module:factory.")
    ] = "demo-vgg",
    epochs: Annotated[int, typer.Option(help="Training epochs (epoch 0 = the initialisation).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 64,
    optimizer: Annotated[str, typer.Option(help="adam or sgd.")] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-3,
    schedule: Annotated[str, typer.Option(help="onecycle or constant.")] = "onecycle",
    image_size: Annotated[
        int | None, typer.Option(min=1, help="Resize images to this side (default: as is).")
    ] = None,
    augment: Annotated[bool, typer.Option(help="Random crop + flip.")] = True,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --out.")] = False,
    model_kwargs: Annotated[
        str | None,
        typer.Option(help="JSON object of factory arguments besides num_classes, e.g. '{\"width\": 32}'."),
    ] = None,
) -> None:
    """Train any model on any ImageFolder with one checkpoint per epoch (the layout ConceptEvo reads).

    Example: conceptevo train ~/data/flowers --out runs/resnet18 --arch resnet18 --image-size 128 --epochs 20
    """
    from worker.training import TrainConfig
    from worker.training import train as run_training

    _check_device(device)
    config = TrainConfig(
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        schedule=schedule,
        image_size=image_size,
        augment=augment,
        seed=seed,
        device=device,
        model_kwargs=_parse_model_kwargs(model_kwargs) or {},
    )
    history = run_training(config, dataset, out, progress=True, overwrite=overwrite)
    typer.echo(json.dumps(history[-1]))


def _store():
    from backend.store import open_store

    return open_store()


@app.command("demo")
def demo(
    size: Annotated[
        str, typer.Option(help="default (4,000 + 1,000 images) or small (for a quick look).")
    ] = "default",
    seed: Annotated[int, typer.Option(min=0, help="Random seed of the demo world.")] = 0,
    serve: Annotated[bool, typer.Option(help="Start a worker and the web app after queueing.")] = True,
    host: Annotated[str, typer.Option(help="Address to serve on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8000,
    device: Annotated[str, typer.Option(help="Worker device: cpu, cuda, cuda:N.")] = "cpu",
    insecure_no_token: Annotated[
        bool,
        typer.Option("--insecure-no-token", help="Allow a non-loopback --host without CONCEPTEVO_TOKEN."),
    ] = False,
) -> None:
    """Queue building the embedded demo world if missing, or register it and queue everything (idempotent);
    then serve the page at once while a worker computes (progress on the page's Jobs view).

    Example: conceptevo demo --no-serve && conceptevo worker --once
    """
    from worker.demo.world import demo_root, demo_world_ready

    if size not in ("small", "default"):
        raise ConceptEvoError("size must be 'small' or 'default'")
    if seed < 0:
        raise ConceptEvoError("seed must be a non-negative integer")
    if serve:
        _check_device(device)
        _refuse_unsafe_bind(host, insecure_no_token)
    root = demo_root()
    store = _store()
    if demo_world_ready(root):
        _register_demo_world(store, root)
    else:
        _queue_demo_world(store, root, size, seed)
    if serve:
        _serve_with_worker(host, port, device, insecure_no_token)


def _queue_demo_world(store, root: Path, size: str, seed: int) -> None:
    """Queue the ``demo`` job that generates and trains the world, then registers it and queues the rest.

    Imports no torch: on a fresh clone the page is up within seconds and shows the job's progress.
    """
    from backend.store.jobspec import enqueue_job
    from worker.jobs import PRIORITY

    job, created = enqueue_job(store, _spec("demo", {"size": size, "seed": seed}), priority=PRIORITY["demo"])
    state = "queued" if created else f"already {job.status}"
    typer.echo(
        f"the demo world is not built yet in {root}: job {job.id} demo (size {size}) {state}; "
        "a worker generates the images and trains the runs (a few minutes on a laptop CPU), then "
        "queues the space and importance jobs"
    )


def _register_demo_world(store, root: Path) -> None:
    """Register the built world and queue what is not computed yet."""
    from worker.demo.plan import enqueue_demo_jobs, register_demo

    for line in register_demo(store, root):
        typer.echo(f"registered {line}")
    plan = enqueue_demo_jobs(store, root)
    typer.echo(
        f"queued {len(plan.queued)} new job(s); {len(plan.existing)} already queued or running; "
        f"{plan.already_done} already computed"
    )


def _refuse_unsafe_bind(host: str, insecure_no_token: bool) -> None:
    """Stop (one line, status 2) before anything starts when serving ``host`` would be unsafe
    (:func:`backend.serve.check_exposure`)."""
    from backend.api.settings import Settings
    from backend.serve import UnsafeBind, check_exposure

    try:
        check_exposure(host, Settings.from_env().token, insecure_no_token)
    except UnsafeBind as exc:
        raise ConceptEvoError(str(exc)) from None


def _serve_with_worker(host: str, port: int, device: str, insecure_no_token: bool = False) -> None:
    """Run a worker process beside the web server (this process) until interrupted; the URL is printed first."""
    import subprocess

    from backend.serve import page_url

    typer.echo(f"ConceptEvo: {page_url(host, port)}  (a worker runs alongside; Ctrl-C stops both)")
    worker = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--device", device])
    try:
        from backend.serve import serve as run_server

        run_server(host=host, port=port, open_browser=True, insecure_no_token=insecure_no_token)
    finally:
        worker.terminate()
        worker.wait(timeout=60)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    db: Annotated[
        str | None, typer.Option(help="Database URL or SQLite file (default $CONCEPTEVO_DB).")
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")] = False,
    insecure_no_token: Annotated[
        bool,
        typer.Option("--insecure-no-token", help="Allow a non-loopback --host without CONCEPTEVO_TOKEN."),
    ] = False,
) -> None:
    """Serve the web app and its HTTP API (OpenAPI at /docs). A non-loopback --host needs CONCEPTEVO_TOKEN
    (or --insecure-no-token).

    Example: conceptevo serve --port 8000 --open
    """
    from backend.serve import serve as run_server

    _refuse_unsafe_bind(host, insecure_no_token)
    run_server(host=host, port=port, db=db, open_browser=open_browser, insecure_no_token=insecure_no_token)


@app.command("worker")
def worker(
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (default: cuda when present).")] = "auto",
    once: Annotated[
        bool, typer.Option("--once", help="Exit when the queue has nothing left to claim.")
    ] = False,
    poll: Annotated[
        float, typer.Option(min=0.01, max=3600, help="Seconds between polls of an empty queue.")
    ] = 2.0,
    max_jobs: Annotated[int | None, typer.Option(min=1, help="Exit after this many jobs.")] = None,
) -> None:
    """Claim and run jobs (a progress bar per job; SIGTERM releases the current job cleanly). Exits with
    status 1 when a job it ran failed (and is not retried later in the same run).

    Example: conceptevo worker --device cuda:0
    """
    from collections import Counter

    from worker.runner import run_worker

    _check_device(device)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    from backend.store import data_dir
    from backend.store.datafolder import check_data_folder

    store = _store()
    check_data_folder(store, data_dir())  # on PostgreSQL: refuse a data folder the other workers do not share
    outcomes: dict[int, str] = {}
    done = run_worker(store, device=device, once=once, poll=poll, max_jobs=max_jobs, outcomes=outcomes)
    failed = Counter(outcomes.values())["failed"]
    if failed:
        typer.echo(
            f"worker finished {done} job(s); {failed} failed (see conceptevo jobs list --status failed)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"worker finished {done} job(s)")


def _check_device(device: str) -> None:
    """Refuse a device name torch would not parse, before anything starts (torch-free: ``demo`` must start fast).

    Args:
        device: ``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``.
    """
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise ConceptEvoError(f"device must be auto, cpu, mps, cuda or cuda:N; got {device!r}")


@app.command("add-dataset")
def add_dataset_command(
    root: Annotated[Path, typer.Argument(help="ImageFolder root: one sub-folder of images per class.")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the folder name).")] = None,
) -> None:
    """Register an image dataset (an ImageFolder); unreadable files are skipped and counted.

    Example: conceptevo add-dataset ~/data/flowers/train --name flowers
    """
    from worker.registration import add_dataset

    typer.echo(add_dataset(_store(), root, name).summary)


@app.command("add-run")
def add_run_command(
    name: Annotated[str, typer.Argument(help="Run name.")],
    arch: Annotated[str, typer.Option(help="torchvision name or package.module:factory.")],
    checkpoints: Annotated[Path, typer.Option(help="Folder with one checkpoint per epoch (epoch_3.pt, …).")],
    dataset: Annotated[str, typer.Option(help="Name of a registered dataset.")],
    layer: Annotated[
        list[str] | None, typer.Option(help="Dotted module name to analyse (repeatable).")
    ] = None,
    notes: Annotated[str, typer.Option(help="Free text.")] = "",
    model_kwargs: Annotated[
        str | None,
        typer.Option(help="JSON object of factory arguments besides num_classes, e.g. '{\"width\": 32}'."),
    ] = None,
) -> None:
    """Register a training run and its per-epoch checkpoints (the first and last are opened and checked
    against the architecture and the dataset's class count).

    Example: conceptevo add-run r18 --arch resnet18 --checkpoints runs/r18 --dataset flowers
    """
    from worker.registration import add_run

    kwargs = _parse_model_kwargs(model_kwargs)
    typer.echo(add_run(_store(), name, arch, checkpoints, dataset, layer or None, notes, kwargs).summary)


def _parse_model_kwargs(text: str | None) -> dict | None:
    """``--model-kwargs`` as a dict (None when not given); a one-line error for anything but a JSON object.

    Args:
        text: the option's value.

    Returns:
        The keyword arguments, or None.
    """
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConceptEvoError(
            f"--model-kwargs must be a JSON object like '{{\"width\": 32}}'; {exc}"
        ) from None
    if not isinstance(value, dict):
        raise ConceptEvoError(f"--model-kwargs must be a JSON object like '{{\"width\": 32}}', got {text!r}")
    return value


@app.command("watch")
def watch_command(
    folder: Annotated[Path, typer.Argument(help="Folder a trainer writes one checkpoint per epoch into.")],
    arch: Annotated[str, typer.Option(help="torchvision name or package.module:factory.")],
    dataset: Annotated[str, typer.Option(help="Registered dataset name, or an ImageFolder path.")],
    space: Annotated[
        list[str], typer.Option(help="Space to place the epochs in (repeatable; built if missing).")
    ],
    run: Annotated[str | None, typer.Option(help="Run name (default: the folder's name).")] = None,
    pattern: Annotated[
        str | None,
        typer.Option(help="Checkpoint file names, e.g. 'epoch_{epoch}.pt' (default: any epoch name)."),
    ] = None,
    layer: Annotated[
        list[str] | None, typer.Option(help="Dotted module name to analyse (repeatable).")
    ] = None,
    base_epoch: Annotated[
        int | None, typer.Option(help="Epoch that builds a missing space (default: first).")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="Reference run for the diversity alarm, e.g. healthy.")
    ] = None,
    poll: Annotated[float, typer.Option(help="Seconds between scans.")] = 2.0,
    settle: Annotated[
        float, typer.Option(help="Seconds a file must stay unchanged before it is read.")
    ] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Take what is complete now, then exit.")] = False,
) -> None:
    """Register and place every new checkpoint in FOLDER as it appears (once completely written); Ctrl-C stops.

    Example: conceptevo watch runs/r18 --arch resnet18 --dataset flowers --space flowers --reference healthy
    """
    import signal

    from worker.tracker import RunFeed
    from worker.watch import Watcher

    if poll <= 0 or settle < 0:
        raise ConceptEvoError("--poll must be positive and --settle not negative")
    name = run or folder.resolve().name
    feed = RunFeed(
        name,
        arch,
        dataset,
        space,
        folder,
        layer or None,
        base_epoch,
        reference,
        source="watch",
        store=_store(),
    )
    watcher = Watcher(folder, feed, pattern, settle_s=settle, poll_s=poll)
    feed.register()  # a bad dataset, architecture, layer or reference is said before watching starts

    def on_term(signum, frame) -> None:  # SIGTERM stops as cleanly as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    typer.echo(f"watching {watcher.folder} for run {name!r} (Ctrl-C stops)")
    fed = watcher.run(once=once)
    typer.echo(f"watch: {fed} epoch(s) registered and queued for run {name!r}")


def _spec(kind: str, params: dict):
    """The job's parameters through their spec (:mod:`backend.store.jobspec`, the models the API validates), so
    that the same request from the CLI and from the page is the same job; a bad value is a one-line error."""
    from backend.store.jobspec import JobParamsError, parse

    try:
        return parse(kind, {key: value for key, value in params.items() if value is not None})
    except JobParamsError as exc:
        raise ConceptEvoError(str(exc)) from None


def _enqueue(kind: str, params: dict) -> None:
    """Queue a job after the checks the API makes (:func:`backend.store.jobspec.check_references`: a class,
    run, snapshot or space that does not exist is refused now, in one line, not later in the worker). A result
    that exists already (and no ``--force``) queues nothing and says so (exit status 0)."""
    from backend.store.jobspec import AlreadyComputed, check_references, enqueue_job
    from worker.jobs import PRIORITY

    spec = _spec(kind, params)
    store = _store()
    try:
        with store.session(readonly=True) as session:
            check_references(session, spec)
    except AlreadyComputed as exc:
        typer.echo(str(exc))
        return
    job, created = enqueue_job(store, spec, priority=PRIORITY[kind])
    state = "queued" if created else f"already {job.status}"
    typer.echo(f"job {job.id} {kind} {json.dumps(job.params)}: {state}")


def _run_snapshots(store, run: str, spec: str | None) -> tuple[int, dict[int, int]]:
    """A run's id and ``{epoch: snapshot id}`` for the epochs in ``spec`` (``0-10``, ``1,3,5``; all if None)."""
    from backend.store import list_snapshots
    from worker.registration import run_id_of

    run_id = run_id_of(store, run)
    with store.session(readonly=True) as session:
        available = {s.epoch: s.id for s in list_snapshots(session, run_id)}
    if spec is None:
        return run_id, available
    wanted: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        try:
            wanted.update(range(int(low), int(high or low) + 1))
        except ValueError:
            raise ConceptEvoError(f"epochs must look like 0-10 or 1,3,5; got {spec!r}") from None
    missing = sorted(wanted - set(available))
    if missing:
        raise ConceptEvoError(f"run {run!r} has no checkpoint for epoch(s) {missing[:10]}")
    return run_id, {epoch: available[epoch] for epoch in sorted(wanted)}


@app.command("build-space")
def build_space_command(
    base: Annotated[str, typer.Option(help="Base snapshot as RUN@EPOCH.")],
    name: Annotated[str | None, typer.Option(help="Space name (default: RUN@EPOCH).")] = None,
    compute: Annotated[
        list[str] | None, typer.Option(help="Then place every epoch of this run (repeatable).")
    ] = None,
    k: Annotated[int | None, typer.Option(help="Stimuli per neuron (default 10).")] = None,
    dim: Annotated[int | None, typer.Option(help="Embedding dimension (default 30).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Neuron-embedding epochs (paper: 10,000).")] = None,
    lr: Annotated[float | None, typer.Option(help="Embedding learning rate (default 0.05).")] = None,
    negatives: Annotated[int | None, typer.Option(help="Negative neurons per pair (default 3).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per forward batch (default 128).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Rebuild a space of this name that exists (drops its results).")
    ] = False,
) -> None:
    """Queue building a unified semantic space on a base snapshot (an existing name needs --replace).

    Example: conceptevo build-space --base healthy@10 --name main --compute healthy --compute high-lr
    """
    from worker.registration import run_id_of

    run, _, epoch = base.rpartition("@")
    if not run or not epoch.isdigit():
        raise ConceptEvoError(f"--base must look like RUN@EPOCH, got {base!r}")
    store = _store()
    _, snapshots = _run_snapshots(store, run, epoch)
    params = {
        "base_snapshot_id": snapshots[int(epoch)],
        "name": name,
        "k": k,
        "dim": dim,
        "epochs": epochs,
        "lr": lr,
        "negatives": negatives,
        "batch_size": batch_size,
        "seed": seed,
        "replace": replace,
    }
    if compute:
        params["compute_runs"] = [run_id_of(store, other) for other in compute]
    _enqueue("build_space", params)


@app.command("compute")
def compute_command(
    run: Annotated[str, typer.Argument(help="Run name.")],
    space: Annotated[str, typer.Option(help="Space name.")],
    epochs: Annotated[str | None, typer.Option(help="Epochs, e.g. 0-10 or 1,3,5 (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute epochs already computed.")] = False,
    shards: Annotated[
        int,
        typer.Option(
            min=1,
            max=4096,
            help="Split each epoch's stimuli pass into this many jobs over image ranges, for several workers "
            "(GPUs, machines) to run in parallel; the result is exactly the one-pass result.",
        ),
    ] = 1,
) -> None:
    """Queue placing a run's epochs in a space (one still being built too: the jobs wait for it). Epochs
    already computed are skipped unless --force.

    Example: conceptevo compute high-lr --space demo --epochs 0-5 [--shards 4]
    """
    from backend.store import find_space, list_spaces
    from backend.store.jobspec import building_space

    store = _store()
    with store.session(readonly=True) as session:
        row = find_space(session, space)
        build = building_space(session, space) if row is None else None
        if row is None and build is None:
            names = ", ".join(other.name for other in list_spaces(session)) or "none"
            raise ConceptEvoError(
                f"no space {space!r} (spaces: {names}); build one with build-space --compute"
            )
        # A space still being built has no id yet: its jobs name it, and wait for the build job (deferred).
        where = {"space_id": row.id} if row is not None else {"space_name": space}
    if build is not None:
        typer.echo(
            f"space {space!r} is not built yet: these jobs wait for its build job {build.id} ({build.status})"
        )
    for snapshot_id in _run_snapshots(store, run, epochs)[1].values():
        _enqueue("add_snapshot", {**where, "snapshot_id": snapshot_id, "force": force, "shards": shards})


@app.command("importance")
def importance_command(
    run: Annotated[str, typer.Argument(help="Run name.")],
    start: Annotated[int, typer.Option("--from", help="Epoch t.")],
    end: Annotated[int, typer.Option("--to", help="Epoch t'.")],
    classes: Annotated[str | None, typer.Option(help="Class indices, e.g. 0,3,7 (default: all).")] = None,
    images: Annotated[int | None, typer.Option(help="Images per class (default 128, as the paper).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the choice of images (default 0).")] = None,
    revert: Annotated[bool, typer.Option(help="Also queue the reversion check (Table 1).")] = False,
    reps: Annotated[
        int | None, typer.Option(help="Reversion check: random bins averaged per layer (default 5).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute an importance already computed.")] = False,
) -> None:
    """Queue the importance of every neuron's evolution t → t' for classes (Eq 5–7); nothing when it is
    computed already, unless --force.

    Example: conceptevo importance healthy --from 2 --to 5 --classes 0,1
    """
    if start >= end:
        raise ConceptEvoError("--from must be an earlier epoch than --to")
    run_id, _ = _run_snapshots(_store(), run, f"{start},{end}")
    params: dict = {"run_id": run_id, "epoch_from": start, "epoch_to": end, "images": images, "seed": seed}
    if classes:
        try:
            params["classes"] = [int(c) for c in classes.split(",")]
        except ValueError:
            raise ConceptEvoError(f"classes must look like 0,3,7; got {classes!r}") from None
    _enqueue("importance", {**params, "force": force})
    if revert:
        _enqueue("revert_eval", {**params, "reps": reps})


@app.command("eval")
def eval_command(
    space: Annotated[str | None, typer.Option(help="Space name (default: the only space).")] = None,
    reps: Annotated[int | None, typer.Option(help="Reversion repetitions per stage (default 5).")] = None,
    images: Annotated[int | None, typer.Option(help="Reversion images per class (default 16).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every sample (default 0).")] = None,
) -> None:
    """Queue the evaluation report of a space: the paper's findings recomputed, in data/reports/<space>/.

    Example: conceptevo eval --space demo; then conceptevo worker --once
    """
    from backend.store import find_space, list_spaces

    with _store().session(readonly=True) as session:
        spaces = list_spaces(session)
        row = find_space(session, space) if space is not None else (spaces[0] if len(spaces) == 1 else None)
        if row is None:
            names = ", ".join(other.name for other in spaces) or "none"
            what = f"no space {space!r}" if space is not None else "several spaces; pick one with --space"
            raise ConceptEvoError(f"{what} (spaces: {names}); build one with build-space")
        space_id = row.id
    _enqueue("eval", {"space_id": space_id, "reps": reps, "images": images, "seed": seed})


@app.command("eval-seeds")
def eval_seeds_command(
    reports: Annotated[
        list[Path],
        typer.Argument(
            help="The eval report folders (data/reports/<space>) or results.json of 2 or more worlds."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            help="Space whose report folder receives the summary (default: the first report's space)."
        ),
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="A name per world, comma-separated, e.g. 0,1,2 (default: 1,2,…).")
    ] = None,
) -> None:
    """Combine several worlds' eval reports (e.g. the demo world built with seeds 0, 1, 2): mean ± std of each
    finding over the seeds and whether it holds for every seed, written as seeds.json + seeds.md into
    data/reports/<name>/, where the page's Findings view shows them.

    Example: conceptevo eval-seeds data/reports/demo data/seeds/1/reports/demo data/seeds/2/reports/demo --labels 0,1,2
    """
    from backend.store.evaluation import SEEDS_FILE, SEEDS_MARKDOWN, report_folder_name
    from worker.eval.report import plain
    from worker.eval.seeds import load_results, markdown, summarise
    from worker.files import write_text_atomically

    if len(reports) < 2:
        raise ConceptEvoError(
            f"eval-seeds: {len(reports)} report given; one run is not a finding — give 2 or more worlds' reports"
        )
    names = [label.strip() for label in labels.split(",")] if labels is not None else None
    if names is not None and (len(names) != len(reports) or not all(names)):
        raise ConceptEvoError(
            f"eval-seeds --labels: {len(names)} label(s) for {len(reports)} reports; give one per report, e.g. 0,1,2"
        )
    if names is not None and len(set(names)) != len(names):
        raise ConceptEvoError(
            f"eval-seeds --labels: {labels!r} repeats a label; give each world its own, e.g. 0,1,2"
        )
    if name is not None and report_folder_name(name) is None:
        raise ConceptEvoError(f"eval-seeds --name: {name!r} is not a space name; e.g. --name demo")
    results = [load_results(path) for path in reports]
    seen: dict[str, Path] = {}
    for path, result in zip(reports, results, strict=True):
        same = seen.setdefault(json.dumps(result, sort_keys=True), path)
        if same is not path:  # one world counted twice would make a finding "hold for every seed" by itself
            raise ConceptEvoError(
                f"eval-seeds: {path} is the same report as {same}; give each world's report once"
            )
    target_name = name if name is not None else str(results[0]["space"].get("name", ""))
    folder = report_folder_name(target_name)
    if folder is None:
        raise ConceptEvoError(
            f"eval-seeds: the first report's space name {target_name!r} is no folder name; give --name"
        )
    summary = plain(summarise(results, labels=names, sources=[str(path) for path in reports]))
    out = _data_dir() / "reports" / folder
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / SEEDS_FILE, json.dumps(summary, indent=1, allow_nan=False))
    write_text_atomically(out / SEEDS_MARKDOWN, markdown(summary))
    every = [f["title"] for f in summary["findings"] if f["holds_for_every_seed"]]
    typer.echo(
        f"wrote {out / SEEDS_FILE} and {SEEDS_MARKDOWN}: {len(every)} of {len(summary['findings'])} findings hold "
        f"for every one of {len(results)} seeds" + (f" ({'; '.join(every)})" if every else "")
    )


@app.command("rm")
def rm_command(
    kind: Annotated[str, typer.Argument(help="run, dataset or space.")],
    name: Annotated[str, typer.Argument(help="Its name.")],
) -> None:
    """Remove a run, dataset or space with everything computed from it (one transaction; refused while a job
    uses it or another object depends on it). Checkpoints and images are never touched.

    Example: conceptevo rm space old-space; conceptevo rm run typo-run
    """
    from backend.store import removal

    if kind not in removal.KINDS:
        raise ConceptEvoError(f"rm: cannot remove a {kind!r}; use rm run|dataset|space NAME")
    typer.echo(removal.remove(_store(), kind, name, _data_dir()).summary)  # type: ignore[arg-type]


@app.command("jobs")
def jobs_command(
    action: Annotated[str, typer.Argument(help="list, cancel or retry.")] = "list",
    job_id: Annotated[int | None, typer.Argument(help="Job id for cancel/retry.")] = None,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
) -> None:
    """List, cancel or retry jobs.

    Example: conceptevo jobs list --status failed; conceptevo jobs retry 12
    """
    from backend.store import queue

    store = _store()
    if action == "list":
        try:
            jobs = queue.list_jobs(store, status=status, limit=1000)
        except ValueError as exc:  # an unknown status: the store's message lists the valid ones
            raise ConceptEvoError(f"jobs --status: {exc}") from None
        for job in jobs:
            line = f"{job.id:>5} {job.status:<9} {job.kind:<12} {job.progress:>4.0%} {json.dumps(job.params)}"
            if job.error:
                line += f"  error: {job.error.splitlines()[0]}"
            elif job.message and job.status == "running":
                line += f"  {job.message}"
            typer.echo(line)
        return
    if action not in ("cancel", "retry") or job_id is None:
        raise ConceptEvoError("use: jobs list | jobs cancel ID | jobs retry ID")
    job = queue.cancel(store, job_id) if action == "cancel" else queue.retry(store, job_id)
    typer.echo(f"job {job.id}: {job.status}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app; every user error is one line on stderr and exit status 2.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``); tests pass them to run the CLI in-process.
    """
    sys.exit(run(argv))


@functools.cache
def _command():
    """The click command of :data:`app`, built once per process (typer rebuilds it on every call otherwise)."""
    return typer.main.get_command(app)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return its exit status, turning errors into one line on stderr.

    Bad option values found by the parser (a word for a number, an unknown choice, a missing option), the
    commands' own checks (:class:`~worker.errors.ConceptEvoError`) and the store's refusals (``StoreError``)
    all end the same way: ``error: …`` naming the command and the fix, status 2, no traceback.

    Args:
        argv: the arguments, without the program name.

    Returns:
        The exit status.
    """
    # typer vendors its own click; its exceptions are only reachable here (none is re-exported)
    from sqlalchemy.exc import DBAPIError
    from typer._click.exceptions import ClickException, UsageError

    from backend.store.errors import BUSY_HINT, StoreError, is_busy_error

    try:
        status = _command().main(args=argv, prog_name="conceptevo", standalone_mode=False)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "conceptevo"
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {command}: {message} (see {command} --help)", err=True)
        return 2
    except ClickException as exc:
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        return 2
    except (ConceptEvoError, StoreError) as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        return 2
    except DBAPIError as exc:  # a lock held elsewhere past the busy timeout: say so, not a traceback
        if not is_busy_error(exc):
            raise
        typer.echo(f"error: the database is busy ({str(exc.orig).splitlines()[0]}): {BUSY_HINT}", err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    main()
