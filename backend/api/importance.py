"""Importance of concept evolutions: the computations, and neurons ranked by score for (run, t, t′, class)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from backend.store import queries
from backend.store.errors import NotFoundError
from backend.store.queries import PatchRef

from .convert import importance_out, patch_out
from .deps import MAX_ID, DbDep, ImportanceId
from .schemas import (
    ErrorOut,
    ImportanceOut,
    ImportanceRankingOut,
    ImportanceScoresOut,
    PatchOut,
    RankedNeuronOut,
)

if TYPE_CHECKING:  # a row the store returns
    from backend.store.models import Importance

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
        rows = queries.list_importances(session, run_id, epoch_from, epoch_to, class_idx)
        names = queries.class_names_of_runs(session, (r.run_id for r in rows))
        return [importance_out(r, names.get(r.run_id, [])) for r in rows]

    return db.read(q)


def ranking(session: Session, imp: Importance, limit: int, offset: int) -> ImportanceRankingOut:
    """One page of the ranking of ``imp`` with each neuron's patches at ``epoch_from`` and ``epoch_to``."""
    page = queries.ranking_of(session, imp, limit, offset)
    names = queries.class_names_of_runs(session, [imp.run_id])

    def refs(snapshot_id: int | None, neuron_id: int, patches: list[PatchRef]) -> list[PatchOut]:
        return [patch_out(snapshot_id, neuron_id, p) for p in patches] if snapshot_id else []

    return ImportanceRankingOut(
        importance=importance_out(imp, names.get(imp.run_id, [])),
        total=page.total,
        offset=page.offset,
        items=[
            RankedNeuronOut(
                rank=page.offset + i + 1,
                neuron_id=row.neuron_id,
                layer_idx=row.layer_idx,
                layer_name=row.layer_name,
                channel=row.channel,
                score=row.score,
                mean_s=row.mean_s,
                before=refs(page.snapshot_from, row.neuron_id, row.patches_before),
                after=refs(page.snapshot_to, row.neuron_id, row.patches_after),
                tied_before=row.tied_before,
                tied_after=row.tied_after,
            )
            for i, row in enumerate(page.rows)
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
        imp = queries.find_importance(session, run_id, epoch_from, epoch_to, class_idx)
        if imp is None:
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
    return db.read(lambda s: ranking(s, queries.get_importance(s, importance_id), limit, offset))


@router.get(
    "/importance/{importance_id}/scores",
    response_model=ImportanceScoresOut,
    responses=NOT_FOUND,
    summary="Every neuron's score in one importance computation (for colouring a map)",
)
def get_importance_scores(importance_id: ImportanceId, db: DbDep) -> ImportanceScoresOut:
    """All scored neurons at once, column-wise and best first (the order of the ranking: score, then mean_s,
    descending; ties by neuron id), with each one's 1-based rank; no patches."""

    def q(session: Session) -> ImportanceScoresOut:
        imp = queries.get_importance(session, importance_id)
        scores = queries.importance_scores(session, imp)
        names = queries.class_names_of_runs(session, [imp.run_id])
        return ImportanceScoresOut(
            importance=importance_out(imp, names.get(imp.run_id, [])),
            neuron_id=scores.neuron_id.tolist(),
            score=scores.score.tolist(),
            mean_s=scores.mean_s.tolist(),
            rank=scores.rank.tolist(),
        )

    return db.read(q)
