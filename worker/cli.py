"""The ``conceptevo`` command line.

Every command imports its heavy dependencies (torch, umap) lazily, so ``conceptevo serve`` and
``conceptevo --help`` start in well under a second. User errors (:class:`~worker.errors.ConceptEvoError`,
the store's ``StoreError``, and bad option values found once the command runs) are printed as one line
on stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

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
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
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
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
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
        int | None, typer.Option(help="Resize images to this side (default: as is).")
    ] = None,
    augment: Annotated[bool, typer.Option(help="Random crop + flip.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --out.")] = False,
) -> None:
    """Train any model on any ImageFolder with one checkpoint per epoch (the layout ConceptEvo reads).

    Example: conceptevo train ~/data/flowers --out runs/resnet18 --arch resnet18 --image-size 128 --epochs 20
    """
    from worker.training import TrainConfig
    from worker.training import train as run_training

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
    seed: Annotated[int, typer.Option(help="Random seed of the demo world.")] = 0,
    serve: Annotated[bool, typer.Option(help="Start a worker and the web app after queueing.")] = True,
    host: Annotated[str, typer.Option(help="Address to serve on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
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
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
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
    poll: Annotated[float, typer.Option(help="Seconds between polls of an empty queue.")] = 2.0,
    max_jobs: Annotated[int | None, typer.Option(help="Exit after this many jobs.")] = None,
) -> None:
    """Claim and run jobs (a progress bar per job; SIGTERM releases the current job cleanly).

    Example: conceptevo worker --device cuda:0
    """
    from worker.runner import run_worker

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    done = run_worker(_store(), device=device, once=once, poll=poll, max_jobs=max_jobs)
    typer.echo(f"worker finished {done} job(s)")


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
) -> None:
    """Register a training run and its per-epoch checkpoints.

    Example: conceptevo add-run r18 --arch resnet18 --checkpoints runs/r18 --dataset flowers
    """
    from worker.registration import add_run

    typer.echo(add_run(_store(), name, arch, checkpoints, dataset, layer or None, notes).summary)


def _spec(kind: str, params: dict):
    """The job's parameters through their spec (:mod:`backend.store.jobspec`, the models the API validates), so
    that the same request from the CLI and from the page is the same job; a bad value is a one-line error."""
    from backend.store.jobspec import JobParamsError, parse

    try:
        return parse(kind, {key: value for key, value in params.items() if value is not None})
    except JobParamsError as exc:
        raise ConceptEvoError(str(exc)) from None


def _enqueue(kind: str, params: dict) -> None:
    from backend.store.jobspec import enqueue_job
    from worker.jobs import PRIORITY

    spec = _spec(kind, params)
    job, created = enqueue_job(_store(), spec, priority=PRIORITY[kind])
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
) -> None:
    """Queue building a unified semantic space on a base snapshot.

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
    }
    if compute:
        params["compute_runs"] = [run_id_of(store, other) for other in compute]
    _enqueue("build_space", params)


@app.command("compute")
def compute_command(
    run: Annotated[str, typer.Argument(help="Run name.")],
    space: Annotated[str, typer.Option(help="Space name.")],
    epochs: Annotated[str | None, typer.Option(help="Epochs, e.g. 0-10 or 1,3,5 (default: all).")] = None,
) -> None:
    """Queue placing a run's epochs in a built space.

    Example: conceptevo compute high-lr --space demo --epochs 0-5
    """
    from backend.store import find_space, list_spaces

    store = _store()
    with store.session(readonly=True) as session:
        row = find_space(session, space)
        if row is None:
            names = ", ".join(other.name for other in list_spaces(session)) or "none"
            raise ConceptEvoError(
                f"no space {space!r} (spaces: {names}); build one with build-space --compute"
            )
        space_id = row.id
    for snapshot_id in _run_snapshots(store, run, epochs)[1].values():
        _enqueue("add_snapshot", {"space_id": space_id, "snapshot_id": snapshot_id})


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
) -> None:
    """Queue the importance of every neuron's evolution t → t' for classes (Eq 5–7).

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
    _enqueue("importance", params)
    if revert:
        _enqueue("revert_eval", {**params, "reps": reps})


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
        for job in queue.list_jobs(store, status=status, limit=1000):
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


def main() -> None:
    """Console-script entry: run the app, turning user errors into one-line messages."""
    from backend.store.errors import StoreError

    user_errors: tuple[type[BaseException], ...] = (ConceptEvoError, StoreError)
    try:
        app()
    except user_errors as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
