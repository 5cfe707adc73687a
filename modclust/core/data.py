"""MNIST and Fashion-MNIST as normalised tensors resident on the device.

A training step then indexes a tensor instead of running a DataLoader, so it does no
per-sample Python work.

Files. Each dataset is four ``.gz`` archives in ``<root>/<Folder>/raw`` (``paths.data_root()``)
beside the files extracted from them, which torchvision reads. Every load checks the archives
against torchvision's md5 sums (:data:`RAW_MD5`): about 0.03 s for MNIST's 11.6 MB and 0.06 s for
Fashion-MNIST's 31 MB, so they are hashed every time rather than trusted from a cached stamp.
An archive that is missing or fails its md5 is copied from ``paths.data_mirror()`` when one is
set, after the mirror's copy passed the same check (a good mirror so heals a corrupt root file);
else torchvision downloads it. An extracted file is made again from its archive when it is
missing, incomplete (its size disagrees with its IDX header: an interrupted extraction), or its
archive was just replaced. Anything still wrong is a :class:`DataUnavailableError` (a
:class:`DataCorruptError` when a file is there but corrupt) that names the files and the fixes.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from modclust.core import paths
from modclust.core.io import atomic_path


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

RAW_MD5: dict[str, dict[str, str]] = {
    # torchvision's own sums (torchvision.datasets.<Folder>.resources; a test checks they agree)
    "MNIST": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
"""The md5 of each raw archive, per dataset folder."""


class DataUnavailableError(RuntimeError):
    """The dataset is neither on disk, nor in a mirror, nor downloadable."""


class DataCorruptError(DataUnavailableError):
    """A dataset file is there but fails its md5 (in the data root or in the mirror)."""


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


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target``; return the md5 of the bytes copied (read once)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            dst.write(chunk)
    return h.hexdigest()


def _extracted(archive: Path) -> Path:
    """The file torchvision extracts from ``archive`` (and reads): its name without ``.gz``."""
    return archive.with_suffix("")


class _Refused(Exception):
    """Abandon a copy from the mirror (its temporary file is removed, the target kept)."""


def _raw(spec: DatasetSpec, root: Path) -> Path:
    return root / spec.folder / "raw"


def _sync_from_mirror(spec: DatasetSpec, root: Path, mirror: Path | None) -> tuple[list[Path], dict[str, str | None]]:
    """Copy from the mirror each archive the root lacks or has corrupt; return (copied, md5 per file).

    The md5 per file is that of the file now in the root (None: missing). A mirror copy that
    fails its md5 is never moved into the root: a :class:`DataCorruptError` names every such
    file once the good ones are copied.
    """
    raw = _raw(spec, root)
    expected = RAW_MD5[spec.folder]
    copied: list[Path] = []
    state: dict[str, str | None] = {}
    refused: list[str] = []
    for filename in RAW_FILES:
        target = raw / filename
        got = _md5(target) if target.is_file() else None
        state[filename] = got
        if got == expected[filename] or mirror is None:
            continue
        source = mirror / spec.folder / "raw" / filename
        if not source.is_file():
            continue
        try:
            with atomic_path(target) as tmp:
                mirror_md5 = _copy_hashing(source, tmp)
                if mirror_md5 != expected[filename]:
                    raise _Refused
        except _Refused:
            now = f"{target} does not exist" if got is None else f"{target} is left as it was (corrupt too: md5 {got})"
            refused.append(f"{source} is corrupt: md5 {mirror_md5}, expected {expected[filename]}; it was "
                           f"not copied, and {now}")
            continue
        if got is not None:
            warnings.warn(f"{target} was corrupt (md5 {got}, expected {expected[filename]}); "
                          f"replaced it with the good copy in the mirror, {source}", stacklevel=3)
        _extracted(target).unlink(missing_ok=True)  # made again from the new archive
        state[filename] = expected[filename]
        copied.append(target)
    if refused:
        raise DataCorruptError(
            f"The data mirror (MODCLUST_DATA_MIRROR={mirror}) holds corrupt {spec.folder} files: "
            + "; ".join(refused) + ". Replace them with good copies (torchvision's md5 sums are in "
            "modclust.core.data.RAW_MD5), or unset MODCLUST_DATA_MIRROR and connect to the internet so that "
            "torchvision downloads them."
        )
    return copied, state


def copy_from_mirror(name: str, root: Path | None = None, mirror: Path | None = None) -> list[Path]:
    """Copy the dataset's ``.gz`` files that the root lacks or has corrupt from the mirror; return those copied.

    A file is copied only if the mirror's copy passes its md5 (else :class:`DataCorruptError`,
    naming it), to a temporary name moved into place, so an interrupted copy never leaves a
    truncated archive; a corrupt file in the root is so replaced by a good one (with a warning).
    """
    spec = _check_name(name)
    root = paths.data_root() if root is None else root
    mirror = paths.data_mirror() if mirror is None else mirror
    return _sync_from_mirror(spec, root, mirror)[0]


_IDX_ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def _idx_complete(path: Path) -> bool:
    """Whether ``path`` is an IDX file whose size is what its header says (not cut short)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_ITEMSIZE or not 1 <= head[3] <= 3:
                return False
            dims = f.read(4 * head[3])
            size = path.stat().st_size
    except OSError:
        return False
    if len(dims) < 4 * head[3]:
        return False
    n = math.prod(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))
    return size == 4 + len(dims) + n * _IDX_ITEMSIZE[head[2]]


