"""Concept labels per snapshot and whole importance computations: exact payloads on the synthetic world,
expected values recomputed from raw SQLite reads with the literal rule."""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import delete

from backend.api.app import create_app
from backend.api.points import decode_columns
from backend.api.settings import Settings
from backend.store import SpaceSnapshot, open_store
from tests.fixtures.synthetic import build_synthetic_store

from .conftest import World
from .test_read import T0, raw


def expected_concepts(
    world: World, space_id: int, snapshot_id: int
) -> tuple[list[int], list[int], list[float]]:
    """``(neuron_id, class_idx, share)`` in points order, by counting each neuron's stimuli's labels."""
    ((points,),) = raw(
        world,
        "SELECT points FROM space_snapshots WHERE space_id = ? AND snapshot_id = ?",
        space_id,
        snapshot_id,
    )
    n = len(points) // 16
    order = np.frombuffer(points, "<i4", count=n).tolist()
    labels = dict(raw(world, "SELECT idx, label FROM images WHERE dataset_id = 1"))
    stimuli = {
        nid: np.frombuffer(blob, "<i4").tolist()
        for nid, blob in raw(
            world,
            "SELECT neuron_id, stimuli FROM neuron_states WHERE space_id = ? AND snapshot_id = ?",
            space_id,
            snapshot_id,
        )
    }
    classes, shares = [], []
    for nid in order:
        counts = Counter(labels[i] for i in stimuli[nid])
        best = min(counts, key=lambda c: (-counts[c], c))
        classes.append(best)
        shares.append(float(np.float32(counts[best] / len(stimuli[nid]))))
    return order, classes, shares


def test_concepts_binary_and_json(client: TestClient, world: World) -> None:
    order, classes, shares = expected_concepts(world, 1, 5)
    assert order == list(range(25, 49))
    assert set(classes) == {0, 1, 2} and {1.0, float(np.float32(2 / 3))} <= set(shares)
    # three-way ties (one stimulus of each class) go to the lowest class index
    ties = [c for c, share in zip(classes, shares, strict=True) if share == np.float32(1 / 3)]
    assert ties and set(ties) == {0}

    r = client.get("/api/spaces/1/snapshots/5/concepts")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["cache-control"] == "no-cache"  # revalidated by ETag (issue 11, item 10)
    (h,) = struct.unpack_from("<I", r.content)
    assert (4 + h) % 4 == 0 and len(r.content) == 4 + h + 24 * 12
    header, cols = decode_columns(r.content)
    assert header == {
        "n": 24,
        "columns": [
            {"name": "neuron_id", "dtype": "int32"},
            {"name": "class_idx", "dtype": "int32"},
            {"name": "share", "dtype": "float32"},
        ],
        "space_id": 1,
        "snapshot_id": 5,
        "epoch": 1,
        "k": 3,
        "class_names": ["circle", "square", "triangle"],
    }
    assert cols["neuron_id"].tolist() == order
    assert cols["class_idx"].tolist() == classes
    assert cols["share"].tolist() == shares

    j = client.get("/api/spaces/1/snapshots/5/concepts?format=json")
    assert j.headers["content-type"] == "application/json"
    assert j.json() == {
        "space_id": 1,
        "snapshot_id": 5,
        "epoch": 1,
        "k": 3,
        "class_names": ["circle", "square", "triangle"],
        "n": 24,
        "neuron_id": order,
        "class_idx": classes,
        "share": shares,
    }
    assert j.headers["etag"] != r.headers["etag"]


def test_concepts_of_the_big_snapshot_match_the_points_order(client: TestClient, world: World) -> None:
    order, classes, shares = expected_concepts(world, 1, 7)
    _, points = decode_columns(client.get("/api/spaces/1/snapshots/7/points").content)
    _, cols = decode_columns(client.get("/api/spaces/1/snapshots/7/concepts").content)
    assert cols["neuron_id"].tolist() == points["neuron_id"].tolist() == order
    assert cols["class_idx"].tolist() == classes
    assert cols["share"].tolist() == shares


