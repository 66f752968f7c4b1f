"""NYUD and PASCAL-Context torch Datasets, the ``DATASETS`` registry, ``build_dataset`` and ``collate``.

A dataset item is the sample dict of ``docs/ARCHITECTURE.md``: ``image`` float32 [3,H,W] (ImageNet
normalised), one label per requested task (``semseg`` / ``human_parts`` int64 [H,W] with 255 = ignore;
``depth`` / ``edge`` / ``sal`` float32 [1,H,W]; ``normals`` float32 [3,H,W]) and ``meta`` =
``{"id": str, "orig_size": (H, W)}`` (the image size on disk).

Example:
    >>> ds = build_dataset("nyud", "data/NYUD_MT", "train", ["semseg", "depth"], train=True)  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import formats, generic
from .formats import DataFormatError
from .transforms import (
    NYUD_AUGMENT,
    PASCAL_AUGMENT,
    AugmentParams,
    EvalTransform,
    TrainTransform,
    to_tensor_sample,
)

NumpyTransform = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


class _MTDataset(Dataset):
    """Common part of the two datasets (not registered)."""

    name: str = ""
    tasks_available: tuple[str, ...] = ()

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        tasks: Sequence[str] = ("semseg",),
        transform: NumpyTransform | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self._cache: dict[int, dict[str, np.ndarray]] | None = None
        if split not in self._splits():
            raise ValueError(f"unknown split {split!r} for {self.name}; valid splits: {list(self._splits())}")
        if isinstance(tasks, str):
            tasks = [tasks]
        tasks = list(tasks)
        if not tasks:
            raise ValueError(f"no task given for {self.name}; valid tasks: {list(self.tasks_available)}")
        unknown = [t for t in tasks if t not in self.tasks_available]
        if unknown:
            raise ValueError(
                f"unknown task(s) {unknown} for dataset {self.name!r}; "
                f"valid tasks: {list(self.tasks_available)}"
            )
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"duplicate tasks in {tasks}")
        if not self.root.is_dir():
            raise DataFormatError(self.root, f"dataset root folder of {self.name!r} does not exist")
        self.split = split
        self.tasks = tasks
        self.transform = transform
        if ids is None:
            self.ids = self._read_split(split)
        else:
            self.ids = [str(i) for i in ids]
        self._check_files()

    def _splits(self) -> Sequence[str]:
        return formats.SPLITS

    def _kinds(self) -> dict[str, str] | None:
        return None

    def _read_split(self, split: str) -> list[str]:
        return formats.read_split(self.root, self.name, split)

    def _task_files(self, sample_id: str, task: str) -> list[Path]:
        return formats.task_files(self.name, self.root, sample_id, task)

    def _check_files(self) -> None:
        """Every id must have its image and the files of every requested task (clear error otherwise)."""
        for sample_id in self.ids:
            paths = [self._image_path(sample_id)]
            for t in self.tasks:
                paths += self._task_files(sample_id, t)
            for p in paths:
                if not p.is_file():
                    raise DataFormatError(
                        p, f"missing file for sample {sample_id!r} of split {self.split!r} ({self.name})"
                    )

    def _image_path(self, sample_id: str) -> Path:  # pragma: no cover - overridden
        raise NotImplementedError

    def read_numpy(self, index: int) -> dict[str, np.ndarray]:
        """The raw NumPy sample (image + labels at the image's size on disk) without transform."""
        cache = self._cache
        if cache is None:
            return self._read(index)
        sample = cache.get(index)
        if sample is None:
            sample = self._read(index)
            for arr in sample.values():
                arr.setflags(write=False)  # shared by every later read: a transform must not write into it
            cache[index] = sample
        return dict(sample)

    def _read(self, index: int) -> dict[str, np.ndarray]:
        return formats.read_sample(self.name, self.root, self.ids[index], self.tasks)

    def cache_samples(self, enabled: bool = True) -> None:
        """Keep every sample in memory, decoded, after its first read (the transform still runs on every
        read). For small datasets read for many epochs: it takes memory for the whole decoded split (per
        DataLoader worker), and saves the file reads and decoding of every later epoch.

        Example:
            >>> ds = build_dataset("nyud", root, "train", ["semseg"], train=True)  # doctest: +SKIP
            >>> ds.cache_samples()  # doctest: +SKIP
        """
        self._cache = {} if enabled else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.read_numpy(index)
        meta = {"id": self.ids[index], "orig_size": tuple(int(s) for s in sample["image"].shape[:2])}
        if self.transform is not None:
            sample = self.transform(sample)
        return to_tensor_sample(sample, meta, getattr(self.transform, "kinds", None) or self._kinds())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, tasks={self.tasks}, "
            f"n={len(self)}, transform={self.transform!r})"
        )


