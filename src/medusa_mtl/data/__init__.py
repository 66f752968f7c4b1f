"""Datasets in the NYUD_MT / PASCAL_MT on-disk formats: formats, loaders, transforms and checks."""

from .datasets import DATASETS, NYUD, DatasetInfo, PASCALContext, build_dataset, collate, get_dataset_info
from .formats import IGNORE_INDEX, DataFormatError
from .transforms import EvalTransform, TrainTransform

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "NYUD",
    "DataFormatError",
    "DatasetInfo",
    "EvalTransform",
    "PASCALContext",
    "TrainTransform",
    "build_dataset",
    "collate",
    "get_dataset_info",
]
