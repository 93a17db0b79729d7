"""Benchmark of the HTTP API at VGG16 scale.

Builds a synthetic store (4,224 neurons × 100 epochs × 3 runs in one space, plus one 100,000-neuron snapshot)
in a temporary SQLite file, serves it with uvicorn on 127.0.0.1 (a free port, separate process) and measures
with httpx: the points endpoint (binary) for 4,224-neuron snapshots (``p50_ms``, ``p99_ms``; goals ≤ 20 and
≤ 100 ms), for the 100k snapshot (``p50_100k_ms``, ``bytes_100k``), and one neuron's detail (``detail_p50_ms``).
The last line of output is one JSON object.

Usage: ``.venv/bin/python bench/api.py [--quick]`` (``--quick``: 5 epochs instead of 100).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.store.config import open_store  # noqa: E402
from tests.fixtures.synthetic import build_synthetic_store  # noqa: E402

log = logging.getLogger("bench.api")

SERVER = """
import sys, uvicorn
sys.path.insert(0, {repo!r})
from backend.api.app import create_app
from backend.api.settings import Settings
app = create_app(settings=Settings(db_url={db!r}, data_dir={data!r}))
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(client: httpx.Client, urls: list[str]) -> tuple[np.ndarray, int]:
    """Milliseconds per GET (each must answer 200) and the size of the last body."""
    out = []
    size = 0
    for url in urls:
        t = time.perf_counter()
        r = client.get(url)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
        size = len(r.content)
    return np.asarray(out), size


def main() -> None:
    """Build, serve, measure, print the JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 epochs per run instead of 100")
    parser.add_argument("--requests", type=int, default=300, help="requests for the 4,224-neuron points")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    n_epochs = 5 if args.quick else 100

    with tempfile.TemporaryDirectory(prefix="conceptevo-bench-") as tmp:
        root = Path(tmp)
        db = root / "bench.db"
        t0 = time.perf_counter()
        store = open_store(str(db))
        world = build_synthetic_store(
            store,
            n_neurons=4224,
            n_epochs=n_epochs,
            n_runs=3,
            extra_big_snapshot=100_000,
            seed=0,
            dim=30,
            k=10,
            n_images=1000,
            patch_epochs=[0, n_epochs - 1],
        )
        store.dispose()
        build_s = time.perf_counter() - t0
        log.info("built store in %.1f s (%.0f MB)", build_s, db.stat().st_size / 1e6)

        port = free_port()
        code = SERVER.format(repo=str(REPO), db=str(db), data=str(root / "data"), port=port)
        t_start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code])
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as client:
                while True:
                    try:
                        if client.get("/api/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if proc.poll() is not None or time.perf_counter() - t_start > 30:
                        raise RuntimeError("server did not start")
                    time.sleep(0.02)
                startup_s = time.perf_counter() - t_start
                sids = [s for run in world.snapshot_ids for s in run]
                urls = [
                    f"/api/spaces/{world.space_id}/snapshots/{sids[i % len(sids)]}/points"
                    for i in range(args.requests)
                ]
                timed(client, urls[:20])  # warm-up
                small, size_small = timed(client, urls)
                big_url = f"/api/spaces/{world.space_id}/snapshots/{world.big_snapshot_id}/points"
                timed(client, [big_url] * 3)
                big, size_big = timed(client, [big_url] * 30)
                nid = world.neuron_ids[1][2000]
                sid = world.snapshot_ids[1][-1]
                detail_url = f"/api/spaces/{world.space_id}/snapshots/{sid}/neurons/{nid}"
                timed(client, [detail_url] * 5)
                detail, _ = timed(client, [detail_url] * 100)
        finally:
            proc.terminate()
            proc.wait(10)

    result = {
        "neurons": 4224,
        "epochs": n_epochs,
        "runs": 3,
        "states": 4224 * n_epochs * 3 + 100_000,
        "build_s": round(build_s, 1),
        "startup_s": round(startup_s, 2),
        "p50_ms": round(float(np.percentile(small, 50)), 2),
        "p99_ms": round(float(np.percentile(small, 99)), 2),
        "bytes_4224": size_small,
        "p50_100k_ms": round(float(np.percentile(big, 50)), 2),
        "bytes_100k": size_big,
        "detail_p50_ms": round(float(np.percentile(detail, 50)), 2),
        "goals_met": bool(np.percentile(small, 50) <= 20 and np.percentile(small, 99) <= 100),
    }
    print(json.dumps(result))  # noqa: T201 - the bench's result line


if __name__ == "__main__":
    main()
