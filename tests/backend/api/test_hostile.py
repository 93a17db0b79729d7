"""What a hostile tester sent (issue 11.2, 11.3): non-finite numbers in JSON bodies, unreadable patch files.

Each answer must be a clean 4xx — never a 500, never a traceback in the log.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import (
    open_store,
    register_dataset,
    register_layers,
    register_run,
    run_neurons,
    upsert_snapshot,
    write_patches,
)

# -------------------------------------------------------------------------------------------- item 2
NON_FINITE_BODIES = [
    b'{"kind": "demo", "priority": NaN}',
    b'{"kind": "demo", "priority": Infinity}',
    b'{"kind": "demo", "priority": -Infinity}',
    b'{"kind": "demo", "priority": 1e999}',
    b'{"kind": "demo", "priority": -1e999}',
    b'{"kind": "demo", "params": {"x": NaN}}',
    b'{"kind": "build_space", "params": {"base_snapshot_id": 1, "lr": NaN}}',
    b'{"kind": "importance", "params": {"run_id": 1, "epoch_from": 0, "epoch_to": 1, "classes": [1e999]}}',
    b"[NaN]",
]


def _no_tracebacks(records: list[logging.LogRecord]) -> None:
    bad = [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


@pytest.mark.parametrize("body", NON_FINITE_BODIES)
def test_non_finite_json_numbers_are_a_clean_422(make_client, caplog, body: bytes) -> None:
    c = make_client()
    caplog.set_level(logging.INFO)
    r = c.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail, detail  # the documented HTTPValidationError shape
    assert "finite" in detail[0]["msg"]
    assert {"loc", "msg", "type"} <= set(detail[0])
    assert c.app.state.internal_errors == 0
    _no_tracebacks(caplog.records)


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_non_finite_numbers_refused_whatever_the_json_content_type(make_client, caplog, content_type) -> None:
    c = make_client()
    caplog.set_level(logging.INFO)
    headers = {"content-type": content_type} if content_type else {}
    r = c.post("/api/jobs", content=b'{"kind": "demo", "priority": NaN}', headers=headers)
    assert r.status_code in (415, 422), r.text
    assert c.app.state.internal_errors == 0
    _no_tracebacks(caplog.records)


def test_huge_integers_and_non_finite_query_values_are_clean(make_client, caplog) -> None:
    c = make_client()
    caplog.set_level(logging.INFO)
    r = c.post(
        "/api/jobs",
        content=b'{"kind": "demo", "priority": ' + b"9" * 5000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text[:200]
    for url in ("/api/jobs?limit=NaN", "/api/jobs?limit=inf", "/api/runs/1e999"):
        r = c.get(url)
        assert r.status_code == 422, (url, r.text[:200])
        r.json()
    assert c.app.state.internal_errors == 0
    _no_tracebacks(caplog.records)


def test_finite_numbers_and_plain_text_still_pass(make_client, caplog) -> None:
    c = make_client()
    caplog.set_level(logging.INFO)
    # a string "NaN" is not a number: an ordinary validation error, echoed back
    r = c.post("/api/jobs", json={"kind": "demo", "priority": "NaN"})
    assert r.status_code == 422 and r.json()["detail"][0]["input"] == "NaN"
    # invalid JSON is still FastAPI's own answer
    r = c.post("/api/jobs", content=b'{"kind": ', headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)
    # deep nesting must not crash the parser
    deep = b"[" * 200_000 + b"]" * 200_000
    r = c.post("/api/jobs", content=deep, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text[:200]
    assert c.app.state.internal_errors == 0
    _no_tracebacks(caplog.records)


# -------------------------------------------------------------------------------------------- item 3
@dataclass
class PatchWorld:
    client: TestClient
    data_dir: Path
    snapshot_id: int
    neuron_ids: list[int]


def _png_header_bomb(path: Path, width: int, height: int) -> None:
    """A valid 1-bit PNG of ``width × height`` all-black pixels (tiny on disk, huge once decoded)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def patch_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatchWorld]:
    root = tmp_path_factory.mktemp("hostile-patches")
    data = root / "data"
    (data / "patches").mkdir(parents=True)
    store = open_store(str(root / "db.sqlite"))
    with store.session() as s:
        ds = register_dataset(s, "d", str(root / "images"), ["a", "b"], [("x.png", 0), ("y.png", 1)])
        run = register_run(s, "r", "demo_net", str(root / "ckpt"), ds.id, 2)
        register_layers(s, run.id, [("conv", 6)])
        snap = upsert_snapshot(s, run.id, 0, str(root / "ckpt" / "e0.pt"))
        neurons = [int(n) for n in run_neurons(s, run.id).neuron_id]
        files = {
            neurons[0]: "patches/good.webp",
            neurons[1]: "patches/not-an-image.png",
            neurons[2]: "patches/bomb-15000.png",
            neurons[3]: "patches/big-9000.png",
            neurons[4]: "patches/" + "n" * 300 + ".png",
            neurons[5]: "patches/truncated.webp",
        }
        write_patches(
            s,
            snap.id,
            [{"neuron_id": n, "boxes": [(0, 0, 0, 4, 4)] * 2, "file": f} for n, f in files.items()],
        )
        snapshot_id = snap.id
    Image.new("RGB", (128, 64), (200, 10, 10)).save(data / "patches" / "good.webp")
    (data / "patches" / "not-an-image.png").write_bytes(b"<html>surprise</html>" * 10)
    _png_header_bomb(data / "patches" / "bomb-15000.png", 15_000, 15_000)
    _png_header_bomb(data / "patches" / "big-9000.png", 9_000, 9_000)
    good = (data / "patches" / "good.webp").read_bytes()
    (data / "patches" / "truncated.webp").write_bytes(good[: len(good) // 2])
    app = create_app(store, Settings(data_dir=data, frontend_dist=root / "no-dist"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield PatchWorld(client, data, snapshot_id, neurons)
    store.dispose()


def test_a_good_sprite_still_serves_its_tiles(patch_world: PatchWorld) -> None:
    w = patch_world
    r = w.client.get(f"/api/patches/{w.snapshot_id}/{w.neuron_ids[0]}/1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    r = w.client.get(f"/api/patches/{w.snapshot_id}/{w.neuron_ids[0]}/sprite")
    assert r.status_code == 200


@pytest.mark.parametrize("which", [1, 2, 3, 4, 5], ids=["not-image", "bomb", "big", "long-name", "truncated"])
@pytest.mark.parametrize("what", ["0", "1", "sprite"])
def test_unreadable_patch_files_are_404_logged_once_never_decoded(
    patch_world: PatchWorld, caplog, monkeypatch, which: int, what: str
) -> None:
    w = patch_world
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy(self):  # noqa: ANN001, ANN202
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    caplog.set_level(logging.INFO)
    url = f"/api/patches/{w.snapshot_id}/{w.neuron_ids[which]}/{what}"
    for _ in range(2):
        r = w.client.get(url)
        assert r.status_code in (404, 422), (url, r.status_code, r.text[:200])
        assert r.json()["detail"]
        assert "/" not in r.json()["detail"].replace("/api/", "")  # no server path in the answer
    assert all(width * height <= 4_194_304 for width, height in decoded), decoded
    assert w.client.app.state.internal_errors == 0
    _no_tracebacks(caplog.records)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 1, [r.getMessage() for r in warnings]
