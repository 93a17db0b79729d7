"""Importance of concept evolutions: the computations, and neurons ranked by score for (run, t, t′, class)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.store.errors import NotFoundError
from backend.store.models import Importance, ImportanceScore, Layer, Neuron, Run, Snapshot

from . import queries
from .deps import MAX_ID, DbDep, ImportanceId
from .schemas import ErrorOut, ImportanceOut, ImportanceRankingOut, RankedNeuronOut

router = APIRouter(tags=["importance"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "Unknown run or importance computation."}}
OptId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Epoch = Annotated[int, Query(ge=0, le=1_000_000)]
OptEpoch = Annotated[int | None, Query(ge=0, le=1_000_000)]
ClassIdx = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (1–1000).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]


@router.get("/importance", response_model=list[ImportanceOut], summary="Importance computations")
def list_importance(
    db: DbDep,
    run_id: OptId = None,
    epoch_from: OptEpoch = None,
    epoch_to: OptEpoch = None,
    class_idx: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> list[ImportanceOut]:
    """The importance computations available, optionally filtered, by run, epochs and class."""

    def q(session: Session) -> list[ImportanceOut]:
        stmt = select(Importance).order_by(
            Importance.run_id, Importance.epoch_from, Importance.epoch_to, Importance.class_idx, Importance.id
        )
        if run_id is not None:
            stmt = stmt.where(Importance.run_id == run_id)
        if epoch_from is not None:
            stmt = stmt.where(Importance.epoch_from == epoch_from)
        if epoch_to is not None:
            stmt = stmt.where(Importance.epoch_to == epoch_to)
        if class_idx is not None:
            stmt = stmt.where(Importance.class_idx == class_idx)
        rows = list(session.scalars(stmt))
        names = queries.class_names_of_runs(session, (r.run_id for r in rows))
        return [queries.importance_out(r, names.get(r.run_id, [])) for r in rows]

    return db.read(q)


def ranking(session: Session, imp: Importance, limit: int, offset: int) -> ImportanceRankingOut:
    """One page of the ranking of ``imp`` with each neuron's patches at ``epoch_from`` and ``epoch_to``."""
    total = session.scalar(
        select(func.count()).select_from(ImportanceScore).where(ImportanceScore.importance_id == imp.id)
    )
    rows = session.execute(
        select(
            ImportanceScore.neuron_id,
            ImportanceScore.score,
            ImportanceScore.mean_s,
            Layer.idx,
            Layer.name,
            Neuron.channel,
        )
        .join(Neuron, Neuron.id == ImportanceScore.neuron_id)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(ImportanceScore.importance_id == imp.id)
        .order_by(ImportanceScore.score.desc(), ImportanceScore.mean_s.desc(), ImportanceScore.neuron_id)
        .limit(limit)
        .offset(offset)
    ).all()
    snaps = dict(
        session.execute(
            select(Snapshot.epoch, Snapshot.id).where(
                Snapshot.run_id == imp.run_id, Snapshot.epoch.in_([imp.epoch_from, imp.epoch_to])
            )
        ).all()
    )
    before_sid, after_sid = snaps.get(imp.epoch_from), snaps.get(imp.epoch_to)
    pairs = [(sid, r[0]) for r in rows for sid in (before_sid, after_sid) if sid is not None]
    patches = queries.patches_of(session, pairs)
    names = queries.class_names_of_runs(session, [imp.run_id])
    return ImportanceRankingOut(
        importance=queries.importance_out(imp, names.get(imp.run_id, [])),
        total=int(total or 0),
        offset=offset,
        items=[
            RankedNeuronOut(
                rank=offset + i + 1,
                neuron_id=nid,
                layer_idx=lidx,
                layer_name=lname,
                channel=ch,
                score=score,
                mean_s=mean_s,
                before=patches.get((before_sid, nid), []) if before_sid is not None else [],
                after=patches.get((after_sid, nid), []) if after_sid is not None else [],
            )
            for i, (nid, score, mean_s, lidx, lname, ch) in enumerate(rows)
        ],
    )


@router.get(
    "/importance/ranking",
    response_model=ImportanceRankingOut,
    responses=NOT_FOUND,
    summary="Neurons ranked by importance for (run, t, t′, class)",
)
def get_ranking(
    db: DbDep,
    run_id: Annotated[int, Query(ge=1, le=MAX_ID)],
    epoch_from: Epoch,
    epoch_to: Epoch,
    class_idx: ClassIdx,
    limit: Limit = 20,
    offset: Offset = 0,
) -> ImportanceRankingOut:
    """The concept evolutions `epoch_from → epoch_to` of run `run_id` that matter most for class `class_idx`:
    neurons by importance score (then mean sensitivity, then id), each with its patches before and after."""

    def q(session: Session) -> ImportanceRankingOut:
        imp = session.scalars(
            select(Importance).where(
                Importance.run_id == run_id,
                Importance.epoch_from == epoch_from,
                Importance.epoch_to == epoch_to,
                Importance.class_idx == class_idx,
            )
        ).first()
        if imp is None:
            queries.get_or_404(session, Run, run_id, "run")
            raise NotFoundError(
                f"importance of run {run_id} for class {class_idx} from epoch {epoch_from} to {epoch_to} is not "
                "computed; POST /api/jobs with kind 'importance' to compute it"
            )
        return ranking(session, imp, limit, offset)

    return db.read(q)


@router.get(
    "/importance/{importance_id}",
    response_model=ImportanceRankingOut,
    responses=NOT_FOUND,
    summary="One importance computation's ranking",
)
def get_importance(
    importance_id: ImportanceId, db: DbDep, limit: Limit = 20, offset: Offset = 0
) -> ImportanceRankingOut:
    """Same as `/importance/ranking`, addressed by the computation's id."""
    return db.read(
        lambda s: ranking(
            s, queries.get_or_404(s, Importance, importance_id, "importance computation"), limit, offset
        )
    )