def test_concepts_etag_304_and_not_found(client: TestClient) -> None:
    first = client.get("/api/spaces/1/snapshots/2/concepts")
    etag = first.headers["etag"]
    again = client.get("/api/spaces/1/snapshots/2/concepts", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert client.get("/api/spaces/1/snapshots/3/concepts").headers["etag"] != etag
    assert client.get("/api/spaces/1/snapshots/2/points").headers["etag"] != etag
    json_etag = client.get("/api/spaces/1/snapshots/2/concepts?format=json").headers["etag"]
    assert (
        client.get(
            "/api/spaces/1/snapshots/2/concepts?format=json", headers={"If-None-Match": json_etag}
        ).status_code
        == 304
    )
    assert client.get("/api/spaces/2/snapshots/1/concepts").json() == {"detail": "space 2 not found"}
    assert client.get("/api/spaces/1/snapshots/99/concepts").json() == {"detail": "snapshot 99 not found"}
    assert client.get("/api/spaces/1/snapshots/1/concepts?format=xml").status_code == 422


def test_concepts_of_a_snapshot_not_computed_says_how_to_compute_it(client: TestClient, world: World) -> None:
    """Same 404 text as the points: a scratch world with one computed snapshot deleted."""
    db = world.db_path.parent / "scratch-concepts.db"
    store = open_store(str(db))
    try:
        build_synthetic_store(store, n_neurons=6, n_epochs=2, n_runs=1, seed=1)
        with store.session() as s:
            s.execute(delete(SpaceSnapshot).where(SpaceSnapshot.snapshot_id == 2))
        with TestClient(create_app(store, Settings(frontend_dist=world.data_dir / "no-dist"))) as c:
            detail = {
                "detail": "snapshot 2 (run 1, epoch 1) is not computed in space 1; POST /api/jobs with kind "
                "'add_snapshot' to compute it"
            }
            assert c.get("/api/spaces/1/snapshots/2/points").json() == detail
            r = c.get("/api/spaces/1/snapshots/2/concepts")
            assert (r.status_code, r.json()) == (404, detail)
    finally:
        store.dispose()


def test_concepts_are_documented(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"][
        "/api/spaces/{space_id}/snapshots/{snapshot_id}/concepts"
    ]
    text = op["get"]["description"]
    assert "`int32[n] neuron_id`, `int32[n] class_idx`, `float32[n] share`" in text
    assert '"k", "class_names"' in text


def test_importance_scores_whole_computation(client: TestClient, world: World) -> None:
    rows = raw(
        world,
        "SELECT neuron_id, score, mean_s FROM importance_scores WHERE importance_id = 5 "
        "ORDER BY score DESC, mean_s DESC, neuron_id",
    )
    assert len(rows) == 24
    assert client.get("/api/importance/5/scores").json() == {
        "importance": {
            "id": 5,
            "run_id": 2,
            "epoch_from": 0,
            "epoch_to": 2,
            "class_idx": 1,
            "class_name": "square",
            "n_images": 13,
            "created_at": T0,
        },
        "neuron_id": [r[0] for r in rows],
        "score": [r[1] for r in rows],
        "mean_s": [r[2] for r in rows],
        "rank": list(range(1, 25)),
    }
    page = client.get("/api/importance/5?limit=24").json()
    assert [(i["rank"], i["neuron_id"]) for i in page["items"]] == [(k + 1, r[0]) for k, r in enumerate(rows)]
    r = client.get("/api/importance/99/scores")
    assert (r.status_code, r.json()) == (404, {"detail": "importance computation 99 not found"})


def test_neuron_importance_carries_the_ranking_size(client: TestClient, world: World) -> None:
    mine = client.get("/api/neurons/30/importance").json()
    expected = []
    for imp_id, class_idx in raw(
        world, "SELECT id, class_idx FROM importances WHERE run_id = 2 ORDER BY class_idx"
    ):
        rows = raw(
            world,
            "SELECT neuron_id, score, mean_s FROM importance_scores WHERE importance_id = ? "
            "ORDER BY score DESC, mean_s DESC, neuron_id",
            imp_id,
        )
        ((score, mean_s),) = [(s, m) for n, s, m in rows if n == 30]
        expected.append((imp_id, class_idx, score, mean_s, [r[0] for r in rows].index(30) + 1, len(rows)))
    assert [
        (m["importance"]["id"], m["importance"]["class_idx"], m["score"], m["mean_s"], m["rank"], m["total"])
        for m in mine
    ] == expected
    assert [m["total"] for m in mine] == [24, 24, 24]
