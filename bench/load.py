"""Load test of the real server while a worker writes: no 5xx, no "database is locked", latency percentiles.

Builds a synthetic world (2 runs × 4 epochs × 512 neurons in one space, patch files on disk) in a temporary data
directory, starts ``conceptevo serve`` on 127.0.0.1 (a free port, the production uvicorn settings) and a *writer*
process that works the job queue like a worker: it claims jobs, heartbeats, and in each job's finishing
transaction rewrites one snapshot's neuron states and points blob (the rows the readers read). Meanwhile N clients
(asyncio, keep-alive, a minimal HTTP/1.1 client so that the load generator leaves the 2 cores to the server) send a mix of the page's requests — points (binary), neuron details, patches, sprites,
rankings, metrics, job lists — and a few ``POST /api/jobs`` (write transactions of their own) for D seconds.

Reports requests, requests/s, p50/p90/p99 latency overall and per endpoint, status counts, 5xx count, answers or
server log lines mentioning "locked", the writer's transactions, and the machine's load average (this machine may
be shared: compare p99 with the load). Exit status 1 if any 5xx or "locked" was seen.
The last line of output is one JSON object.

Usage: ``.venv/bin/python bench/load.py [--quick] [--clients 50] [--seconds 30]``
(``--quick``: 10 clients for 5 seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from backend.store import queue, writes  # noqa: E402
from backend.store.config import open_store  # noqa: E402
from tests.datadir import free_port  # noqa: E402
from tests.fixtures.synthetic import build_synthetic_store  # noqa: E402

N_NEURONS = 512
N_EPOCHS = 4
N_RUNS = 2
PATCH_EPOCHS = [0, 1]


# ------------------------------------------------------------------------------------------ the writer
def writer_main(db: str, space_id: int, snapshots: list[int], neurons: list[int], stop_file: str) -> None:
    """Work the queue like a worker until ``stop_file`` exists: claim a job, heartbeat, and in its finishing
    transaction rewrite one snapshot's states (a few ms holding the write lock). Prints its counts as JSON."""
    store = open_store(db)
    rng = np.random.default_rng(1)
    worker_id = queue.default_worker_id()
    jobs = beats = 0
    errors: list[str] = []
    i = 0
    while not os.path.exists(stop_file):
        try:
            queue.enqueue(store, "bench_write", {"i": i})
            job = queue.claim(store, worker_id, kinds=["bench_write"], lease_s=30)
            if job is None:
                continue
            for _ in range(3):
                beats += queue.heartbeat(
                    store, job.id, worker_id, progress=0.5, message="writing", lease_s=30
                )
            snapshot_id = snapshots[i % len(snapshots)]
            ids = np.asarray(neurons, dtype=np.int64)
            n, k, dim = len(ids), 3, 8
            with queue.finishing(store, job.id, worker_id, result={"i": i}) as session:
                writes.write_snapshot_in_space(
                    session,
                    space_id,
                    snapshot_id,
                    ids,
                    rng.integers(0, 40, size=(n, k)),
                    rng.random((n, k), dtype=np.float32),
                    rng.normal(size=(n, dim)).astype(np.float32),
                    rng.normal(size=(n, 2)).astype(np.float32),
                    coverage=1.0,
                    diversity=1.0,
                    movement=None,
                )
            jobs += 1
            if jobs == 1:
                print("ready", flush=True)  # noqa: T201
        except Exception as exc:  # noqa: BLE001 - counted and reported, the writer goes on
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        i += 1
        time.sleep(0.01)
    store.dispose()
    print(json.dumps({"jobs": jobs, "heartbeats": beats, "errors": errors[:5], "n_errors": len(errors)}))  # noqa: T201