class NYUD(_MTDataset):
    """NYUD-v2 multi-task dataset in the ``NYUD_MT`` layout (SPEC §6).

    Args:
        root: the ``NYUD_MT`` folder.
        split: ``"train"`` or ``"val"`` (read from ``gt_sets/<split>.txt`` unless ``ids`` is given).
        tasks: subset of ``semseg``, ``depth``, ``normals``, ``edge``.
        transform: NumPy-sample transform (:class:`TrainTransform`, :class:`EvalTransform`) or ``None``.
        ids: explicit sample ids (e.g. a validation subset carved from train); overrides the split file.
    """

    name = "nyud"
    tasks_available = formats.NYUD_TASKS

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        tasks: Sequence[str] = ("semseg", "depth"),
        transform: NumpyTransform | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        super().__init__(root, split, tasks, transform, ids)

    def _image_path(self, sample_id: str) -> Path:
        return formats.nyud_paths(self.root, sample_id)["image"]


class PASCALContext(_MTDataset):
    """PASCAL-Context multi-task dataset in the ``PASCAL_MT`` layout (SPEC §6).

    Args:
        root: the ``PASCAL_MT`` folder.
        split: ``"train"`` or ``"val"`` (``ImageSets/Context/<split>.txt`` unless ``ids`` is given).
        tasks: subset of ``semseg``, ``human_parts``, ``sal``, ``normals``, ``edge``.
        transform: NumPy-sample transform or ``None``.
        ids: explicit sample ids; overrides the split file.
        drop_images_without_person: drop ids without any labelled person part (:func:`formats.has_person`),
            as in a parts-only run. Otherwise such images have an all-ignore (255) ``human_parts`` label.
    """

    name = "pascal"
    tasks_available = formats.PASCAL_TASKS

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        tasks: Sequence[str] = ("semseg", "human_parts"),
        transform: NumpyTransform | None = None,
        ids: Sequence[str] | None = None,
        drop_images_without_person: bool = False,
    ) -> None:
        super().__init__(root, split, tasks, transform, ids)
        self.drop_images_without_person = drop_images_without_person
        if drop_images_without_person:
            for sample_id in self.ids:  # the files exist (checked above) before has_person reads them
                p = formats.pascal_paths(self.root, sample_id)["human_parts"]
                if not p.is_file():
                    raise DataFormatError(
                        p, f"missing file for sample {sample_id!r} (needed to find persons)"
                    )
            self.ids = [i for i in self.ids if formats.has_person(self.root, i)]

    def _image_path(self, sample_id: str) -> Path:
        return formats.pascal_paths(self.root, sample_id)["image"]


