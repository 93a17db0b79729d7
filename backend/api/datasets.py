"""Datasets: ``GET /api/datasets`` and ``GET /api/datasets/{dataset_id}``."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.store.models import Dataset

from .deps import DatasetId, DbDep
from .queries import dataset_out, get_or_404
from .schemas import DatasetOut, ErrorOut

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list[DatasetOut], summary="All datasets")
def list_datasets(db: DbDep) -> list[DatasetOut]:
    """Every registered image dataset, by id."""

    def q(session: Session) -> list[DatasetOut]:
        return [dataset_out(d) for d in session.scalars(select(Dataset).order_by(Dataset.id))]

    return db.read(q)


@router.get(
    "/datasets/{dataset_id}",
    response_model=DatasetOut,
    responses={404: {"model": ErrorOut}},
    summary="One dataset",
)
def get_dataset(dataset_id: DatasetId, db: DbDep) -> DatasetOut:
    """One dataset with its class names."""
    return db.read(lambda s: dataset_out(get_or_404(s, Dataset, dataset_id, "dataset")))
