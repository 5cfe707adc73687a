"""MNIST and Fashion-MNIST as normalised tensors resident on the device.

A training step then indexes a tensor instead of running a DataLoader, so it does no
per-sample Python work. Files come from ``paths.data_root()``; missing ``.gz`` files are
copied from ``paths.data_mirror()`` when one is set, else torchvision downloads them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from modclust import paths
from modclust.io import atomic_path


@dataclass(frozen=True)
class DatasetSpec:
    folder: str  # torchvision's class name, also the folder under the data root
    mean: float
    std: float
    classes: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("MNIST", 0.1307, 0.3081, tuple(str(i) for i in range(10))),
    "fashion-mnist": DatasetSpec(
        "FashionMNIST",
        0.2860,
        0.3530,
        ("T-shirt", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}

RAW_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class DataUnavailableError(RuntimeError):
    """The dataset is neither on disk, nor in a mirror, nor downloadable."""


@dataclass(frozen=True)
class Dataset:
    """Flattened, normalised images (N, 784) float32 and labels (N,) int64, train and test."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def spec(self) -> DatasetSpec:
        return DATASETS[self.name]

    @property
    def n_classes(self) -> int:
        return len(self.spec.classes)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def to(self, device: str | torch.device) -> Dataset:
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` / ``n_test`` examples: for smoke runs and tests."""
        return replace(
            self,
            train_x=self.train_x[:n_train],
            train_y=self.train_y[:n_train],
            test_x=self.test_x[:n_test],
            test_y=self.test_y[:n_test],
        )

    def pixels(self, x: Tensor) -> Tensor:
        """Undo the normalisation: (N, 784) inputs to (N, 28, 28) images in [0, 1]."""
        return (x * self.spec.std + self.spec.mean).reshape(-1, 28, 28).clamp(0, 1)


def balanced_indices(y: Tensor, per_class: int, seed: int = 0, n_classes: int | None = None) -> Tensor:
    """Indices of ``per_class`` examples of every class, drawn without replacement by ``seed``, sorted.

    A fixed, class-balanced subset: circuits are searched on such a subset of the training
    images and judged on the test set.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    y = y.cpu()
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    g = torch.Generator().manual_seed(int(seed))
    picked = []
    for c in range(n_classes):
        idx = (y == c).nonzero().flatten()
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} examples, fewer than per_class={per_class}")
        picked.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picked).sort().values


def _check_name(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def copy_from_mirror(name: str, root: Path | None = None, mirror: Path | None = None) -> list[Path]:
    """Copy the dataset's ``.gz`` files that the root lacks from the mirror; return those copied.

    Each file is copied to a temporary name and moved into place, so an interrupted copy
    never leaves a truncated archive that would later fail its checksum.
    """
    spec = _check_name(name)
    root = paths.data_root() if root is None else root
    mirror = paths.data_mirror() if mirror is None else mirror
    if mirror is None:
        return []
    copied = []
    for filename in RAW_FILES:
        source = mirror / spec.folder / "raw" / filename
        target = root / spec.folder / "raw" / filename
        if target.exists() or not source.exists():
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        copied.append(target)
    return copied


def _load_split(spec: DatasetSpec, root: Path, train: bool) -> tuple[Tensor, Tensor]:
    from torchvision import datasets  # imported here: torchvision is slow to import

    cls = getattr(datasets, spec.folder)
    try:
        ds = cls(root=str(root), train=train, download=True)
    except Exception as err:  # torchvision raises URLError, RuntimeError, OSError...
        raise DataUnavailableError(
            f"{spec.folder} is not in {root / spec.folder / 'raw'} and could not be "
            f"downloaded ({type(err).__name__}: {err}). Either connect to the internet so "
            "torchvision can download it, or set MODCLUST_DATA_MIRROR to a folder holding "
            f"{spec.folder}/raw/*.gz (on these machines: ../shared/data), or point "
            "MODCLUST_DATA at a folder that already has it."
        ) from err
    x = ds.data.reshape(len(ds.data), -1).float().div(255)
    x = (x - spec.mean) / spec.std
    return x, ds.targets.long()


def load(name: str = "mnist", device: str | torch.device = "cpu") -> Dataset:
    """Load a dataset as normalised tensors on ``device`` (copying from the mirror if needed)."""
    spec = _check_name(name)
    root = paths.data_root()
    copy_from_mirror(name, root)
    train_x, train_y = _load_split(spec, root, train=True)
    test_x, test_y = _load_split(spec, root, train=False)
    return Dataset(name, train_x, train_y, test_x, test_y).to(device)
