"""Concept labels (the dominant class of each neuron's stimuli) and the whole-ranking importance reads."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import update

from backend.store import (
    NeuronState,
    SpaceSnapshot,
    Store,
    dataset_labels,
    dominant_labels,
    importance_scores,
    neuron_importances,
    pack_points,
    run_neurons,
    snapshot_concepts,
    write_importance,
    write_snapshot_in_space,
    write_space,
)
from backend.store import queries as store_queries

from .conftest import World


def test_dominant_labels_ties_unknown_and_empty_rows() -> None:
    lengths = np.array([3, 4, 0, 2, 3])
    labels = np.array(
        [2, 2, 0]  # majority 2
        + [1, 0, 0, 1]  # tie 0/1 → 0
        + []  # no stimuli → -1
        + [-1, 9]  # only unknown images → -1
        + [-1, 1, 2]  # unknown counts in the length, the tie 1/2 → 1
    )
    best, share = dominant_labels(lengths, labels, 3)
    assert best.dtype == np.int32 and share.dtype == np.float32
    assert best.tolist() == [2, 0, -1, -1, 1]
    assert share.tolist() == [np.float32(2 / 3), 0.5, 0.0, 0.0, np.float32(1 / 3)]


def test_dominant_labels_chunks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 6, size=500)
    labels = rng.integers(-1, 7, size=int(lengths.sum()))
    whole = dominant_labels(lengths, labels, 7)
    monkeypatch.setattr(store_queries, "_MAX_COUNT_CELLS", 20)  # 2 neurons per chunk
    chunked = dominant_labels(lengths, labels, 7)
    assert whole[0].tolist() == chunked[0].tolist() and whole[1].tolist() == chunked[1].tolist()
    # the slow, literal rule
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    for i, n in enumerate(lengths):
        mine = [int(v) for v in labels[offsets[i] : offsets[i + 1]] if 0 <= v < 7]
        if not mine:
            assert (whole[0][i], whole[1][i]) == (-1, 0.0)
            continue
        counts = [mine.count(c) for c in range(7)]
        assert whole[0][i] == counts.index(max(counts))
        assert whole[1][i] == np.float32(max(counts) / n)


def _space_with_snapshot(store: Store, world: World) -> tuple[int, list[int]]:
    """A space (k=2) on the small world with epoch 0 computed; stimuli chosen to exercise the rule."""
    with store.session() as s:
        space = write_space(
            s, "main", world.snapshot_ids[0], world.dataset_id, {"k": 2, "dim": 2}, None, None, None, {}
        )
        ids = run_neurons(s, world.run_id).neuron_id.tolist()
        # images 0..5 have labels i % 3: circle, square, star, circle, square, star
        stimuli = [[0, 3], [1, 2], [5, 2], [4, 1], [0, 5]]
        write_snapshot_in_space(
            s,
            space.id,
            world.snapshot_ids[0],
            ids,
            stimuli=np.array(stimuli),
            maxima=np.ones((5, 2)),
            vectors=np.zeros((5, 2)),
            xy=np.zeros((5, 2)),
            coverage=1.0,
            diversity=None,
            movement=None,
        )
        return space.id, ids


def test_snapshot_concepts_follow_the_points_order(store: Store, world: World) -> None:
    space_id, ids = _space_with_snapshot(store, world)
    with store.session() as s:
        # Another points order than neuron id order, and one neuron whose stimuli are gone.
        order = ids[::-1]
        s.execute(
            update(SpaceSnapshot)
            .where(SpaceSnapshot.space_id == space_id)
            .values(points=pack_points(order, [0] * 5, [0.0] * 5, [0.0] * 5))
        )
        s.execute(update(NeuronState).where(NeuronState.neuron_id == ids[3]).values(stimuli=b""))
    with store.session(readonly=True) as s:
        c = snapshot_concepts(s, space_id, world.snapshot_ids[0])
        assert snapshot_concepts(s, space_id, world.snapshot_ids[1]) is None
    assert c is not None
    assert (c.space_id, c.snapshot_id, c.epoch, c.k) == (space_id, world.snapshot_ids[0], 0, 2)
    assert c.class_names == ["circle", "square", "star"]
    assert c.neuron_id.tolist() == order
    # by neuron id: [0,3] circle×2; [1,2] tie → square; [5,2] star×2; none; [0,5] tie → circle
    assert c.class_idx.tolist() == [0, -1, 2, 1, 0]
    assert c.share.tolist() == [0.5, 0.0, 1.0, 0.5, 1.0]


def test_importance_scores_and_neuron_importances_share_the_ranking(store: Store, world: World) -> None:
    with store.session() as s:
        ids = run_neurons(s, world.run_id).neuron_id.tolist()
        # ties on score (→ mean_s desc) and on both (→ neuron id asc)
        imp = write_importance(
            s, world.run_id, 0, 2, 1, 2, ids, [0.5, 0.9, 0.5, 0.5, 0.1], [0.2, 0.0, 0.3, 0.2, 0.0]
        )
        write_importance(s, world.run_id, 0, 1, 1, 2, ids[:2], [0.1, 0.2], [0.0, 0.0])
    with store.session(readonly=True) as s:
        scores = importance_scores(s, imp)
        ranking = store_queries.ranking_of(s, imp, limit=10)
        mine = neuron_importances(s, ids[3])
        first = neuron_importances(s, ids[0])
    assert scores.neuron_id.tolist() == [ids[1], ids[2], ids[0], ids[3], ids[4]]
    assert scores.neuron_id.tolist() == [r.neuron_id for r in ranking.rows]
    assert scores.score.tolist() == [0.9, 0.5, 0.5, 0.5, 0.1]
    assert scores.mean_s.tolist() == [0.0, 0.3, 0.2, 0.2, 0.0]
    assert scores.rank.tolist() == [1, 2, 3, 4, 5]
    assert [(m.importance.epoch_to, m.rank, m.total, m.score) for m in mine] == [(2, 4, 5, 0.5)]
    assert [(m.importance.epoch_to, m.rank, m.total) for m in first] == [(1, 2, 2), (2, 3, 5)]


def test_dataset_labels_are_indexed_by_image_and_cached(store: Store, world: World) -> None:
    with store.session(readonly=True) as s:
        labels = dataset_labels(s, world.dataset_id, 6)
        assert labels.tolist() == [0, 1, 2, 0, 1, 2] and labels.dtype == np.int32
        assert not labels.flags.writeable
        assert dataset_labels(s, world.dataset_id, 6) is labels  # read once per process
