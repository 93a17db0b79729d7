"""Patch images: served from the database row only, never outside the data directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.api.media import safe_media_path

from .conftest import World


def test_patch_image(client: TestClient, world: World) -> None:
    r = client.get("/api/patches/2/10/1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-cache"  # revalidated by ETag (issue 11, item 10)
    assert r.content == (world.data_dir / "patches/2/10_1.png").read_bytes()
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.get("/api/patches/2/10/7").json() == {"detail": "no patch 7 for neuron 10 at snapshot 2"}


@pytest.mark.parametrize(
    "url",
    [
        "/api/patches/../../secret.png",
        "/api/patches/%2e%2e/%2e%2e/secret.png",
        "/api/patches/..%2f..%2fsecret.png/1/0",
        "/api/patches/2/10/..%2f..%2f..%2fsecret.png",
        "/api/patches/2/10/%2Fetc%2Fpasswd",
        "/api/patches//etc/passwd",
        "/api/patches/2/10/0?file=../../secret.png",
        "/..%2f..%2fsecret.png",
        "/%2e%2e/%2e%2e/secret.png",
    ],
)
def test_traversal_attempts_do_not_leak(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert b"not for clients" not in r.content
    if "?file=" in url:  # the extra query parameter is ignored: the real patch 0 is served
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    else:
        assert r.status_code in (404, 422)


@pytest.fixture
def tampered_rows(world: World) -> Iterator[None]:
    """Patch rows pointing outside the data directory, written behind the store's back."""
    con = sqlite3.connect(world.db_path)
    bad = ["../secret.png", str(world.outside_file), "patches/../../secret.png", "patches/2/missing.png", ""]
    con.executemany(
        "INSERT INTO patches (snapshot_id, neuron_id, rank, image_idx, y0, x0, y1, x1, file) "
        "VALUES (3, 1, ?, 0, 0, 0, 1, 1, ?)",
        [(100 + i, f) for i, f in enumerate(bad)],
    )
    con.commit()
    yield
    con.execute("DELETE FROM patches WHERE snapshot_id = 3 AND neuron_id = 1 AND rank >= 100")
    con.commit()
    con.close()


def test_rows_pointing_outside_are_404(client: TestClient, tampered_rows: None) -> None:
    for rank in range(100, 105):
        r = client.get(f"/api/patches/3/1/{rank}")
        assert r.status_code == 404, rank
        assert b"not for clients" not in r.content
        assert r.json() == {"detail": f"the image of patch {rank} of neuron 1 at snapshot 3 is missing"}


def test_symlink_out_of_data_dir_is_refused(world: World) -> None:
    link = world.data_dir / "patches" / "link.png"
    link.symlink_to(world.outside_file)
    try:
        assert safe_media_path(world.data_dir, "patches/link.png") is None
        assert (
            safe_media_path(world.data_dir, "patches/2/10_1.png")
            == (world.data_dir / "patches/2/10_1.png").resolve()
        )
        assert safe_media_path(world.data_dir, "C:\\windows\\x.png") is None
        assert safe_media_path(world.data_dir, "patches/2/10_1.png\x00") is None
        assert safe_media_path(world.data_dir, "../api-world0/secret.png") is None
    finally:
        link.unlink()


def test_sprite_tiles(client: TestClient, world: World) -> None:
    """A worker sprite (k square tiles side by side): /sprite serves it whole, /{rank} serves tile rank."""
    import io

    from PIL import Image

    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]
    sprite = Image.new("RGB", (8 * len(colours), 8))
    for rank, colour in enumerate(colours):
        sprite.paste(colour, (rank * 8, 0, rank * 8 + 8, 8))
    path = world.data_dir / "patches" / "sprite-test.webp"
    sprite.save(path, format="WEBP", lossless=True)
    con = sqlite3.connect(world.db_path)
    try:
        old = con.execute("SELECT rank, file FROM patches WHERE snapshot_id=2 AND neuron_id=10").fetchall()
        con.execute(
            "UPDATE patches SET file=? WHERE snapshot_id=2 AND neuron_id=10", ("patches/sprite-test.webp",)
        )
        con.commit()
        whole = client.get("/api/patches/2/10/sprite")
        assert whole.status_code == 200 and whole.content == path.read_bytes()
        for rank, colour in enumerate(colours):
            tile = client.get(f"/api/patches/2/10/{rank}")
            assert tile.status_code == 200 and tile.headers["content-type"] == "image/webp"
            image = Image.open(io.BytesIO(tile.content)).convert("RGB")
            assert image.size == (8, 8) and image.getpixel((4, 4)) == colour
        assert client.get("/api/patches/2/10/5").status_code == 404
    finally:
        con.executemany(
            "UPDATE patches SET file=? WHERE snapshot_id=2 AND neuron_id=10 AND rank=?",
            [(file, rank) for rank, file in old],
        )
        con.commit()
        con.close()