class GenericDataset(_MTDataset):
    """A dataset in the generic layout of :mod:`medusa_mtl.data.generic` (``dataset.yaml`` + folders).

    Args:
        root: the dataset folder (the one holding ``dataset.yaml``).
        split: ``"train"`` or ``"val"`` (read from the split files unless ``ids`` is given).
        tasks: tasks declared in the spec.
        transform: NumPy-sample transform or ``None``.
        ids: explicit sample ids; overrides the split file.
        spec: the parsed declaration (:func:`medusa_mtl.data.generic.load_spec`); default: ``root/dataset.yaml``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        tasks: Sequence[str] | None = None,
        transform: NumpyTransform | None = None,
        ids: Sequence[str] | None = None,
        spec: generic.DatasetSpec | None = None,
    ) -> None:
        spec = generic.load_spec(root) if spec is None else spec.with_root(root)
        self.spec = spec
        self.name = spec.name
        self.tasks_available = spec.task_names
        self.reader = generic.GenericReader(spec)
        super().__init__(root, split, list(spec.task_names) if tasks is None else tasks, transform, ids)

    def _splits(self) -> Sequence[str]:
        return tuple(self.spec.splits)

    def _kinds(self) -> dict[str, str] | None:
        return self.spec.kinds

    def _read_split(self, split: str) -> list[str]:
        return generic.read_ids(self.spec, split)

    def _task_files(self, sample_id: str, task: str) -> list[Path]:
        return [self.reader.label_path(sample_id, task)]

    def _image_path(self, sample_id: str) -> Path:
        return self.reader.image_path(sample_id)

    def _read(self, index: int) -> dict[str, np.ndarray]:
        return self.reader.read(self.ids[index], self.tasks)


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the code needs to know about a dataset.

    Attributes:
        name: registry key (``"nyud"``, ``"pascal"``), also the dataset key of ``tasks.py``.
        cls: the Dataset class.
        default_size: fixed network input (H, W) of SPEC §6.
        tasks: tasks the dataset provides.
        augment: random augmentation of the train transform.
        folder: the conventional folder name of the release.
        spec: the declaration of a generic dataset (``None`` for the built-in ones).
    """

    name: str
    cls: type[_MTDataset]
    default_size: tuple[int, int]
    tasks: tuple[str, ...]
    augment: AugmentParams
    folder: str
    spec: generic.DatasetSpec | None = None

    @property
    def kinds(self) -> dict[str, str] | None:
        """Task -> label kind for the transforms (``None``: the built-in tasks' kinds)."""
        return None if self.spec is None else self.spec.kinds


DATASETS: dict[str, DatasetInfo] = {
    "nyud": DatasetInfo("nyud", NYUD, (480, 640), formats.NYUD_TASKS, NYUD_AUGMENT, "NYUD_MT"),
    "pascal": DatasetInfo(
        "pascal", PASCALContext, (512, 512), formats.PASCAL_TASKS, PASCAL_AUGMENT, "PASCAL_MT"
    ),
}

_ALIASES = {
    "nyud": "nyud",
    "nyudv2": "nyud",
    "nyud_mt": "nyud",
    "synthetic_nyud": "nyud",
    "pascal": "pascal",
    "pascal_context": "pascal",
    "pascalcontext": "pascal",
    "pascal_mt": "pascal",
    "synthetic_pascal": "pascal",
}


def register_spec(spec: generic.DatasetSpec) -> DatasetInfo:
    """Register a declared dataset: its tasks become ordinary tasks of :mod:`medusa_mtl.tasks` and
    :func:`get_dataset_info` knows it (an earlier declaration of the same name is replaced)."""
    generic.declare_spec_tasks(spec)
    info = DatasetInfo(spec.name, GenericDataset, spec.size, spec.task_names, spec.augment_params(),
                       str(spec.root) if spec.root is not None else spec.name, spec)
    DATASETS[spec.name] = info
    _ALIASES[spec.name] = spec.name
    return info


def get_dataset_info(name: str | os.PathLike[str]) -> DatasetInfo:
    """Registry lookup (case-insensitive, with aliases such as ``pascal_context``); clear error if unknown.

    ``name`` may also be a ``dataset.yaml`` (or a folder holding one): it is read, validated and registered
    (its tasks become ordinary tasks, see :mod:`medusa_mtl.data.generic`)."""
    key = _ALIASES.get(str(name).lower())
    if key is not None:
        return DATASETS[key]
    if generic.find_spec_file(name) is not None:
        return register_spec(generic.load_spec(name))
    if str(name).endswith((".yaml", ".yml")) or os.sep in str(name):
        raise FileNotFoundError(f"dataset {str(name)!r}: no such {generic.SPEC_FILE} (or folder holding one)")
    raise ValueError(f"unknown dataset {str(name)!r}; valid datasets: {sorted(DATASETS)} "
                     f"or the path of a {generic.SPEC_FILE}")


