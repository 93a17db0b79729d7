"""Removing runs, datasets and spaces (issue 12, item 7): everything derived goes, in one transaction; the user's
files stay; removal is refused while a job uses the object or another object depends on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from backend.store import open_store, removal
from backend.store.errors import ConflictError, NotFoundError
from backend.store.jobspec import ImportanceParams, enqueue_job
from backend.store.models import (
    Dataset,
    Image,
    Importance,
    ImportanceScore,
    Layer,
    Neuron,
    NeuronState,
    PatchSet,
    Run,
    Snapshot,
    Space,
    SpaceSnapshot,
)
from backend.store.queue import cancel
from backend.store.writes import write_snapshot_in_space, write_space
from tests.fixtures.synthetic import build_synthetic_store

TABLES = (
    Dataset,
    Image,
    Run,
    Snapshot,
    Layer,
    Neuron,
    Space,
    SpaceSnapshot,
    NeuronState,
    PatchSet,
    Importance,
)


@pytest.fixture
def setup(tmp_path: Path):
    """A synthetic world (2 runs × 2 epochs in one space, real patch files) plus a second space on run-0 that
    also computes run-1's epoch 0; a user's checkpoint file and image file that must never be removed."""
    data = tmp_path / "data"
    data.mkdir()
    store = open_store(str(tmp_path / "db.sqlite"))
    ids = build_synthetic_store(store, n_neurons=6, n_epochs=2, n_runs=2, data_dir=data, n_images=12)
    with store.session() as s:
        other = write_space(
            s, "other", ids.snapshot_ids[0][0], ids.dataset_id, {"k": 3}, None, None, None, {}
        )
        n = len(ids.neuron_ids[1])
        write_snapshot_in_space(
            s,
            other.id,
            ids.snapshot_ids[1][0],
            ids.neuron_ids[1],
            np.zeros((n, 3), np.int32),
            np.zeros((n, 3), np.float32),
            np.zeros((n, 4), np.float32),
            np.zeros((n, 2), np.float32),
            1.0,
            1.0,
            None,
        )
        other_id = other.id
    user = tmp_path / "user"
    user.mkdir()
    (user / "epoch_001.pt").write_bytes(b"weights")
    (user / "img.png").write_bytes(b"image")
    yield store, ids, other_id, data, user
    store.dispose()


def counts(store) -> dict[str, int]:
    with store.session(readonly=True) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in TABLES}


def patch_files(data: Path) -> set[str]:
    return {str(p.relative_to(data)) for p in (data / "patches").rglob("*.png")}


def files_of(store, snapshot_ids: list[int]) -> set[str]:
    with store.session(readonly=True) as s:
        return set(s.scalars(select(PatchSet.file).where(PatchSet.snapshot_id.in_(snapshot_ids))).all())


def test_remove_space_keeps_patches_still_computed_elsewhere(setup) -> None:
    store, ids, other_id, data, _ = setup
    shared = ids.snapshot_ids[1][0]  # computed in both spaces
    only_here = [sid for run in ids.snapshot_ids for sid in run if sid != shared]
    keep, drop = files_of(store, [shared]), files_of(store, only_here)
    assert keep and drop and (keep | drop) <= patch_files(data)

    done = removal.remove(store, "space", "synthetic-space", data)

    assert done.kind == "space" and done.id == ids.space_id and set(done.files) == drop
    assert "removed space 'synthetic-space'" in done.summary
    with store.session(readonly=True) as s:
        assert s.get(Space, ids.space_id) is None and s.get(Space, other_id) is not None
        assert s.scalar(select(func.count()).where(NeuronState.space_id == ids.space_id)) == 0
        assert s.scalar(select(func.count()).where(SpaceSnapshot.space_id == ids.space_id)) == 0
        assert s.scalar(select(func.count()).where(SpaceSnapshot.space_id == other_id)) == 1
        assert s.scalar(select(func.count()).select_from(Importance)) == 6  # a run's results, not the space's
    on_disk = patch_files(data)
    assert keep <= on_disk and not (drop & on_disk)
    assert files_of(store, [shared]) == keep and files_of(store, only_here) == set()


def test_remove_run_refused_while_a_space_is_built_on_it(setup) -> None:
    store, ids, _, data, _ = setup
    before = counts(store)
    with pytest.raises(ConflictError, match=r"run 'run-0' is the base of space .*conceptevo rm space"):
        removal.remove(store, "run", "run-0", data)
    assert counts(store) == before


def test_remove_run_takes_its_derived_results_and_no_user_file(setup) -> None:
    store, ids, other_id, data, user = setup
    run_files = files_of(store, ids.snapshot_ids[1])
    with store.session() as s:  # the run's checkpoints live in the user's folder
        s.get(Run, ids.run_ids[1]).checkpoint_dir = str(user)

    done = removal.remove(store, "run", ids.run_ids[1], data)

    assert done.rows["runs"] == 1 and done.rows["snapshots"] == 2 and done.rows["neurons"] == 6
    assert done.rows["importances"] == 3 and done.rows["importance scores"] == 18
    assert set(done.files) == run_files and not (run_files & patch_files(data))
    with store.session(readonly=True) as s:
        assert s.get(Run, ids.run_ids[1]) is None and s.get(Run, ids.run_ids[0]) is not None
        gone = ids.snapshot_ids[1]
        for model, column in (
            (Snapshot, Snapshot.id),
            (PatchSet, PatchSet.snapshot_id),
            (NeuronState, NeuronState.snapshot_id),
        ):
            assert s.scalar(select(func.count()).select_from(model).where(column.in_(gone))) == 0
        assert s.scalar(select(func.count()).where(SpaceSnapshot.space_id == other_id)) == 0
        assert s.scalar(select(func.count()).where(Neuron.id.in_(ids.neuron_ids[1]))) == 0
        assert s.scalar(select(func.count()).select_from(ImportanceScore)) == 18  # run-0's
    assert (user / "epoch_001.pt").read_bytes() == b"weights"


def test_remove_dataset_only_after_its_runs_and_never_its_images(setup) -> None:
    store, ids, _, data, user = setup
    with pytest.raises(ConflictError, match=r"used by run\(s\) 'run-0', 'run-1'; remove them first"):
        removal.remove(store, "dataset", "synthetic", data)
    for kind, name in (("space", "synthetic-space"), ("space", "other"), ("run", "run-0"), ("run", "run-1")):
        removal.remove(store, kind, name, data)  # type: ignore[arg-type]
    with store.session() as s:
        s.get(Dataset, ids.dataset_id).root = str(user)
    done = removal.remove(store, "dataset", ids.dataset_id, data)
    assert done.rows == {"images": 12, "datasets": 1}
    assert set(counts(store).values()) == {0}
    assert patch_files(data) == set()
    assert (user / "img.png").read_bytes() == b"image"


def test_remove_refused_while_a_job_uses_it(setup) -> None:
    store, ids, _, data, _ = setup
    job, _ = enqueue_job(store, ImportanceParams(run_id=ids.run_ids[1], epoch_from=0, epoch_to=1))
    with pytest.raises(
        ConflictError, match=rf"in use by job {job.id} \(importance, queued\).*jobs cancel {job.id}"
    ):
        removal.remove(store, "run", "run-1", data)
    cancel(store, job.id)
    assert removal.remove(store, "run", "run-1", data).rows["runs"] == 1


def test_unknown_names_and_ids(setup) -> None:
    store, _, _, data, _ = setup
    with pytest.raises(NotFoundError, match=r"no space named 'nope' \(spaces: 'synthetic-space', 'other'\)"):
        removal.remove(store, "space", "nope", data)
    with pytest.raises(NotFoundError, match="run 999 not found"):
        removal.remove(store, "run", 999, data)


def test_failed_transaction_removes_nothing(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids, _, data, _ = setup
    before, files = counts(store), patch_files(data)

    def boom(space_id: int | None = None) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(removal, "invalidate_space_cache", boom)
    with pytest.raises(RuntimeError):
        removal.remove(store, "space", "synthetic-space", data)
    assert counts(store) == before and patch_files(data) == files


def test_unlink_never_leaves_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "patches" / "s1").mkdir(parents=True)
    (data / "patches" / "s1" / "n1.webp").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"keep")
    assert (
        removal.unlink_patch_files(["patches/s1/n1.webp", "../secret", "patches/s9/missing.webp"], data) == 1
    )
    assert (tmp_path / "secret").exists() and data.is_dir() and not (data / "patches").exists()


def test_a_rebuild_drops_the_old_space_results_but_the_new_base_patches(setup) -> None:
    store, ids, other_id, data, _ = setup
    base = ids.snapshot_ids[0][1]  # the rebuilt space's base: the job rewrites its patches itself
    shared = ids.snapshot_ids[1][0]  # also computed in "other"
    dropped = [sid for run in ids.snapshot_ids for sid in run if sid not in (base, shared)]
    with store.session() as s:
        files = removal.drop_replaced_space(s, "synthetic-space", keep_patches_of=base)
        assert removal.drop_replaced_space(s, "not-built-yet", keep_patches_of=base) == []
    assert set(files) == files_of_disk(data, dropped)
    assert removal.unlink_patch_files(files, data) == len(files)
    with store.session(readonly=True) as s:
        assert s.get(Space, ids.space_id) is not None  # the row stays: the rebuild writes it again
        assert s.scalar(select(func.count()).where(SpaceSnapshot.space_id == ids.space_id)) == 0
        assert s.scalar(select(func.count()).where(SpaceSnapshot.space_id == other_id)) == 1
    assert files_of(store, dropped) == set() and files_of(store, [base]) and files_of(store, [shared])


def files_of_disk(data: Path, snapshot_ids: list[int]) -> set[str]:
    return {f for f in patch_files(data) if int(f.split("/")[1]) in snapshot_ids}