# ------------------------------------------------------------------------------------------ the clients
def request_mix(world, space_id: int) -> list[tuple[str, str, str, dict | None]]:
    """(name, method, url, json body) of the page's requests over the synthetic world, with repetition as weight."""
    mix: list[tuple[str, str, str, dict | None]] = []
    for r, snaps in enumerate(world.snapshot_ids):
        run_id = world.run_ids[r]
        for e, snap in enumerate(snaps):
            neuron = world.neuron_ids[r][(7 * e + 3) % N_NEURONS]
            mix += [("points", "GET", f"/api/spaces/{space_id}/snapshots/{snap}/points", None)] * 3
            mix.append(("neuron", "GET", f"/api/spaces/{space_id}/snapshots/{snap}/neurons/{neuron}", None))
            mix.append(("patches", "GET", f"/api/neurons/{neuron}/snapshots/{snap}/patches", None))
            if e in PATCH_EPOCHS:
                mix.append(("sprite", "GET", f"/api/patches/{snap}/{neuron}/0", None))
        mix.append(("metrics", "GET", f"/api/runs/{run_id}/metrics", None))
        mix.append(
            (
                "ranking",
                "GET",
                f"/api/importance/ranking?run_id={run_id}&epoch_from=0&epoch_to={N_EPOCHS - 1}&class_idx=0",
                None,
            )
        )
        mix.append(
            (
                "post_job",
                "POST",
                "/api/jobs",
                {
                    "kind": "importance",
                    "params": {"run_id": run_id, "epoch_from": 0, "epoch_to": N_EPOCHS - 1},
                },
            )
        )
    mix += [
        ("health", "GET", "/api/health", None),
        ("runs", "GET", "/api/runs", None),
        ("spaces", "GET", "/api/spaces", None),
        ("jobs", "GET", "/api/jobs?limit=20", None),
    ]
    return mix


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: a load generator on the same 2 cores as the server
    must spend as little CPU per request as it can (httpx costs several times more)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, url: str, body: bytes | None) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = f"{method} {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                content += chunk[:-2]
        else:
            content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def client_loop(port: int, mix, deadline: float, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    conn = Connection(port)
    while time.monotonic() < deadline:
        name, method, url, body = rng.choice(mix)
        payload = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        try:
            status, headers, content = await conn.request(method, url, payload)
            kind = headers.get("content-type", "")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            out["transport_errors"].append(f"{name}: {type(exc).__name__}: {exc}"[:200])
            await conn.close()
            continue
        elapsed = (time.perf_counter() - started) * 1000
        out["latency"][name].append(elapsed)
        out["status"][status] += 1
        if status >= 500:
            out["5xx"].append(f"{method} {url}: {status} {content[:200]!r}")
        if "json" in kind and b"locked" in content.lower():
            out["locked"].append(f"{method} {url}: {status} {content[:200]!r}")
    await conn.close()


async def run_clients(port: int, mix, clients: int, seconds: float) -> dict:
    out: dict = {
        "latency": defaultdict(list),
        "status": Counter(),
        "5xx": [],
        "locked": [],
        "transport_errors": [],
    }
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client_loop(port, mix, deadline, i, out) for i in range(clients)))
    return out


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else 0.0


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 clients for 5 seconds")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=None, help="duration of the load (default 30)")
    parser.add_argument("--writer", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        db, space_id, snapshots, neurons, stop_file = args.writer
        writer_main(db, int(space_id), json.loads(snapshots), json.loads(neurons), stop_file)
        return 0
    clients = args.clients or (10 if args.quick else 50)
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="conceptevo-load-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        db = str(data / "conceptevo.db")
        t0 = time.perf_counter()
        store = open_store(db)
        world = build_synthetic_store(
            store,
            n_neurons=N_NEURONS,
            n_epochs=N_EPOCHS,
            n_runs=N_RUNS,
            data_dir=data,
            patch_epochs=PATCH_EPOCHS,
        )
        store.dispose()
        setup_s = time.perf_counter() - t0
        env = {**os.environ, "CONCEPTEVO_DATA": str(data), "CONCEPTEVO_DB": db, "PYTHONUNBUFFERED": "1"}
        env.pop("CONCEPTEVO_TOKEN", None)
        port = free_port()
        server_log = root / "server.log"
        with server_log.open("w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        stop_file = root / "stop"
        writer = None
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{server_log.read_text()[-2000:]}")
                time.sleep(0.2)
            writer = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--writer",
                    db,
                    str(world.space_id),
                    json.dumps(world.snapshot_ids[0]),
                    json.dumps([int(n) for n in world.neuron_ids[0]]),
                    str(stop_file),
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            if writer.stdout is None or writer.stdout.readline().strip() != "ready":
                raise SystemExit("the writer did not start")
            mix = request_mix(world, world.space_id)
            cpu_before = os.times()
            out = asyncio.run(run_clients(port, mix, clients, seconds))
            client_cpu_s = (os.times().user - cpu_before.user) + (os.times().system - cpu_before.system)
        finally:
            stop_file.touch()
            writer_out = writer.communicate(timeout=60)[0] if writer is not None else ""
            server.terminate()
            server.wait(timeout=30)
        log_text = server_log.read_text()

    writer_stats = json.loads(writer_out.strip().splitlines()[-1]) if writer_out.strip() else {}
    all_ms = [ms for values in out["latency"].values() for ms in values]
    total = len(all_ms)
    per_endpoint = {
        name: {"n": len(v), "p50_ms": pct(v, 50), "p99_ms": pct(v, 99)}
        for name, v in sorted(out["latency"].items())
    }
    locked_log = [line for line in log_text.splitlines() if "locked" in line.lower()]
    tracebacks = log_text.count("Traceback")
    for name, stats in per_endpoint.items():
        print(f"  {name:<9} n={stats['n']:>6}  p50 {stats['p50_ms']:>7} ms  p99 {stats['p99_ms']:>7} ms")  # noqa: T201
    for line in (out["5xx"] + out["locked"] + locked_log + out["transport_errors"])[:10]:
        print(f"  problem: {line}")  # noqa: T201
    result = {
        "clients": clients,
        "seconds": seconds,
        "requests": total,
        "rps": round(total / seconds, 1),
        "p50_ms": pct(all_ms, 50),
        "p90_ms": pct(all_ms, 90),
        "p99_ms": pct(all_ms, 99),
        "status": {str(k): v for k, v in sorted(out["status"].items())},
        "n_5xx": len(out["5xx"]),
        "n_locked": len(out["locked"]) + len(locked_log),
        "transport_errors": len(out["transport_errors"]),
        "server_tracebacks": tracebacks,
        "writer_jobs": writer_stats.get("jobs"),
        "writer_heartbeats": writer_stats.get("heartbeats"),
        "writer_errors": writer_stats.get("n_errors"),
        "client_cpu_s": round(client_cpu_s, 1),
        "neurons_per_snapshot": N_NEURONS,
        "setup_s": round(setup_s, 1),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    ok = not (
        result["n_5xx"]
        or result["n_locked"]
        or result["transport_errors"]
        or tracebacks
        or result["writer_errors"]
    )
    result["ok"] = ok
    print(json.dumps(result))  # noqa: T201
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