def forget_declared(name: str | None = None) -> None:
    """Forget a declared dataset (``None``: every one): its registry entry and its tasks. The built-in datasets
    stay. For long-lived processes (notebooks, test suites) that load many ``dataset.yaml`` files."""
    names = [n for n, info in DATASETS.items() if info.spec is not None and (name is None or n == name)]
    for n in names:
        del DATASETS[n]
        _ALIASES.pop(n, None)
        generic.forget_spec_tasks(n)


def register_declaration(decl: Mapping[str, Any]) -> DatasetInfo:
    """Register a declaration stored by :meth:`~medusa_mtl.data.generic.DatasetSpec.to_dict` (a checkpoint's)."""
    return register_spec(generic.spec_from_dict(dict(decl)))


def resolve_dataset(name: str | os.PathLike[str]) -> str:
    """The registry name of a dataset given by name or by ``dataset.yaml`` path (registering the latter)."""
    return get_dataset_info(name).name


def dataset_root(name: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> Path:
    """``root``; without one, the folder of a declared dataset's ``dataset.yaml``, or ``data/synthetic/<folder>``
    for a built-in dataset (where ``medusa data synth`` writes it)."""
    if root is not None:
        return Path(root)
    info = get_dataset_info(name)
    if info.spec is None:
        return Path("data/synthetic") / info.folder
    if info.spec.root is not None:
        return info.spec.root
    raise ValueError(f"dataset {info.name!r}: give the dataset folder (--root / --data.root)")


def read_split_ids(name: str, root: str | os.PathLike[str], split: str) -> list[str]:
    """The ids of a split of any registered dataset (built-in layout or ``dataset.yaml``)."""
    info = get_dataset_info(name)
    if info.spec is not None:
        return generic.read_ids(info.spec.with_root(root), split)
    return formats.read_split(root, info.name, split)


def build_transform(
    name: str, train: bool, size: Sequence[int] | None = None, augment: AugmentParams | None = None
) -> TrainTransform | EvalTransform:
    """The train or eval transform of a dataset at ``size`` (default: the dataset's default size).

    ``augment`` replaces the dataset's train augmentation (default: its protocol, SPEC §6).
    """
    info = get_dataset_info(name)
    size = info.default_size if size is None else size
    if not train:
        return EvalTransform(size, kinds=info.kinds)
    return TrainTransform(size, info.augment if augment is None else augment, kinds=info.kinds)


def build_dataset(
    name: str,
    root: str | os.PathLike[str],
    split: str,
    tasks: Sequence[str],
    train: bool,
    size: Sequence[int] | None = None,
    ids: Sequence[str] | None = None,
    augment: AugmentParams | None = None,
    cache: bool = False,
    **kwargs: Any,
) -> _MTDataset:
    """Build a dataset with its train (``train=True``) or eval transform at ``size`` (default per dataset).

    ``augment`` replaces the dataset's train augmentation; ``cache`` keeps decoded samples in memory
    (:meth:`_MTDataset.cache_samples`). Extra keyword arguments go to the Dataset class (e.g.
    ``drop_images_without_person`` for PASCAL).
    """
    info = get_dataset_info(name)
    transform = build_transform(info.name, train, size, augment)
    if info.spec is not None:
        kwargs["spec"] = info.spec
    ds = info.cls(root, split=split, tasks=tasks, transform=transform, ids=ids, **kwargs)
    if cache:
        ds.cache_samples()
    return ds


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch sample dicts: tensors of equal shape are stacked, otherwise kept as a list; ``meta`` (and any
    other non-tensor value) becomes a list."""
    if not samples:
        raise ValueError("collate got an empty list of samples")
    keys = list(samples[0].keys())
    for i, s in enumerate(samples[1:], 1):
        if set(s.keys()) != set(keys):
            raise ValueError(f"sample {i} has keys {sorted(s.keys())}, sample 0 has {sorted(keys)}")
    batch: dict[str, Any] = {}
    for k in keys:
        vals = [s[k] for s in samples]
        if all(isinstance(v, torch.Tensor) for v in vals) and len({tuple(v.shape) for v in vals}) == 1:
            batch[k] = torch.stack(vals)
        else:
            batch[k] = vals
    return batch
