"""Patch images: served from the database row only, never outside the data directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.api.media import safe_media_path

from .conftest import World


def test_patch_image(client: TestClient, world: World) -> None:
    """A neuron's sprite (the fixture's PNG of k tiles, one colour per rank) whole, and one tile cut from it."""
    import io

    from PIL import Image

    whole = client.get("/api/patches/2/10/sprite")
    assert whole.status_code == 200 and whole.headers["content-type"] == "image/png"
    assert whole.content == (world.data_dir / "patches/2/10.png").read_bytes()
    r = client.get("/api/patches/2/10/1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == "no-cache"  # revalidated by ETag (issue 11, item 10)
    tile = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert tile.size == (4, 4) and tile.getpixel((2, 2)) == ((10 * 37) % 256, 80, 2)
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
        assert r.status_code == 200 and r.content.startswith(b"RIFF")  # a WEBP tile
    else:
        assert r.status_code in (404, 422)


def test_rows_pointing_outside_are_404(client: TestClient, world: World) -> None:
    """Patch set rows naming files outside the data directory, written behind the store's back."""
    bad = ["../secret.png", str(world.outside_file), "patches/../../secret.png", "patches/2/missing.png", ""]
    con = sqlite3.connect(world.db_path)
    (old,) = con.execute("SELECT file FROM patch_sets WHERE snapshot_id = 3 AND neuron_id = 1").fetchone()
    try:
        for file in bad:
            con.execute("UPDATE patch_sets SET file = ? WHERE snapshot_id = 3 AND neuron_id = 1", (file,))
            con.commit()
            for rank, url in ((1, "/api/patches/3/1/1"), (0, "/api/patches/3/1/sprite")):
                r = client.get(url)
                assert r.status_code == 404, (file, url)
                assert b"not for clients" not in r.content
                assert r.json() == {
                    "detail": f"the image of patch {rank} of neuron 1 at snapshot 3 is missing"
                }
    finally:
        con.execute("UPDATE patch_sets SET file = ? WHERE snapshot_id = 3 AND neuron_id = 1", (old,))
        con.commit()
        con.close()