def _extract(archive: Path) -> None:
    """Make the extracted file from ``archive`` (which passed its md5), unless it is there and complete."""
    out = _extracted(archive)
    if out.is_file() and _idx_complete(out):
        return
    with atomic_path(out) as tmp:
        with gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    if not _idx_complete(out):
        raise DataCorruptError(f"{archive} passes its md5 but {out}, extracted from it, is not a complete "
                               "IDX file: delete both and load again")


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: " + "; ".join(ln.strip() for ln in str(err).splitlines() if ln.strip())


def _unavailable(spec: DatasetSpec, root: Path, mirror: Path | None, bad: Mapping[str, str | None],
                 err: BaseException | None) -> DataUnavailableError:
    """The error for archives still missing or corrupt after the mirror and the download."""
    raw = _raw(spec, root)
    corrupt = {f: got for f, got in bad.items() if got is not None}
    missing = [f for f, got in bad.items() if got is None]
    parts = [f"{raw / f} is corrupt: md5 {got}, expected {RAW_MD5[spec.folder][f]} (a truncated or damaged "
             "download or copy)" for f, got in corrupt.items()]
    if missing:
        parts.append(f"{spec.folder} is incomplete: {', '.join(missing)} "
                     f"{'is' if len(missing) == 1 else 'are'} not in {raw}")
    if mirror is None:
        parts.append("no data mirror is set (MODCLUST_DATA_MIRROR)")
    else:
        lacking = [f"{spec.folder}/raw/{f}" for f in bad if not (mirror / spec.folder / "raw" / f).is_file()]
        if lacking:
            parts.append(f"the mirror {mirror} has no {', '.join(lacking)}")
    what = "them" if len(bad) > 1 else "it"
    if err is not None:
        parts.append(f"and torchvision could not download {what} ({_one_line(err)})")
    fixes = (f"Either connect to the internet so torchvision downloads {what}{' again' if corrupt else ''}, or set "
             f"MODCLUST_DATA_MIRROR to a folder holding good copies of {spec.folder}/raw/*.gz (on these machines: "
             f"../shared/data{'; a good copy there replaces a corrupt one here' if corrupt else ''}), or point "
             "MODCLUST_DATA at a folder that already has the dataset")
    if corrupt:
        fixes += f"; or delete the corrupt file{'s' if len(corrupt) > 1 else ''} and put good copies there yourself"
    cls = DataCorruptError if corrupt else DataUnavailableError
    return cls("; ".join(parts) + ". " + fixes + ".")


