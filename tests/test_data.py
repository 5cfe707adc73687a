import shutil

import pytest
import torch

import modclust
from modclust import data


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load("cifar")


def test_mirror_files_are_copied_only_when_missing(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "MNIST" / "raw").mkdir(parents=True)
    for name in data.RAW_FILES:
        (mirror / "MNIST" / "raw" / name).write_bytes(name.encode())
    root = tmp_path / "root"
    (root / "MNIST" / "raw").mkdir(parents=True)
    (root / "MNIST" / "raw" / data.RAW_FILES[0]).write_bytes(b"already here")
    copied = data.copy_from_mirror("mnist", root, mirror)
    assert sorted(p.name for p in copied) == sorted(data.RAW_FILES[1:])
    assert (root / "MNIST" / "raw" / data.RAW_FILES[0]).read_bytes() == b"already here"
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(data.RAW_FILES)


def test_missing_data_offline_names_both_fixes(tmp_path, monkeypatch):
    from torchvision import datasets
    monkeypatch.setenv("MODCLUST_DATA", str(tmp_path))
    monkeypatch.delenv("MODCLUST_DATA_MIRROR", raising=False)
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens
    with pytest.raises(data.DataUnavailableError) as err:
        data.load("mnist")
    assert "MODCLUST_DATA_MIRROR" in str(err.value) and "internet" in str(err.value)


@pytest.mark.mnist
def test_mnist_from_a_mirror_into_a_fresh_root(tmp_path, monkeypatch):
    mirror = modclust.paths.data_mirror()
    assert mirror is not None, "set MODCLUST_DATA_MIRROR (make test does) to a copy of ../shared/data"
    monkeypatch.setenv("MODCLUST_DATA", str(tmp_path))
    ds = data.load("mnist")
    assert ds.train_x.shape == (60000, 784) and ds.test_x.shape == (10000, 784)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert abs(ds.train_x.mean().item()) < 1e-3 and abs(ds.train_x.std().item() - 1) < 1e-2
    assert ds.test_y[:5].tolist() == [7, 2, 1, 0, 4]
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").glob("*.gz")) == sorted(data.RAW_FILES)
    shutil.rmtree(tmp_path / "MNIST")


@pytest.mark.mnist
def test_fashion_mnist_loads():
    ds = data.load("fashion-mnist")
    assert ds.test_x.shape == (10000, 784) and ds.n_classes == 10
    assert abs(ds.train_x.mean().item()) < 1e-3
