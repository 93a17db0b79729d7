"""Read endpoints: exact payloads on the synthetic world; values cross-checked against raw SQLite reads."""

from __future__ import annotations

import sqlite3
import struct

import numpy as np
from fastapi.testclient import TestClient

from backend.api.points import decode_points
from backend.store.schema import SCHEMA_VERSION

from .conftest import World

T0 = "2024-01-01T00:00:00Z"


def raw(world: World, sql: str, *args: object) -> list[tuple]:
    """Rows read with the sqlite3 module directly (independent of the store and the API)."""
    con = sqlite3.connect(world.db_path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def f32(x: float) -> float:
    return float(np.float32(x))


def test_health(client: TestClient) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": "0.1.0", "schema_version": SCHEMA_VERSION}


def test_datasets(client: TestClient) -> None:
    expected = {
        "id": 1,
        "name": "synthetic",
        "n_images": 40,
        "class_names": ["circle", "square", "triangle"],
        "created_at": T0,
    }
    assert client.get("/api/datasets").json() == [expected]
    assert client.get("/api/datasets/1").json() == expected
    r = client.get("/api/datasets/2")
    assert (r.status_code, r.json()) == (404, {"detail": "dataset 2 not found"})


def test_runs(client: TestClient) -> None:
    runs = client.get("/api/runs").json()
    assert [(r["id"], r["name"], r["arch"], r["n_snapshots"]) for r in runs] == [
        (1, "run-0", "synthetic-cnn", 3),
        (2, "run-1", "synthetic-cnn", 3),
        (3, "big", "synthetic-wide", 1),
    ]
    run = client.get("/api/runs/2").json()
    assert run == {
        "id": 2,
        "name": "run-1",
        "arch": "synthetic-cnn",
        "dataset_id": 1,
        "num_classes": 3,
        "notes": "run 1",
        "created_at": T0,
        "n_snapshots": 3,
        "snapshots": [
            {
                "id": 4,
                "epoch": 0,
                "train_loss": 2.0,
                "train_top1": 0.45,
                "train_top5": 0.65,
                "val_loss": 2.2,
                "val_top1": 0.4,
                "val_top5": None,
                "computed_in": [1],
            },
            {
                "id": 5,
                "epoch": 1,
                "train_loss": 1.0,
                "train_top1": 0.65,
                "train_top5": 0.85,
                "val_loss": 1.1,
                "val_top1": 0.6,
                "val_top5": 0.8,
                "computed_in": [1],
            },
            {
                "id": 6,
                "epoch": 2,
                "train_loss": 0.6667,
                "train_top1": 0.85,
                "train_top5": 1.0,
                "val_loss": 0.7333,
                "val_top1": 0.8,
                "val_top5": 1.0,
                "computed_in": [1],
            },
        ],
    }
    assert client.get("/api/runs/1/layers").json() == [
        {"id": 1, "idx": 0, "name": "features.0", "channels": 8},
        {"id": 2, "idx": 1, "name": "features.1", "channels": 8},
        {"id": 3, "idx": 2, "name": "features.2", "channels": 8},
    ]
    assert client.get("/api/runs/9").json() == {"detail": "run 9 not found"}
    assert client.get("/api/runs/9/layers").status_code == 404


def test_spaces(client: TestClient) -> None:
    summary = {
        "id": 1,
        "name": "synthetic-space",
        "base_snapshot_id": 3,
        "base_run_id": 1,
        "base_epoch": 2,
        "dataset_id": 1,
        "params": {"k": 3, "dim": 8, "negatives": 3, "lr": 0.05, "epochs": 5, "seed": 0},
        "created_at": T0,
        "n_snapshots": 7,
    }
    assert client.get("/api/spaces").json() == [summary]
    space = client.get("/api/spaces/1").json()
    assert {k: v for k, v in space.items() if k not in ("stats", "placement", "snapshots")} == summary
    assert space["placement"] is None  # no held-out fit recorded in this synthetic space (issue 13)
    assert space["stats"] == {"objective": [1.0, 0.5], "rmse": 0.1}
    assert [(s["snapshot_id"], s["run_id"], s["epoch"], s["n_points"]) for s in space["snapshots"]] == [
        (1, 1, 0, 24),
        (2, 1, 1, 24),
        (3, 1, 2, 24),
        (4, 2, 0, 24),
        (5, 2, 1, 24),
        (6, 2, 2, 24),
        (7, 3, 0, 100),
    ]
    assert space["snapshots"][0]["movement"] is None and space["snapshots"][1]["movement"] > 0
    assert [s["diversity"] for s in space["snapshots"][:3]] == [1.5, 1.4, 1.3]
    assert client.get("/api/spaces/5").json() == {"detail": "space 5 not found"}


def test_points_binary_and_json(client: TestClient, world: World) -> None:
    r = client.get("/api/spaces/1/snapshots/5/points")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["cache-control"] == "no-cache"  # revalidated by ETag (issue 11, item 10)
    body = r.content
    (h,) = struct.unpack_from("<I", body)
    assert (4 + h) % 4 == 0
    header, cols = decode_points(body)
    assert header == {
        "n": 24,
        "columns": [
            {"name": "neuron_id", "dtype": "int32"},
            {"name": "layer_idx", "dtype": "int32"},
            {"name": "x", "dtype": "float32"},
            {"name": "y", "dtype": "float32"},
        ],
        "space_id": 1,
        "snapshot_id": 5,
        "epoch": 1,
    }
    assert len(body) == 4 + h + 24 * 16
    rows = raw(
        world,
        "SELECT ns.neuron_id, l.idx, ns.x, ns.y FROM neuron_states ns JOIN neurons n ON n.id = ns.neuron_id "
        "JOIN layers l ON l.id = n.layer_id WHERE ns.space_id = 1 AND ns.snapshot_id = 5 ORDER BY ns.neuron_id",
    )
    assert cols["neuron_id"].tolist() == [r[0] for r in rows] == list(range(25, 49))
    assert cols["layer_idx"].tolist() == [r[1] for r in rows] == [0] * 8 + [1] * 8 + [2] * 8
    assert cols["x"].tolist() == [f32(r[2]) for r in rows]
    assert cols["y"].tolist() == [f32(r[3]) for r in rows]

    j = client.get("/api/spaces/1/snapshots/5/points?format=json")
    assert j.headers["content-type"] == "application/json"
    assert j.json() == {
        "space_id": 1,
        "snapshot_id": 5,
        "epoch": 1,
        "n": 24,
        "neuron_id": list(range(25, 49)),
        "layer_idx": [0] * 8 + [1] * 8 + [2] * 8,
        "x": [f32(r[2]) for r in rows],
        "y": [f32(r[3]) for r in rows],
    }
    assert j.headers["etag"] != r.headers["etag"]


def test_points_etag_304(client: TestClient) -> None:
    first = client.get("/api/spaces/1/snapshots/7/points")
    assert first.status_code == 200 and len(first.content) > 100 * 16
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = client.get("/api/spaces/1/snapshots/7/points", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert (
        client.get(
            "/api/spaces/1/snapshots/7/points", headers={"If-None-Match": f'"x", W/{etag}'}
        ).status_code
        == 304
    )
    assert (
        client.get("/api/spaces/1/snapshots/7/points", headers={"If-None-Match": '"other"'}).status_code
        == 200
    )
    assert client.get("/api/spaces/1/snapshots/6/points").headers["etag"] != etag


def test_points_not_found(client: TestClient) -> None:
    assert client.get("/api/spaces/2/snapshots/1/points").json() == {"detail": "space 2 not found"}
    assert client.get("/api/spaces/1/snapshots/99/points").json() == {"detail": "snapshot 99 not found"}
    assert client.get("/api/spaces/1/snapshots/1/points?format=xml").status_code == 422
    assert client.get("/api/spaces/0/snapshots/1/points").status_code == 422
    assert client.get("/api/spaces/1/snapshots/99999999999/points").status_code == 422


def test_neuron(client: TestClient) -> None:
    assert client.get("/api/neurons/10").json() == {
        "id": 10,
        "run_id": 1,
        "layer": {"id": 2, "idx": 1, "name": "features.1", "channels": 8},
        "channel": 1,
    }
    assert client.get("/api/neurons/1000").json() == {"detail": "neuron 1000 not found"}


def test_neuron_at_snapshot(client: TestClient, world: World) -> None:
    body = client.get("/api/spaces/1/snapshots/2/neurons/10").json()
    ((x, y, stim, maxima),) = raw(
        world,
        "SELECT x, y, stimuli, maxima FROM neuron_states WHERE space_id=1 AND snapshot_id=2 AND neuron_id=10",
    )
    images = np.frombuffer(stim, "<i4").tolist()
    maxs = np.frombuffer(maxima, "<f4").tolist()
    labels = dict(raw(world, "SELECT idx, label FROM images WHERE dataset_id = 1"))
    ((boxes,),) = raw(world, "SELECT boxes FROM patch_sets WHERE snapshot_id=2 AND neuron_id=10")
    patches = np.frombuffer(boxes, "<i4").reshape(-1, 5).tolist()  # image_idx, y0, x0, y1, x1 per rank
    assert body == {
        "neuron": {
            "id": 10,
            "run_id": 1,
            "layer": {"id": 2, "idx": 1, "name": "features.1", "channels": 8},
            "channel": 1,
        },
        "space_id": 1,
        "snapshot_id": 2,
        "epoch": 1,
        "x": x,
        "y": y,
        "stimuli": [
            {
                "rank": rank,
                "image_idx": img,
                "maximum": mx,
                "label": labels[img],
                "patch": {
                    "snapshot_id": 2,
                    "neuron_id": 10,
                    "rank": rank,
                    "image_idx": img,
                    "box": {"y0": rank, "x0": 2 * rank, "y1": rank + 16, "x1": 2 * rank + 16},
                    "url": f"/api/patches/2/10/{rank}",
                },
            }
            for rank, (img, mx) in enumerate(zip(images, maxs, strict=True))
        ],
        "tied": None,  # no tie flags recorded in this synthetic world (issue 13)
    }
    assert patches == [[img, rank, 2 * rank, rank + 16, 2 * rank + 16] for rank, img in enumerate(images)]
    assert maxs == sorted(maxs, reverse=True) and len(images) == 3
    # neuron 10 belongs to run 1; snapshot 5 to run 2
    assert client.get("/api/spaces/1/snapshots/5/neurons/10").json() == {
        "detail": "neuron 10 belongs to run 1, not to run 2 of snapshot 5"
    }
    assert client.get("/api/spaces/3/snapshots/2/neurons/10").status_code == 404


def test_neuron_patches(client: TestClient) -> None:
    patches = client.get("/api/neurons/30/snapshots/6/patches").json()
    assert [p["url"] for p in patches] == [
        "/api/patches/6/30/0",
        "/api/patches/6/30/1",
        "/api/patches/6/30/2",
    ]
    assert client.get("/api/neurons/30/snapshots/60/patches").json() == {"detail": "snapshot 60 not found"}


def test_trajectory(client: TestClient, world: World) -> None:
    rows = raw(
        world,
        "SELECT ns.snapshot_id, s.epoch, ns.x, ns.y FROM neuron_states ns JOIN snapshots s ON s.id = ns.snapshot_id "
        "WHERE ns.space_id = 1 AND ns.neuron_id = 30 ORDER BY s.epoch",
    )
    assert client.get("/api/spaces/1/neurons/30/trajectory").json() == {
        "neuron_id": 30,
        "space_id": 1,
        "points": [{"snapshot_id": s, "epoch": e, "x": x, "y": y} for s, e, x, y in rows],
    }
    assert [r[0] for r in rows] == [4, 5, 6]
    assert client.get("/api/spaces/1/neurons/9999/trajectory").status_code == 404


def test_neighbours_brute_force(client: TestClient, world: World) -> None:
    rows = raw(world, "SELECT snapshot_id, neuron_id, vector FROM neuron_states WHERE space_id = 1")
    keys = [(s, n) for s, n, _ in rows]
    vecs = np.stack([np.frombuffer(v, "<f4") for _, _, v in rows]).astype(np.float64)
    q = vecs[keys.index((2, 10))]
    d = np.sqrt(((vecs - q) ** 2).sum(1))
    order = sorted((float(d[i]), keys[i]) for i in range(len(keys)) if keys[i] != (2, 10))[:5]
    body = client.get("/api/spaces/1/snapshots/2/neurons/10/neighbours?k=5").json()
    assert body["k"] == 5 and (body["neuron_id"], body["space_id"], body["snapshot_id"]) == (10, 1, 2)
    got = [(n["distance"], (n["snapshot_id"], n["neuron_id"])) for n in body["neighbours"]]
    assert [g[1] for g in got] == [o[1] for o in order]
    assert np.allclose([g[0] for g in got], [o[0] for o in order], rtol=1e-5)
    first = body["neighbours"][0]
    epoch = raw(world, "SELECT epoch FROM snapshots WHERE id = ?", first["snapshot_id"])[0][0]
    assert first["epoch"] == epoch
    assert client.get("/api/spaces/1/snapshots/2/neurons/10/neighbours?k=0").status_code == 422
    assert client.get("/api/spaces/1/snapshots/2/neurons/10/neighbours?k=101").status_code == 422
    assert (
        len(client.get("/api/spaces/1/snapshots/2/neurons/10/neighbours?k=100").json()["neighbours"]) == 100
    )


def test_importance_ranking(client: TestClient, world: World) -> None:
    scores = raw(
        world,
        "SELECT neuron_id, score, mean_s FROM importance_scores WHERE importance_id = 5 "
        "ORDER BY score DESC, mean_s DESC, neuron_id",
    )
    body = client.get(
        "/api/importance/ranking?run_id=2&epoch_from=0&epoch_to=2&class_idx=1&limit=3&offset=1"
    ).json()
    assert body["importance"] == {
        "id": 5,
        "run_id": 2,
        "epoch_from": 0,
        "epoch_to": 2,
        "class_idx": 1,
        "class_name": "square",
        "n_images": 13,
        "created_at": T0,
    }
    assert (body["total"], body["offset"]) == (24, 1)
    assert [(i["rank"], i["neuron_id"], i["score"], i["mean_s"]) for i in body["items"]] == [
        (k + 2, n, s, m) for k, (n, s, m) in enumerate(scores[1:4])
    ]
    item = body["items"][0]
    assert [p["url"] for p in item["before"]] == [f"/api/patches/4/{item['neuron_id']}/{r}" for r in range(3)]
    assert [p["url"] for p in item["after"]] == [f"/api/patches/6/{item['neuron_id']}/{r}" for r in range(3)]
    assert client.get("/api/importance/5?limit=3&offset=1").json() == body
    assert (
        client.get("/api/importance/ranking?run_id=2&epoch_from=0&epoch_to=1&class_idx=1").status_code == 404
    )
    assert client.get("/api/importance/ranking?run_id=2&epoch_from=0&epoch_to=2").status_code == 422
    listed = client.get("/api/importance?run_id=1").json()
    assert [(i["id"], i["class_idx"], i["class_name"]) for i in listed] == [
        (1, 0, "circle"),
        (2, 1, "square"),
        (3, 2, "triangle"),
    ]
    mine = client.get("/api/neurons/30/importance").json()
    ranked = [n for n, _, _ in scores]
    assert [(m["importance"]["id"], m["rank"]) for m in mine if m["importance"]["id"] == 5] == [
        (5, ranked.index(30) + 1)
    ]
    assert len(mine) == 3


def test_metrics(client: TestClient) -> None:
    body = client.get("/api/runs/1/metrics").json()
    assert body["run_id"] == 1 and body["space_id"] == 1
    assert [
        (e["epoch"], e["snapshot_id"], e["val_top1"], e["computed"], e["coverage"], e["diversity"])
        for e in body["epochs"]
    ] == [(0, 1, 0.45, True, 1.0, 1.5), (1, 2, 0.65, True, 1.0, 1.4), (2, 3, 0.85, True, 1.0, 1.3)]
    assert body["epochs"][0]["movement"] is None and body["epochs"][2]["movement"] > 0
    assert client.get("/api/runs/1/metrics?space_id=4").json() == {"detail": "space 4 not found"}


def test_placeholder_page_and_docs(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'href="/docs"' in page.text
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/spaces/{space_id}/snapshots/{snapshot_id}/points" in spec["paths"]