def _download(spec: DatasetSpec, root: Path, mirror: Path | None, bad: Mapping[str, str | None]) -> None:
    """Let torchvision fetch the archives in ``bad`` (missing or corrupt), as it does with internet."""
    from torchvision import datasets  # imported here: torchvision is slow to import

    raw = _raw(spec, root)
    for filename, got in bad.items():
        if got is not None:
            # Made from an archive now corrupt, it cannot be checked; and torchvision downloads
            # only while an extracted file is missing. It is made again from the fetched archive.
            _extracted(raw / filename).unlink(missing_ok=True)
    try:
        getattr(datasets, spec.folder)(root=str(root), train=True, download=True)
    except Exception as err:  # torchvision raises URLError, RuntimeError, OSError...
        raise _unavailable(spec, root, mirror, bad, err) from err


def prepare(name: str, root: Path | None = None, mirror: Path | None = None) -> Path:
    """Make the dataset's files in the root whole and checked; return its ``raw`` folder.

    Archives missing or failing their md5 come from the mirror, else torchvision's download;
    extracted files missing or incomplete are made again from their archives. A root holding
    only extracted files (no archives, no mirror) is used as torchvision uses it, with a
    warning that it cannot be checked.
    """
    spec = _check_name(name)
    root = paths.data_root() if root is None else root
    mirror = paths.data_mirror() if mirror is None else mirror
    raw = _raw(spec, root)
    _, state = _sync_from_mirror(spec, root, mirror)
    expected = RAW_MD5[spec.folder]
    bad = {f: got for f, got in state.items() if got != expected[f]}
    if bad:
        _download(spec, root, mirror, bad)
        state = {f: _md5(raw / f) if (raw / f).is_file() else None for f in RAW_FILES}
        still = {f: got for f, got in state.items() if got != expected[f]}
        unchecked = [f for f, got in still.items() if got is None and _idx_complete(_extracted(raw / f))]
        still = {f: got for f, got in still.items() if f not in unchecked}
        if still:
            raise _unavailable(spec, root, mirror, still, None)
        if unchecked:
            warnings.warn(
                f"{raw} has no {', '.join(unchecked)}, only the file{'s' if len(unchecked) > 1 else ''} extracted "
                "from it earlier, which torchvision reads but which cannot be checked without the archive; to "
                f"get checked files, delete {', '.join(_extracted(raw / f).name for f in unchecked)} there and "
                "load again with MODCLUST_DATA_MIRROR set or with internet access", stacklevel=2)
        bad = dict.fromkeys(unchecked)
    for filename in RAW_FILES:
        if filename not in bad:
            _extract(raw / filename)
    return raw


def _load_split(spec: DatasetSpec, root: Path, train: bool) -> tuple[Tensor, Tensor]:
    from torchvision import datasets  # imported here: torchvision is slow to import

    cls = getattr(datasets, spec.folder)
    try:
        ds = cls(root=str(root), train=train, download=False)  # prepare() made every file
    except Exception as err:
        raise DataUnavailableError(
            f"torchvision could not read {spec.folder} from {_raw(spec, root)} although its archives pass "
            f"their md5 sums ({_one_line(err)}). Delete the files there without .gz: they are extracted "
            "again on the next load."
        ) from err
    x = ds.data.reshape(len(ds.data), -1).float().div(255)
    x = (x - spec.mean) / spec.std
    return x, ds.targets.long()


def load(name: str = "mnist", device: str | torch.device = "cpu") -> Dataset:
    """Load a dataset as normalised tensors on ``device`` (its files checked, healed from the mirror if needed)."""
    spec = _check_name(name)
    root = paths.data_root()
    prepare(name, root)
    train_x, train_y = _load_split(spec, root, train=True)
    test_x, test_y = _load_split(spec, root, train=False)
    return Dataset(name, train_x, train_y, test_x, test_y).to(device)