def test_symlink_out_of_data_dir_is_refused(world: World) -> None:
    link = world.data_dir / "patches" / "link.png"
    link.symlink_to(world.outside_file)
    try:
        assert safe_media_path(world.data_dir, "patches/link.png") is None
        assert (
            safe_media_path(world.data_dir, "patches/2/10.png")
            == (world.data_dir / "patches/2/10.png").resolve()
        )
        assert safe_media_path(world.data_dir, "C:\\windows\\x.png") is None
        assert safe_media_path(world.data_dir, "patches/2/10.png\x00") is None
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
        (old,) = con.execute("SELECT file FROM patch_sets WHERE snapshot_id=2 AND neuron_id=10").fetchone()
        con.execute(
            "UPDATE patch_sets SET file=? WHERE snapshot_id=2 AND neuron_id=10", ("patches/sprite-test.webp",)
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
        con.execute("UPDATE patch_sets SET file=? WHERE snapshot_id=2 AND neuron_id=10", (old,))
        con.commit()
        con.close()


@pytest.fixture
def packed_neuron(world: World) -> Iterator[tuple[bytes, bytes]]:
    """Neuron 10 at snapshot 2 moved into a pack (schema v5): two JPEG sprites of 3 square tiles one after
    another in ``patches/s2/test-0000.pack``, the neuron's rows naming the second one's byte range."""
    import io

    from PIL import Image

    sprites = []
    for shade in (40, 0):
        sprite = Image.new("RGB", (48, 16))
        for rank, colour in enumerate([(200, shade, 10), (10, 200, shade), (shade, 10, 200)]):
            sprite.paste(colour, (rank * 16, 0, rank * 16 + 16, 16))
        buffer = io.BytesIO()
        sprite.save(buffer, format="JPEG", quality=95)
        sprites.append(buffer.getvalue())
    pack = world.data_dir / "patches" / "s2" / "test-0000.pack"
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_bytes(b"".join(sprites))
    con = sqlite3.connect(world.db_path)
    (old,) = con.execute("SELECT file FROM patch_sets WHERE snapshot_id=2 AND neuron_id=10").fetchone()
    con.execute(
        "UPDATE patch_sets SET file=?, byte_offset=?, byte_length=? WHERE snapshot_id=2 AND neuron_id=10",
        ("patches/s2/test-0000.pack", len(sprites[0]), len(sprites[1])),
    )
    con.commit()
    try:
        yield sprites[0], sprites[1]
    finally:
        con.execute(
            "UPDATE patch_sets SET file=?, byte_offset=NULL, byte_length=NULL WHERE snapshot_id=2 AND neuron_id=10",
            (old,),
        )
        con.commit()
        con.close()
        pack.unlink()


def test_a_packed_sprite_is_its_byte_range(client: TestClient, world: World, packed_neuron) -> None:
    """/sprite serves exactly the row's bytes of the pack, its ETag revalidates, and tiles are cut from it."""
    import io

    from PIL import Image

    _, mine = packed_neuron
    whole = client.get("/api/patches/2/10/sprite")
    assert whole.status_code == 200 and whole.headers["content-type"] == "image/jpeg"
    assert whole.content == mine
    assert (
        client.get("/api/patches/2/10/sprite", headers={"If-None-Match": whole.headers["etag"]}).status_code
        == 304
    )
    etags = set()
    for rank, colour in enumerate([(200, 0, 10), (10, 200, 0), (0, 10, 200)]):
        tile = client.get(f"/api/patches/2/10/{rank}")
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/webp"
        image = Image.open(io.BytesIO(tile.content)).convert("RGB")
        assert image.size == (16, 16)
        assert all(abs(a - b) <= 8 for a, b in zip(image.getpixel((8, 8)), colour, strict=True)), rank
        etags.add(tile.headers["etag"])
    assert len(etags) == 3 and whole.headers["etag"] not in etags
    assert client.get("/api/patches/2/10/3").status_code == 404  # the sprite has 3 tiles
    # a neuron whose sprite is a file of its own (a row without a range) is served as before
    assert client.get("/api/patches/2/11/sprite").content.startswith(b"\x89PNG")
    assert client.get("/api/patches/2/11/1").content.startswith(b"RIFF")


def test_a_broken_pack_range_is_404(client: TestClient, world: World, packed_neuron) -> None:
    """A range past the end of the pack, into the wrong sprite's bytes, or a range on a file that is not a pack:
    404 with the usual one line, never a 500 or bytes of something else."""
    first, mine = packed_neuron
    con = sqlite3.connect(world.db_path)
    cases = [
        ("patches/s2/test-0000.pack", len(first), len(mine) + 1, "cannot be read"),  # truncated pack
        ("patches/s2/test-0000.pack", 1 << 40, 10, "cannot be read"),  # past its end
        ("patches/s2/test-0000.pack", 5, 100, "cannot be read"),  # not a JPEG's start
        ("patches/2/10.png", 0, 10, "is missing"),  # a range on an image file: only packs have ranges
        ("patches/s2/test-0000.pack", None, None, "is missing"),  # a pack served whole: never
    ]
    try:
        for file, offset, length, why in cases:
            con.execute(
                "UPDATE patch_sets SET file=?, byte_offset=?, byte_length=? WHERE snapshot_id=2 AND neuron_id=10",
                (file, offset, length),
            )
            con.commit()
            for url in ("/api/patches/2/10/sprite", "/api/patches/2/10/1"):
                r = client.get(url)
                assert r.status_code == 404, (file, offset, length, url)
                rank = 0 if url.endswith("sprite") else 1
                assert r.json() == {"detail": f"the image of patch {rank} of neuron 10 at snapshot 2 {why}"}
    finally:
        con.close()
