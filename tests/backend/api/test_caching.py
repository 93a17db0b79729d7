"""Caching that cannot serve stale data (issue 11, item 10).

A rebuilt space keeps its id and a recomputed snapshot rewrites its patch files at the same paths, so no answer is
``immutable``: points, concepts and patch images are ``no-cache`` with a strong ETag — a browser revalidates
(``If-None-Match``) and gets 304 while nothing changed, and the new data as soon as it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import get_space, list_space_snapshots, open_store, run_neurons, writes
from backend.store.config import Store
from tests.fixtures.synthetic import SyntheticWorld, build_synthetic_store, tiny_png

COLUMNAR = ("points", "points?format=json", "concepts", "concepts?format=json")


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Store, SyntheticWorld, Path, TestClient]]:
    data = tmp_path / "data"
    store = open_store(str(tmp_path / "db.sqlite"))
    world = build_synthetic_store(store, n_neurons=6, n_epochs=2, n_runs=1, data_dir=data)
    with TestClient(create_app(store, Settings(data_dir=data, frontend_dist=tmp_path / "no-dist"))) as client:
        yield store, world, data, client
    store.dispose()


def _revalidating(response) -> None:
    control = response.headers["cache-control"]
    assert "no-cache" in control and "immutable" not in control and "max-age" not in control, control
    assert response.headers["etag"].startswith('"')


def _rebuild_space(store: Store, world: SyntheticWorld, shift: float) -> None:
    """What a ``build_space`` job of the same name does: same space id, snapshots replaced (new positions)."""
    with store.session() as s:
        space = get_space(s, world.space_id)
        old = [(snap.id, ss.n_points) for ss, snap in list_space_snapshots(s, world.space_id)]
        name, base, dataset, params, stats = (
            space.name,
            space.base_snapshot_id,
            space.dataset_id,
            dict(space.params),
            dict(space.stats),
        )
        rebuilt = writes.write_space(
            s, name, base, dataset, params, None, np.ones((40, 8)), np.ones(40), stats
        )
        assert rebuilt.id == world.space_id
        ids = run_neurons(s, world.run_ids[0]).neuron_id
        n = len(ids)
        for snapshot_id, _ in old:
            writes.write_snapshot_in_space(
                s,
                world.space_id,
                snapshot_id,
                ids,
                np.tile(np.arange(3, dtype=np.int32) + 1, (n, 1)),
                np.ones((n, 3)),
                np.full((n, 8), shift),
                np.full((n, 2), shift),
                coverage=1.0,
                diversity=1.0,
                movement=None,
            )


def test_a_rebuilt_space_reaches_a_client_holding_the_old_etag(small) -> None:
    store, world, _, client = small
    snapshot = world.snapshot_ids[0][1]
    urls = [f"/api/spaces/{world.space_id}/snapshots/{snapshot}/{what}" for what in COLUMNAR]
    before = {url: client.get(url) for url in urls}
    for url, r in before.items():
        assert r.status_code == 200, url
        _revalidating(r)
        same = client.get(url, headers={"If-None-Match": r.headers["etag"]})
        assert (same.status_code, same.content) == (304, b""), url
        _revalidating(same)
    _rebuild_space(store, world, shift=5.0)
    for url, old in before.items():
        fresh = client.get(url, headers={"If-None-Match": old.headers["etag"]})
        assert fresh.status_code == 200, url
        assert fresh.headers["etag"] != old.headers["etag"] and fresh.content != old.content, url
        assert fresh.content == client.get(url).content
        _revalidating(fresh)
    points = client.get(urls[1]).json()
    assert set(points["x"]) == {5.0} and set(points["y"]) == {5.0}


def test_a_rewritten_patch_file_reaches_a_client_holding_the_old_etag(small) -> None:
    _, world, data, client = small
    snapshot, neuron = world.snapshot_ids[0][0], world.neuron_ids[0][2]
    file = data / f"patches/{snapshot}/{neuron}.png"
    original = file.read_bytes()
    for url in (f"/api/patches/{snapshot}/{neuron}/0", f"/api/patches/{snapshot}/{neuron}/sprite"):
        file.write_bytes(original)
        first = client.get(url)
        assert first.status_code == 200, url
        _revalidating(first)
        same = client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert (same.status_code, same.content) == (304, b""), url
        # a recomputed snapshot rewrites the file at the same path
        file.write_bytes(tiny_png((1, 2, 3), size=5))
        fresh = client.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert fresh.status_code == 200 and fresh.content != first.content, url
        assert fresh.headers["etag"] != first.headers["etag"]
        _revalidating(fresh)
        assert client.get(url, headers={"If-None-Match": fresh.headers["etag"]}).status_code == 304
