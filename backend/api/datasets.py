"""Datasets: ``GET /api/datasets`` and ``GET /api/datasets/{dataset_id}``."""

from __future__ import annotations

from fastapi import APIRouter

from backend.store import queries

from .convert import dataset_out
from .deps import DataDirDep, DatasetId, DbDep
from .removal import REMOVE_RESPONSES, remove_object
from .schemas import DatasetOut, ErrorOut, RemovedOut

router = APIRouter(tags=["datasets"])


@router.get("/datasets", response_model=list[DatasetOut], summary="All datasets")
def list_datasets(db: DbDep) -> list[DatasetOut]:
    """Every registered image dataset, by id."""

    return db.read(lambda s: [dataset_out(d) for d in queries.list_datasets(s)])


@router.get(
    "/datasets/{dataset_id}",
    response_model=DatasetOut,
    responses={404: {"model": ErrorOut}},
    summary="One dataset",
)
def get_dataset(dataset_id: DatasetId, db: DbDep) -> DatasetOut:
    """One dataset with its class names."""
    return db.read(lambda s: dataset_out(queries.get_dataset(s, dataset_id)))


@router.delete(
    "/datasets/{dataset_id}",
    response_model=RemovedOut,
    responses=REMOVE_RESPONSES,
    summary="Remove a dataset",
)
def delete_dataset(dataset_id: DatasetId, db: DbDep, data_dir: DataDirDep) -> RemovedOut:
    """Remove the dataset's registration (its image index). Refused (409) while runs use it: remove them first.
    The image files are never touched."""
    return remove_object(db, data_dir, "dataset", dataset_id)
