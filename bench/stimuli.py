"""Benchmark: the stimuli pass vs a plain no-grad forward over the same images (issue 3, DESIGN.md §6).

Runs on the demo model (DemoVGG, random init — timing does not need a trained checkpoint) and
demo-like data: random 64×64 images in a pre-built tensor, so that image decoding does not dominate.
The two passes use the same batches, batch size and thread count and are run alternately (A B A B …);
the figures are medians.

Peak memory is measured in fresh subprocesses (``resource.getrusage`` max RSS) for 1× and 4× the
images, generated batch by batch from a seeded generator so that the input itself does not count.

Usage: ``.venv/bin/python bench/stimuli.py [--quick] [--device cuda]`` (the timed passes run on ``--device``,
images already there; the memory children stay on the CPU, where max RSS means something). The last line printed is one JSON object:
``forward_s``, ``stimuli_s``, ``ratio`` (goal ≤ 1.05, issue 13), ``stimuli_full_s`` / ``ratio_full`` (the same
without stopping each forward after the last analysed layer), the same as process CPU time
(``*_cpu_s``, ``ratio_cpu``, ``ratio_full_cpu``: steadier on a shared machine), ``mem_1x_mb``, ``mem_4x_mb``,
``mem_ratio`` (goal ≤ 1.1), and the settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.allocator import keep_freed_memory  # noqa: E402
from worker.engine.stimuli import compute_stimuli  # noqa: E402
from worker.models.demo_net import demo_vgg  # noqa: E402
from worker.models.layers import default_layers  # noqa: E402

logger = logging.getLogger("bench.stimuli")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return demo_vgg().eval()


def _generated_batches(n_images: int, batch_size: int, seed: int = 0):
    """Random 64×64 images made batch by batch (nothing kept), from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, n_images, batch_size):
        yield torch.randn(min(batch_size, n_images - start), 3, 64, 64, generator=generator)


def _forward(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for batch in batches:
            model(batch)


def _memory_child(n_images: int, batch_size: int) -> None:
    model = _model()
    stimuli = compute_stimuli(model, default_layers(model), _generated_batches(n_images, batch_size), k=10)
    assert stimuli.n_images == n_images
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _child_maxrss(n_images: int, batch_size: int, threads: int) -> float:
    command = [sys.executable, __file__, "--mem-child", str(n_images), "--batch-size", str(batch_size)]
    command += ["--threads", str(threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(output.strip().splitlines()[-1])["maxrss_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repetitions")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] for the timed passes")
    parser.add_argument("--mem-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the worker that runs the stimuli pass does (worker/allocator.py)
    if args.mem_child is not None:
        _memory_child(args.mem_child, args.batch_size)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    n_images = args.images or (512 if args.quick else 2048)
    repeats = args.repeats or (3 if args.quick else 5)

    device = torch.device(args.device)
    model = _model().to(device)
    layers = default_layers(model)
    batches = [batch.to(device) for batch in _generated_batches(n_images, args.batch_size)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    _forward(model, batches[:2])  # warm-up
    times: dict[str, list[float]] = {"forward": [], "stimuli": [], "stimuli_full": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    for repeat in range(repeats):
        for name in times:  # A B C A B C …
            started, started_cpu = time.perf_counter(), time.process_time()
            if name == "forward":
                _forward(model, batches)
            else:
                compute_stimuli(model, layers, batches, k=10, stop_early=name == "stimuli")
            sync()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
        logger.info("repeat %d: %s", repeat, {name: round(values[-1], 3) for name, values in times.items()})
    forward_s, stimuli_s, full_s = (statistics.median(times[name]) for name in times)
    forward_cpu, stimuli_cpu, full_cpu = (statistics.median(cpu[name]) for name in times)

    mem_images = max(n_images // 2, 256)
    mem_1x = _child_maxrss(mem_images, args.batch_size, args.threads)
    mem_4x = _child_maxrss(4 * mem_images, args.batch_size, args.threads)
    result = {
        "bench": "stimuli",
        "device": str(device),
        "images": n_images,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": repeats,
        "neurons": sum(spec.channels for spec in layers),
        "forward_s": round(forward_s, 4),
        "stimuli_s": round(stimuli_s, 4),
        "ratio": round(stimuli_s / forward_s, 4),
        "stimuli_full_s": round(full_s, 4),
        "ratio_full": round(full_s / forward_s, 4),
        "forward_cpu_s": round(forward_cpu, 4),
        "stimuli_cpu_s": round(stimuli_cpu, 4),
        "ratio_cpu": round(stimuli_cpu / forward_cpu, 4),
        "ratio_full_cpu": round(full_cpu / forward_cpu, 4),
        "mem_images_1x": mem_images,
        "mem_1x_mb": round(mem_1x, 1),
        "mem_4x_mb": round(mem_4x, 1),
        "mem_ratio": round(mem_4x / mem_1x, 4),
        "goal_ratio": 1.05,
        "goal_mem_ratio": 1.1,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
