"""The space answer shows the held-out placement fit; snapshots carry split-half stability, an ``unstable`` flag
and tied-neuron counts; a neuron, and each row of an importance ranking, says whether its stimuli tie
(issue 13)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.api.settings import Settings
from backend.store import open_store, set_snapshot_quality, write_importance
from backend.store.errors import NotFoundError
from backend.store.models import Space
from backend.store.queries import tied_neurons
from tests.fixtures.synthetic import build_synthetic_store


def test_space_answer_reports_fit_stability_and_ties(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "q.db"))
    try:
        ids = build_synthetic_store(store, n_neurons=6, n_epochs=2, n_runs=1, seed=0)
        steady, shaky = ids.snapshot_ids[0]
        tied_neuron = ids.neuron_ids[0][1]
        with store.session() as s:
            space = s.get(Space, ids.space_id)
            choice = {"damping": 0.2, "heldout_r2": 0.63, "heldout_cosine": 0.81, "folds": 5, "grid": []}
            space.stats = {**space.stats, "damping": choice, "r2": 0.84}
            set_snapshot_quality(
                s, ids.space_id, steady, {"cosine": 0.95, "displacement": 0.02, "stable": True}, [], [0, 0, 0]
            )
            set_snapshot_quality(
                s,
                ids.space_id,
                shaky,
                {"cosine": 0.3, "displacement": None, "stable": False},
                [tied_neuron],
                [1, 0, 0],
            )
            try:
                set_snapshot_quality(s, ids.space_id, 10_000, None, [], [])
                raise AssertionError("an uncomputed snapshot was accepted")
            except NotFoundError as error:
                assert "10000" in str(error)
            neurons = ids.neuron_ids[0]
            write_importance(
                s, ids.run_ids[0], 0, 1, 0, 8, neurons, [0.9 - 0.1 * i for i in range(6)], [0.0] * 6
            )
        with store.session(readonly=True) as s:
            assert tied_neurons(s, [steady, shaky]) == {tied_neuron} and tied_neurons(s, [steady]) == set()
        app = create_app(store, Settings(data_dir=tmp_path, frontend_dist=tmp_path / "no-dist"))
        with TestClient(app) as client:
            body = client.get(f"/api/spaces/{ids.space_id}").json()
            assert body["placement"] == {
                "damping": 0.2,
                "heldout_r2": 0.63,
                "heldout_cosine": 0.81,
                "base_r2": 0.84,
            }
            by_id = {snap["snapshot_id"]: snap for snap in body["snapshots"]}
            assert (by_id[steady]["unstable"], by_id[steady]["stability_cosine"]) == (False, 0.95)
            assert by_id[shaky]["unstable"] is True and by_id[shaky]["stability_displacement"] is None
            assert by_id[shaky]["tied_per_layer"] == [1, 0, 0]
            url = f"/api/spaces/{ids.space_id}/snapshots/{shaky}/neurons/{{}}"
            assert client.get(url.format(tied_neuron)).json()["tied"] is True
            assert client.get(url.format(ids.neuron_ids[0][0])).json()["tied"] is False
            other = client.get(f"/api/spaces/{ids.space_id}/snapshots/{steady}/neurons/{tied_neuron}")
            assert other.json()["tied"] is False
            ranking = client.get(
                f"/api/importance/ranking?run_id={ids.run_ids[0]}&epoch_from=0&epoch_to=1&class_idx=0"
            ).json()["items"]
            assert [(r["neuron_id"], r["tied_before"], r["tied_after"]) for r in ranking] == [
                (n, False, n == tied_neuron) for n in neurons
            ]
    finally:
        store.dispose()
