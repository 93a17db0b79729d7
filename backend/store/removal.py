"""Removing a run, a dataset or a space with everything derived from it (issue 12, item 7).

What each removal deletes, in ONE transaction:

* **space** — its computed snapshots (``space_snapshots``, ``neuron_states``) and the space row; patches of the
  snapshots that no other space computes any more (patches depend on a snapshot's stimuli, so a snapshot still
  computed elsewhere keeps them).
* **run** — its snapshots, layers and neurons, every space's states of its snapshots, its patches, its
  importance scores and the run row. The run's training metrics are columns of its snapshots and go with them.
* **dataset** — its image index and the dataset row.

A removal is refused (:class:`ConflictError`, one line saying what to do first) while a queued or running job
uses the object, or while another object depends on it: a space built on one of the run's snapshots, runs on
the dataset. The patch files of deleted patch sets are unlinked *after* the commit (a failed transaction leaves
every file in place; a crash between the two leaves unreferenced files, never rows without files). Files are
only ever ConceptEvo's own patch files under the data directory: never the user's checkpoints or images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from backend.store.config import Store
from backend.store.errors import ConflictError, NotFoundError
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
from backend.store.queries import invalidate_space_cache
from backend.store.queue import JobInfo, active_jobs_in

log = logging.getLogger(__name__)

Kind = Literal["run", "dataset", "space"]
KINDS: tuple[Kind, ...] = ("run", "dataset", "space")

_MODELS: dict[str, type[Run] | type[Dataset] | type[Space]] = {"run": Run, "dataset": Dataset, "space": Space}


@dataclass(frozen=True)
class Removal:
    """What a removal deleted: ``rows`` per table (only tables with rows deleted) and the patch ``files`` (paths
    relative to the data directory) unlinked after the commit."""

    kind: Kind
    id: int
    name: str
    rows: dict[str, int] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """One line for the CLI: what was removed and how much went with it."""
        rows = ", ".join(f"{n} {table}" for table, n in self.rows.items() if n) or "no rows"
        return f"removed {self.kind} {self.name!r} (id {self.id}): {rows}; {len(self.files)} patch file(s)"


def remove(store: Store, kind: Kind, ref: int | str, data_root: Path) -> Removal:
    """Remove the run, dataset or space ``ref`` (an id, or a name) and everything derived from it.

    Args:
        store: the store.
        kind: ``"run"``, ``"dataset"`` or ``"space"``.
        ref: the object's id (int) or name (str).
        data_root: the data directory that patch files live under (only files inside it are unlinked).

    Returns:
        What was deleted.

    Raises:
        NotFoundError: no such object.
        ConflictError: an active job uses it or another object depends on it (the message says what to do).
    """
    if kind not in _MODELS:
        raise ValueError(f"cannot remove a {kind!r}; expected one of {', '.join(KINDS)}")
    with store.session() as session:
        row = _find(session, kind, ref)
        oid, name = int(row.id), str(row.name)
        if kind == "space":
            rows, files = _remove_space(session, oid, name)
        elif kind == "run":
            rows, files = _remove_run(session, oid, name)
        else:
            rows, files = _remove_dataset(session, oid, name)
    removed = unlink_patch_files(files, data_root)
    log.info("removed %s %r (id %d): %s, %d file(s)", kind, name, oid, rows, removed)
    return Removal(kind, oid, name, {t: n for t, n in rows.items() if n}, tuple(files))


def _find(session: Session, kind: Kind, ref: int | str) -> Any:
    model = _MODELS[kind]
    if isinstance(ref, int):
        row = session.get(model, ref)
        if row is None:
            raise NotFoundError(f"{kind} {ref} not found")
        return row
    row = session.scalars(select(model).where(model.name == ref)).first()
    if row is None:
        names = ", ".join(repr(n) for n in session.scalars(select(model.name).order_by(model.id)).all()[:20])
        raise NotFoundError(f"no {kind} named {ref!r} ({kind}s: {names or 'none'})")
    return row


# --------------------------------------------------------------------------------------------------
# what uses an object


def _refuse_if_used(what: str, jobs: Iterable[JobInfo]) -> None:
    """Refuse (one line) when a queued or running job uses the object described by ``what``."""
    for job in jobs:
        raise ConflictError(
            f"{what} is in use by job {job.id} ({job.kind}, {job.status}); wait for it to end or cancel it "
            f"(conceptevo jobs cancel {job.id}), then remove again"
        )


def _space_jobs(jobs: list[JobInfo], space_id: int, name: str) -> list[JobInfo]:
    """Jobs that compute in the space (by id or, waiting for it, by name), evaluate it, or (re)build it."""
    return [
        job
        for job in jobs
        if job.params.get("space_id") == space_id
        or job.params.get("space_name") == name
        or (job.kind == "build_space" and job.params.get("name") == name)
    ]


def _run_jobs(jobs: list[JobInfo], run_id: int, snapshot_ids: set[int]) -> list[JobInfo]:
    """Jobs that read the run: its evolutions, its snapshots (as a base or to place), or all its epochs."""
    return [
        job
        for job in jobs
        if job.params.get("run_id") == run_id
        or job.params.get("snapshot_id") in snapshot_ids
        or job.params.get("base_snapshot_id") in snapshot_ids
        or run_id in (job.params.get("compute_runs") or [])
    ]


# --------------------------------------------------------------------------------------------------
# removals (inside the caller's transaction; return rows deleted per table and the patch files to unlink)


def _count(session: Session, stmt: Any) -> int:
    return int(session.execute(stmt.execution_options(synchronize_session=False)).rowcount or 0)


def _patch_files(session: Session, snapshots: Select[Any]) -> list[str]:
    return sorted(
        set(session.scalars(select(PatchSet.file).where(PatchSet.snapshot_id.in_(snapshots))).all())
    )


def drop_space_contents(
    session: Session, space_id: int, keep_patches_of: Iterable[int] = ()
) -> tuple[dict[str, int], list[str]]:
    """Delete every snapshot computed in the space (neuron states, points) and the patch sets of those snapshots
    no other space computes (but those of ``keep_patches_of``, which the caller rewrites), inside the caller's
    transaction; the space row stays. Used by a removal and by a ``build_space --replace``.

    Args:
        session: the caller's (writing) session.
        space_id: the space.
        keep_patches_of: snapshot ids whose patches stay (a rebuild writes its base snapshot's again).

    Returns:
        Rows deleted per table, and the patch files (relative to the data directory) to unlink after the commit
        (:func:`unlink_patch_files`).
    """
    mine = set(
        session.scalars(select(SpaceSnapshot.snapshot_id).where(SpaceSnapshot.space_id == space_id)).all()
    )
    elsewhere = set(
        session.scalars(
            select(SpaceSnapshot.snapshot_id).where(
                SpaceSnapshot.space_id != space_id, SpaceSnapshot.snapshot_id.in_(mine)
            )
        ).all()
    )
    orphans = sorted(mine - elsewhere - set(keep_patches_of))
    files = _patch_files(session, select(Snapshot.id).where(Snapshot.id.in_(orphans)))
    rows = {
        "neuron states": _count(session, delete(NeuronState).where(NeuronState.space_id == space_id)),
        "computed snapshots": _count(
            session, delete(SpaceSnapshot).where(SpaceSnapshot.space_id == space_id)
        ),
        "patch_sets": _count(session, delete(PatchSet).where(PatchSet.snapshot_id.in_(orphans))),
    }
    invalidate_space_cache(space_id)
    return rows, files


def drop_replaced_space(session: Session, name: str, keep_patches_of: int) -> list[str]:
    """Before a ``build_space`` job rebuilds the space ``name`` (``replace``): drop what the old one computed
    (:func:`drop_space_contents`, keeping the new base snapshot's patches, which the job rewrites) inside the job's
    writing transaction; the patch files to unlink after it commits (none if there is no such space yet)."""
    space_id = session.scalars(select(Space.id).where(Space.name == name)).first()
    if space_id is None:
        return []
    return drop_space_contents(session, space_id, keep_patches_of=[keep_patches_of])[1]


def _remove_space(session: Session, space_id: int, name: str) -> tuple[dict[str, int], list[str]]:
    _refuse_if_used(f"space {name!r}", _space_jobs(active_jobs_in(session), space_id, name))
    rows, files = drop_space_contents(session, space_id)
    rows["spaces"] = _count(session, delete(Space).where(Space.id == space_id))
    return rows, files


def _remove_run(session: Session, run_id: int, name: str) -> tuple[dict[str, int], list[str]]:
    snapshots = select(Snapshot.id).where(Snapshot.run_id == run_id)
    snapshot_ids = set(session.scalars(snapshots).all())
    _refuse_if_used(f"run {name!r}", _run_jobs(active_jobs_in(session), run_id, snapshot_ids))
    based = session.execute(
        select(Space.name, Snapshot.epoch)
        .join(Snapshot, Space.base_snapshot_id == Snapshot.id)
        .where(Snapshot.run_id == run_id)
        .order_by(Space.id)
    ).first()
    if based is not None:
        raise ConflictError(
            f"run {name!r} is the base of space {based.name!r} (epoch {based.epoch}); remove the space first "
            f"(conceptevo rm space {based.name!r})"
        )
    spaces = set(
        session.scalars(select(SpaceSnapshot.space_id).where(SpaceSnapshot.snapshot_id.in_(snapshots)))
    )
    files = _patch_files(session, snapshots)
    importances = select(Importance.id).where(Importance.run_id == run_id)
    layers = select(Layer.id).where(Layer.run_id == run_id)
    rows = {
        "neuron states": _count(session, delete(NeuronState).where(NeuronState.snapshot_id.in_(snapshots))),
        "computed snapshots": _count(
            session, delete(SpaceSnapshot).where(SpaceSnapshot.snapshot_id.in_(snapshots))
        ),
        "patch_sets": _count(session, delete(PatchSet).where(PatchSet.snapshot_id.in_(snapshots))),
        "importance scores": _count(
            session, delete(ImportanceScore).where(ImportanceScore.importance_id.in_(importances))
        ),
        "importances": _count(session, delete(Importance).where(Importance.run_id == run_id)),
        "neurons": _count(session, delete(Neuron).where(Neuron.layer_id.in_(layers))),
        "layers": _count(session, delete(Layer).where(Layer.run_id == run_id)),
        "snapshots": _count(session, delete(Snapshot).where(Snapshot.run_id == run_id)),
        "runs": _count(session, delete(Run).where(Run.id == run_id)),
    }
    for space_id in spaces:
        invalidate_space_cache(space_id)
    return rows, files


def _remove_dataset(session: Session, dataset_id: int, name: str) -> tuple[dict[str, int], list[str]]:
    runs = list(session.scalars(select(Run.name).where(Run.dataset_id == dataset_id).order_by(Run.id)).all())
    if runs:
        shown = ", ".join(repr(r) for r in runs[:5]) + (", …" if len(runs) > 5 else "")
        raise ConflictError(
            f"dataset {name!r} is used by run(s) {shown}; remove them first (conceptevo rm run {runs[0]!r})"
        )
    spaces = list(
        session.scalars(select(Space.name).where(Space.dataset_id == dataset_id).order_by(Space.id))
    )
    if spaces:
        raise ConflictError(
            f"dataset {name!r} is used by space {spaces[0]!r}; remove it first (conceptevo rm space {spaces[0]!r})"
        )
    rows = {
        "images": _count(session, delete(Image).where(Image.dataset_id == dataset_id)),
        "datasets": _count(session, delete(Dataset).where(Dataset.id == dataset_id)),
    }
    return rows, []


# --------------------------------------------------------------------------------------------------
# files, after the commit


def unlink_patch_files(files: Iterable[str], data_root: Path) -> int:
    """Unlink the patch files (relative paths) that lie inside ``data_root``, then their emptied folders;
    returns how many files were removed. A path outside the data directory is never touched."""
    root = Path(data_root).resolve()
    removed = 0
    folders: set[Path] = set()
    for rel in files:
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or path == root:
            log.warning("not removing %s: outside the data directory %s", rel, root)
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:  # the rows are gone already; a leftover file is only disk space
            log.warning("could not remove patch file %s: %s", path, exc)
        folders.add(path.parent)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            folder = folder.parent
    return removed
