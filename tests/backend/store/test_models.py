"""Round trips of every model through the write and read helpers, and of the blob encodings."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from backend.store import (
    ConflictError,
    Dataset,
    Image,
    ImportanceScore,
    Neighbour,
    NeuronState,
    NotComputedError,
    NotFoundError,
    PatchRef,
    PatchSet,
    Store,
    TrajectoryPoint,
    find_run,
    find_snapshot,
    get_image,
    get_patch,
    get_space,
    importance_ranking,
    list_datasets,
    list_images,
    list_importances,
    list_layers,
    list_runs,
    list_snapshots,
    list_space_snapshots,
    list_spaces,
    nearest_neighbours,
    neuron_detail,
    next_computed_snapshot,
    pack_f32,
    pack_i32,
    pack_points,
    pack_u8,
    patches_of,
    points_blob,
    previous_computed_snapshot,
    register_dataset,
    register_layers,
    register_run,
    run_metrics,
    run_neurons,
    set_movement,
    snapshot_vectors,
    trajectory,
    unpack_f32,
    unpack_i32,
    unpack_points,
    unpack_u8,
    upsert_snapshot,
    write_importance,
    write_patches,
    write_snapshot_in_space,
    write_space,
)

from .conftest import World

# --------------------------------------------------------------------------------------------------------
# blobs


def test_blob_layouts_are_exact_little_endian() -> None:
    assert pack_f32([1.0, -2.5]) == b"\x00\x00\x80\x3f\x00\x00\x20\xc0"
    assert pack_i32([1, -1]) == b"\x01\x00\x00\x00\xff\xff\xff\xff"
    assert unpack_f32(pack_f32(np.arange(6).reshape(2, 3)), (2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert unpack_i32(pack_i32([7, 8, 9])).tolist() == [7, 8, 9]
    assert unpack_u8(pack_u8([True, False, True])).tolist() == [1, 0, 1]
    blob = pack_points([5, 6], [0, 1], [0.5, 1.5], [-1.0, 2.0])
    assert len(blob) == 32
    assert blob[:8] == pack_i32([5, 6]) and blob[16:24] == pack_f32([0.5, 1.5])
    with pytest.raises(ValueError, match="out of int32 range"):
        pack_i32([2**31])
    with pytest.raises(ValueError, match="not a multiple of 4"):
        unpack_f32(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="differ in length"):
        pack_points([1], [1, 2], [0.0], [0.0])
    with pytest.raises(ValueError, match="not a multiple of 16"):
        unpack_points(b"\x00" * 17)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**31), 2**31 - 1),
            st.integers(0, 100),
            st.floats(width=32, allow_nan=False),
            st.floats(width=32, allow_nan=False),
        ),
        max_size=50,
    )
)
def test_points_round_trip(rows: list[tuple[int, int, float, float]]) -> None:
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    pts = unpack_points(pack_points(*cols))
    assert pts.neuron_id.tolist() == list(cols[0])
    assert pts.layer_idx.tolist() == list(cols[1])
    assert pts.x.tolist() == list(cols[2]) and pts.y.tolist() == list(cols[3])


# --------------------------------------------------------------------------------------------------------
# registration


def test_dataset_run_snapshot_layer_round_trip(store: Store, world: World) -> None:
    with store.session(readonly=True) as s:
        (ds,) = list_datasets(s)
        assert (ds.name, ds.root, ds.n_images, ds.class_names) == (
            "shapes",
            "/data/shapes",
            6,
            ["circle", "square", "star"],
        )
        assert [(i.idx, i.rel_path, i.label) for i in list_images(s, ds.id, offset=4)] == [
            (4, "img4.png", 1),
            (5, "img5.png", 2),
        ]
        assert get_image(s, ds.id, 2).label == 2
        (run,) = list_runs(s)
        assert find_run(s, "healthy").id == run.id
        assert (run.arch, run.checkpoint_dir, run.num_classes, run.notes) == (
            "demo_net",
            "/ckpt/healthy",
            3,
            "lr 0.01",
        )
        snaps = list_snapshots(s, run.id)
        assert [(sn.epoch, sn.checkpoint_path) for sn in snaps] == [
            (e, f"/ckpt/healthy/epoch{e}.pt") for e in range(3)
        ]
        assert [sn.val_top1 for sn in snaps] == pytest.approx([0.3, 0.4, 0.5])
        assert find_snapshot(s, run.id, 1).id == world.snapshot_ids[1]
        assert [(la.idx, la.name, la.channels) for la in list_layers(s, run.id)] == [
            (0, "features.0", 2),
            (1, "features.3", 3),
        ]
        table = run_neurons(s, run.id)
        assert table.layer_idx.tolist() == [0, 0, 1, 1, 1]
        assert table.channel.tolist() == [0, 1, 0, 1, 2]
        assert len(set(table.neuron_id.tolist())) == 5
        with pytest.raises(NotFoundError, match="run 'nope' not found"):
            find_run(s, "nope")
        with pytest.raises(NotFoundError, match="has no snapshot at epoch 9"):
            find_snapshot(s, run.id, 9)


def test_registration_is_idempotent_and_conflicts_are_refused(store: Store, world: World) -> None:
    images = [(f"img{i}.png", i % 3) for i in range(6)]
    with store.session() as s:
        again = register_dataset(s, "shapes", "/moved/shapes", ["circle", "square", "star"], images)
        assert again.id == world.dataset_id and again.root == "/moved/shapes"
        assert register_run(s, "healthy", "demo_net", "/ckpt2", world.dataset_id, 3).id == world.run_id
        layers = register_layers(s, world.run_id, [("features.0", 2), ("features.3", 3)])
        assert [la.id for la in layers] == world.layer_ids
        snap = upsert_snapshot(s, world.run_id, 1, "/ckpt2/e1.pt", train_top1=0.9)
        assert snap.id == world.snapshot_ids[1]
        assert (snap.train_top1, snap.val_top1) == (0.9, pytest.approx(0.4))  # None/absent keeps stored value
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 6
        assert s.scalar(text("SELECT count(*) FROM neurons")) == 5
    with pytest.raises(ConflictError, match="dataset 'shapes' is already registered with 6 different images"):
        with store.session() as s:
            register_dataset(s, "shapes", "/x", ["a", "b", "c"], images[:5])
    with pytest.raises(ConflictError, match="run 'healthy' already exists with arch 'demo_net'"):
        with store.session() as s:
            register_run(s, "healthy", "resnet18", "/x", world.dataset_id, 3)
    with pytest.raises(ConflictError, match=f"run {world.run_id} already has layers"):
        with store.session() as s:
            register_layers(s, world.run_id, [("features.0", 4)])
    with pytest.raises(ValueError, match="image 0 has label 7, outside 0..2"):
        with store.session() as s:
            register_dataset(s, "bad", "/x", ["a", "b", "c"], [("a.png", 7)])
    with pytest.raises(ValueError, match="unknown snapshot metric"):
        with store.session() as s:
            upsert_snapshot(s, world.run_id, 0, "/x", top1=1.0)
    with store.session(readonly=True) as s:
        assert [d.name for d in list_datasets(s)] == ["shapes"]


# --------------------------------------------------------------------------------------------------------
# spaces, neuron states, patches, importance


def _space(store: Store, world: World) -> int:
    with store.session() as s:
        space = write_space(
            s,
            "main",
            world.snapshot_ids[2],
            world.dataset_id,
            {"k": 2, "dim": 3, "negatives": 3, "lr": 0.05, "epochs": 4, "seed": 0, "layers": ["features.0"]},
            pickle.dumps({"fitted": True}),
            np.arange(18, dtype=np.float32).reshape(6, 3),
            [True, True, False, True, True, True],
            {"objective": [3.0, 2.0], "rmse": 0.1},
        )
        return space.id


def _write_epoch(store: Store, world: World, space_id: int, epoch: int, shift: float) -> np.ndarray:
    with store.session(readonly=True) as s:
        ids = run_neurons(s, world.run_id).neuron_id
    n = len(ids)
    vectors = np.arange(n * 3, dtype=np.float32).reshape(n, 3) + shift
    with store.session() as s:
        write_snapshot_in_space(
            s,
            space_id,
            world.snapshot_ids[epoch],
            ids,
            stimuli=np.array([[i, (i + 1) % 6] for i in range(n)]),
            maxima=np.array([[2.0 + i, 1.0] for i in range(n)]),
            vectors=vectors,
            xy=np.stack([np.arange(n, dtype=np.float32) + shift, -np.arange(n, dtype=np.float32)], axis=1),
            coverage=1.0,
            diversity=0.5 + epoch,
            movement=None if epoch == 0 else shift,
        )
    return ids


def test_space_round_trip(store: Store, world: World) -> None:
    space_id = _space(store, world)
    with store.session(readonly=True) as s:
        (space,) = list_spaces(s)
        assert space.params["dim"] == 3 and space.stats == {"objective": [3.0, 2.0], "rmse": 0.1}
        sp = get_space(s, space_id)
        assert pickle.loads(sp.reducer) == {"fitted": True}
        assert unpack_f32(sp.image_vectors, (6, 3)).tolist() == np.arange(18).reshape(6, 3).tolist()
        assert unpack_u8(sp.covered).tolist() == [1, 1, 0, 1, 1, 1]


def test_snapshot_in_space_round_trip_and_idempotent(store: Store, world: World) -> None:
    space_id = _space(store, world)
    ids = _write_epoch(store, world, space_id, 0, shift=0.0)
    _write_epoch(store, world, space_id, 0, shift=0.0)  # again: replaces, no duplicates
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(NeuronState)) == 5
        blob, epoch = points_blob(s, space_id, world.snapshot_ids[0])
        assert epoch == 0
        with pytest.raises(
            NotComputedError, match=r"snapshot \d+ \(run \d+, epoch 1\) is not computed in space"
        ):
            points_blob(s, space_id, world.snapshot_ids[1])
        with pytest.raises(NotFoundError, match="space 999 not found"):
            points_blob(s, 999, world.snapshot_ids[0])
        ((ss, snap),) = list_space_snapshots(s, space_id)
        assert (ss.n_points, ss.coverage, ss.diversity, ss.movement, snap.epoch) == (5, 1.0, 0.5, None, 0)
        got_ids, vec, xy = snapshot_vectors(s, space_id, world.snapshot_ids[0])  # type: ignore[misc]
    assert blob is not None
    pts = unpack_points(blob)
    assert pts.neuron_id.tolist() == ids.tolist()
    assert pts.layer_idx.tolist() == [0, 0, 1, 1, 1]
    assert pts.x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and pts.y.tolist() == [0.0, -1.0, -2.0, -3.0, -4.0]
    assert got_ids.tolist() == sorted(ids.tolist())
    assert vec.tolist() == np.arange(15, dtype=np.float32).reshape(5, 3).tolist()
    assert xy[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_write_snapshot_in_space_rejects_bad_shapes_and_foreign_neurons(store: Store, world: World) -> None:
    space_id = _space(store, world)
    with store.session(readonly=True) as s:
        ids = run_neurons(s, world.run_id).neuron_id
    good = dict(
        stimuli=np.zeros((5, 2), int), maxima=np.zeros((5, 2)), vectors=np.zeros((5, 3)), xy=np.zeros((5, 2))
    )
    with pytest.raises(ValueError, match=r"xy \(5, 3\) must be \(n=5, 2\)"):
        with store.session() as s:
            write_snapshot_in_space(
                s,
                space_id,
                world.snapshot_ids[0],
                ids,
                **{**good, "xy": np.zeros((5, 3))},
                coverage=1,
                diversity=1,
                movement=None,
            )
    with pytest.raises(ValueError, match=r"neuron ids \[99999\] are not neurons of run"):
        with store.session() as s:
            write_snapshot_in_space(
                s,
                space_id,
                world.snapshot_ids[0],
                [*ids[:4], 99999],
                **good,
                coverage=1,
                diversity=1,
                movement=None,
            )


def test_neuron_detail_trajectory_neighbours_metrics(store: Store, world: World) -> None:
    space_id = _space(store, world)
    ids = _write_epoch(store, world, space_id, 0, shift=0.0)
    _write_epoch(store, world, space_id, 2, shift=10.0)
    n0 = int(ids[0])
    with store.session() as s:
        write_patches(
            s,
            world.snapshot_ids[0],
            [{"neuron_id": n0, "boxes": [(r, 0, 1, 8, 9) for r in range(2)], "file": "patches/n.webp"}],
        )
    with store.session(readonly=True) as s:
        d = neuron_detail(s, n0, world.snapshot_ids[0], space_id)
        assert (d.layer_idx, d.layer_name, d.channel, d.epoch) == (0, "features.0", 0, 0)
        assert (d.stimuli, d.maxima, d.x, d.y) == ([0, 1], [2.0, 1.0], 0.0, -0.0)
        assert d.patches == [
            PatchRef(0, 0, 0, 1, 8, 9, "patches/n.webp"),
            PatchRef(1, 1, 0, 1, 8, 9, "patches/n.webp"),
        ]
        assert d.patches == patches_of(s, world.snapshot_ids[0], n0)
        assert get_patch(s, world.snapshot_ids[0], n0, 1) == d.patches[1]
        with pytest.raises(NotFoundError, match="no patch 2 for neuron"):
            get_patch(s, world.snapshot_ids[0], n0, 2)
        with pytest.raises(NotComputedError, match="epoch 1.* is not computed in space"):
            neuron_detail(s, n0, world.snapshot_ids[1], space_id)
        with pytest.raises(NotFoundError, match="neuron 99999 not found"):
            neuron_detail(s, 99999, world.snapshot_ids[0], space_id)
        assert trajectory(s, space_id, n0) == [
            TrajectoryPoint(world.snapshot_ids[0], 0, 0.0, 0.0),
            TrajectoryPoint(world.snapshot_ids[2], 2, 10.0, 0.0),
        ]
        prev = previous_computed_snapshot(s, space_id, world.snapshot_ids[2])
        assert prev is not None and prev.epoch == 0
        assert previous_computed_snapshot(s, space_id, world.snapshot_ids[0]) is None
        following = next_computed_snapshot(s, space_id, world.snapshot_ids[0])
        assert following is not None and following.epoch == 2
        assert next_computed_snapshot(s, space_id, world.snapshot_ids[2]) is None
        near = nearest_neighbours(s, space_id, [3.0, 4.0, 5.0], k=2)
        assert near[0] == Neighbour(world.snapshot_ids[0], int(ids[1]), 0.0)
        assert near[1].neuron_id in (int(ids[0]), int(ids[2])) and near[1].distance == pytest.approx(
            np.sqrt(27)
        )
        m = run_metrics(s, world.run_id, space_id)
        assert [(x.epoch, x.computed, x.diversity, x.movement) for x in m] == [
            (0, True, 0.5, None),
            (1, False, None, None),
            (2, True, 2.5, 10.0),
        ]
        assert [x.val_top1 for x in m] == pytest.approx([0.3, 0.4, 0.5])
        with pytest.raises(ValueError, match="query vector has 2 dims, the space has 3"):
            nearest_neighbours(s, space_id, [1.0, 2.0])
    with store.session() as s:
        set_movement(s, space_id, world.snapshot_ids[2], 7.5)
        with pytest.raises(NotFoundError, match="snapshot .* is not computed in space"):
            set_movement(s, space_id, world.snapshot_ids[1], 1.0)
    with store.session(readonly=True) as s:
        assert [x.movement for x in run_metrics(s, world.run_id, space_id)] == [None, None, 7.5]
    # the neighbour cache sees a rewritten snapshot
    _write_epoch(store, world, space_id, 0, shift=100.0)
    with store.session(readonly=True) as s:
        near = nearest_neighbours(s, space_id, [3.0, 4.0, 5.0], k=1)
        assert near[0].snapshot_id == world.snapshot_ids[2] and near[0].distance == pytest.approx(
            np.sqrt(3 * 7**2)
        )


def test_patches_replace_and_refuse_unsafe_paths(store: Store, world: World) -> None:
    with store.session(readonly=True) as s:
        n0 = int(run_neurons(s, world.run_id).neuron_id[0])
    row = {"neuron_id": n0, "boxes": [(3, 0, 0, 4, 4)], "file": "p/a.webp"}
    for _ in range(2):
        with store.session() as s:
            assert write_patches(s, world.snapshot_ids[1], [row]) == 1
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(PatchSet)) == 1
        assert patches_of(s, world.snapshot_ids[1], n0) == [PatchRef(0, 3, 0, 0, 4, 4, "p/a.webp")]
    for bad in ("/etc/passwd", "../outside.webp", "p/../../x.webp", ""):
        with pytest.raises(ValueError, match="must be a relative path inside the data dir"):
            with store.session() as s:
                write_patches(s, world.snapshot_ids[1], [{**row, "file": bad}])
    for boxes in ([], [(1, 2, 3, 4)], [[(1, 2, 3, 4, 5)]]):
        with pytest.raises(ValueError, match=f"patch set of neuron {n0}: patch boxes must be"):
            with store.session() as s:
                write_patches(s, world.snapshot_ids[1], [{**row, "boxes": boxes}])
    with pytest.raises(ValueError, match=f"neuron {n0} has two patch sets"):
        with store.session() as s:
            write_patches(s, world.snapshot_ids[1], [row, row])
    with pytest.raises(NotFoundError, match="no patch 5 for neuron"):
        with store.session(readonly=True) as s:
            get_patch(s, world.snapshot_ids[1], n0, 5)


def test_importance_round_trip_ranking_and_replace(store: Store, world: World) -> None:
    with store.session(readonly=True) as s:
        ids = run_neurons(s, world.run_id).neuron_id.tolist()
    with store.session() as s:
        write_patches(
            s,
            world.snapshot_ids[0],
            [{"neuron_id": ids[2], "boxes": [(1, 0, 0, 2, 2)], "file": "b.webp"}],
        )
        write_patches(
            s,
            world.snapshot_ids[2],
            [{"neuron_id": ids[2], "boxes": [(4, 0, 0, 2, 2)], "file": "a.webp"}],
        )
    for _ in range(2):  # the second write replaces the first
        with store.session() as s:
            write_importance(
                s, world.run_id, 0, 2, 1, 2, ids, [0.5, 0.0, 1.0, 0.5, 0.25], [0.1, -0.2, 0.3, 0.4, 0.0]
            )
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(ImportanceScore)) == 5
        (imp,) = list_importances(s, world.run_id)
        assert (imp.epoch_from, imp.epoch_to, imp.class_idx, imp.n_images) == (0, 2, 1, 2)
        r = importance_ranking(s, world.run_id, 0, 2, 1, limit=3)
        assert r is not None and (r.total, r.offset) == (5, 0)
        assert [(row.neuron_id, row.score, row.mean_s) for row in r.rows] == [
            (ids[2], 1.0, 0.3),
            (ids[3], 0.5, 0.4),  # equal I_n: the larger mean sensitivity first
            (ids[0], 0.5, 0.1),
        ]
        page = importance_ranking(s, world.run_id, 0, 2, 1, limit=2, offset=3)
        assert page is not None and [row.neuron_id for row in page.rows] == [ids[4], ids[1]]
        top = r.rows[0]
        assert (top.layer_idx, top.layer_name, top.channel) == (1, "features.3", 0)
        assert [p.file for p in top.patches_before] == ["b.webp"] and [p.file for p in top.patches_after] == [
            "a.webp"
        ]
        only_layer0 = importance_ranking(s, world.run_id, 0, 2, 1, layer_idx=0)
        assert only_layer0 is not None and [row.neuron_id for row in only_layer0.rows] == [ids[0], ids[1]]
        assert importance_ranking(s, world.run_id, 0, 1, 1) is None


def test_deleting_a_dataset_row_with_runs_is_refused_by_foreign_keys(store: Store, world: World) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), store.session() as s:
        s.execute(text("DELETE FROM datasets WHERE id = :i"), {"i": world.dataset_id})
    with store.session(readonly=True) as s:
        assert s.get(Dataset, world.dataset_id) is not None
