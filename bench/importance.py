"""Benchmark of Eq 5–7 importance (issue 4): vectorised pass vs a plain forward and vs the literal method.

On the demo model — two checkpoints of ``data/demo/runs/healthy/`` when present, else two random inits —
and one class of 128 images (demo data when present, else random):

* ``forward_s``: one plain no-grad forward of the 128 images;
* ``importance_s``: :func:`worker.engine.importance.evolution_importance`, all neurons of all default layers;
* ``ratio`` = importance_s / forward_s (goal ≤ 5);
* ``literal_s``: the one-backward-per-layer-per-image method (forward of t keeping one layer, backward to it,
  forward of t', per image and layer; S for all channels of the layer from that one gradient), timed on a
  slice of images and extrapolated to 128 when ``literal_extrapolated`` is true;
* ``speedup`` = literal_s / importance_s (goal ≥ 20).

Runs alternate (A B A B …) and medians are reported. The last line printed is one JSON object.

Usage: ``python bench/importance.py [--quick] [--device cuda] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from worker.engine.hooks import LayerTaps  # noqa: E402
from worker.engine.importance import evolution_importance, sample_class_images  # noqa: E402
from worker.models.demo_net import demo_vgg  # noqa: E402
from worker.models.layers import default_layers  # noqa: E402

logger = logging.getLogger("bench.importance")
RUN_DIR = ROOT / "data" / "demo" / "runs" / "healthy"
DATA_DIR = ROOT / "data" / "demo" / "dataset"


def _load_models(device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    checkpoints = sorted(RUN_DIR.glob("epoch_*.pt"))
    if len(checkpoints) >= 2:
        picks = (checkpoints[len(checkpoints) // 3], checkpoints[-1])
        models = []
        for path in picks:
            model = demo_vgg(12)
            model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
            models.append(model.to(device).eval())
        return models[0], models[1], f"checkpoints {picks[0].name} -> {picks[1].name}"
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(demo_vgg(12).to(device).eval())
    return models[0], models[1], "random inits (no data/demo/runs/healthy checkpoints)"


def _load_images(n: int) -> tuple[torch.Tensor, int, str]:
    if (DATA_DIR / "train").is_dir():
        try:
            from worker.data.imagefolder import load_split

            dataset = load_split(DATA_DIR, "train")
            picked = sample_class_images(dataset.targets, 0, n=n, seed=0)
            images = dataset.to_float(torch.stack([dataset.load_uint8(int(i)) for i in picked]))
            return images, 0, f"demo class {dataset.class_names[0]!r} ({len(picked)} images)"
        except Exception as error:  # noqa: BLE001 - fall back to random images, and say so
            logger.warning("could not read demo images (%s); using random images", error)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 64, 64, generator=generator), 0, f"random images ({n})"


def literal_method(model_t, model_t2, layers, images: torch.Tensor, c: int) -> np.ndarray:
    """One backward per layer per image: S for every channel of that layer from its own gradient."""
    rows = []
    for i in range(images.shape[0]):
        x = images[i : i + 1]
        row = []
        for spec in layers:
            kept: dict[str, torch.Tensor] = {}

            def keep(name, output, kept=kept):
                kept[name] = output
                return output.clone()

            with torch.enable_grad(), LayerTaps(model_t, [spec.name], keep):
                logit = model_t(x)[0, c]
            (grad,) = torch.autograd.grad(logit, kept[spec.name])
            later: dict[str, torch.Tensor] = {}
            with (
                torch.no_grad(),
                LayerTaps(model_t2, [spec.name], lambda n, o, later=later: later.update({n: o.clone()})),
            ):
                model_t2(x)
            delta = later[spec.name] - kept[spec.name].detach()
            row.append((grad * delta).sum(dim=(2, 3))[0])
        rows.append(torch.cat(row))
    return torch.stack(rows).cpu().numpy()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and a smaller literal slice")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared box)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model_t, model_t2, models_source = _load_models(device)
    images, c, images_source = _load_images(128)
    images = images.to(device)
    layers = default_layers(model_t)
    reps = 3 if args.quick else 7
    literal_slice = 8 if args.quick else 32

    def forward() -> None:
        with torch.no_grad():
            model_t(images)

    def importance() -> None:
        evolution_importance(
            model_t, model_t2, layers, {c: images}, batch_size=args.batch_size, device=device
        )

    for fn in (forward, importance):  # warm-up
        fn()
    forward_times, importance_times = [], []
    for _ in range(reps):  # alternate A B A B
        for fn, times in ((forward, forward_times), (importance, importance_times)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)

    literal_times = []
    sliced = images[:literal_slice]
    for _ in range(max(1, reps // 2)):
        _sync(device)
        start = time.perf_counter()
        literal_method(model_t, model_t2, layers, sliced, c)
        _sync(device)
        literal_times.append(time.perf_counter() - start)
    literal_s = statistics.median(literal_times) * images.shape[0] / literal_slice

    # The two methods must agree on the slice. TF32 convolutions (CUDA's default) make a batch and a
    # single image differ by ~1e-3, so compare with TF32 off.
    from worker.engine.importance import batch_sensitivities

    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        S_literal = literal_method(model_t, model_t2, layers, sliced, c)
        S_fast = batch_sensitivities(model_t, model_t2, layers, sliced, [c], device=device)[0]
        S_fast = S_fast.detach().cpu().numpy()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    scale = float(np.abs(S_literal).max()) or 1.0
    agree = bool(np.allclose(S_fast, S_literal, rtol=1e-3, atol=1e-5 * scale))

    forward_s = statistics.median(forward_times)
    importance_s = statistics.median(importance_times)
    result = {
        "bench": "importance",
        "device": str(device),
        "threads": args.threads,
        "models": models_source,
        "images": images_source,
        "layers": len(layers),
        "neurons": sum(spec.channels for spec in layers),
        "reps": reps,
        "forward_s": round(forward_s, 5),
        "importance_s": round(importance_s, 5),
        "ratio": round(importance_s / forward_s, 3),
        "ratio_goal": 5,
        "literal_s": round(literal_s, 4),
        "literal_extrapolated": literal_slice < images.shape[0],
        "literal_slice_images": literal_slice,
        "speedup": round(literal_s / importance_s, 2),
        "speedup_goal": 20,
        "literal_agrees": agree,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
