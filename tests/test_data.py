import functools
import gzip
import hashlib
import http.server
import os
import shutil
import threading

import pytest
import torch

import modclust
from modclust.core import data


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load("cifar")


def test_missing_data_offline_names_both_fixes(tmp_path, monkeypatch):
    from torchvision import datasets
    monkeypatch.setenv("MODCLUST_DATA", str(tmp_path))
    monkeypatch.delenv("MODCLUST_DATA_MIRROR", raising=False)
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens
    with pytest.raises(data.DataUnavailableError) as err:
        data.load("mnist")
    assert "MODCLUST_DATA_MIRROR" in str(err.value) and "internet" in str(err.value)


def test_md5_table_is_torchvisions():
    from torchvision import datasets
    for spec in data.DATASETS.values():
        resources = getattr(datasets, spec.folder).resources
        assert data.RAW_MD5[spec.folder] == {os.path.basename(url): md5 for url, md5 in resources}
        assert sorted(data.RAW_MD5[spec.folder]) == sorted(data.RAW_FILES)


# -- checked files, on a tiny fake MNIST ---------------------------------------------------------

def _md5(b):
    return hashlib.md5(b).hexdigest()


def _idx(dims, seed):
    """An IDX file of uint8 values, as MNIST's are: magic, sizes, values."""
    n = 1
    for d in dims:
        n *= d
    head = bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    mod = 10 if len(dims) == 1 else 256
    return head + bytes((i * 7 + seed) % mod for i in range(n))


FAKE = {  # 6 training and 4 test images
    "train-images-idx3-ubyte.gz": gzip.compress(_idx((6, 28, 28), 1), mtime=0),
    "train-labels-idx1-ubyte.gz": gzip.compress(_idx((6,), 2), mtime=0),
    "t10k-images-idx3-ubyte.gz": gzip.compress(_idx((4, 28, 28), 3), mtime=0),
    "t10k-labels-idx1-ubyte.gz": gzip.compress(_idx((4,), 4), mtime=0),
}


def _write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake MNIST in a mirror, an empty root, md5 sums (ours and torchvision's) patched to it, offline."""
    from torchvision import datasets
    sums = {name: _md5(b) for name, b in FAKE.items()}
    monkeypatch.setitem(data.RAW_MD5, "MNIST", sums)
    monkeypatch.setattr(datasets.MNIST, "resources", list(sums.items()))
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens
    mirror = _write(tmp_path / "mirror" / "MNIST" / "raw", FAKE).parent.parent
    root = tmp_path / "root"
    monkeypatch.setenv("MODCLUST_DATA", str(root))
    monkeypatch.setenv("MODCLUST_DATA_MIRROR", str(mirror))
    return mirror, root / "MNIST" / "raw"


def _is_fake(ds):
    return ds.train_x.shape == (6, 784) and ds.test_x.shape == (4, 784) and ds.test_y.tolist() == [4, 1, 8, 5]


def test_fake_dataset_loads_from_the_mirror(fake):
    mirror, raw = fake
    assert _is_fake(data.load("mnist"))
    extracted = [n.removesuffix(".gz") for n in FAKE]
    assert sorted(p.name for p in raw.iterdir()) == sorted([*FAKE, *extracted])  # and no debris
    assert _is_fake(data.load("mnist"))


def test_mirror_copies_only_missing_or_corrupt_files(fake):
    mirror, raw = fake
    names = list(FAKE)
    _write(raw, {names[0]: FAKE[names[0]], names[1]: b"corrupt"})
    before = (raw / names[0]).stat()
    with pytest.warns(UserWarning, match=f"{names[1]} was corrupt .*replaced it with the good copy"):
        copied = data.copy_from_mirror("mnist")
    assert sorted(p.name for p in copied) == sorted(names[1:])
    after = (raw / names[0]).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # a good file is kept
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == FAKE
    assert data.copy_from_mirror("mnist") == []


def test_truncated_mirror_file_is_never_copied(fake):
    mirror, raw = fake
    bad = mirror / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(FAKE[bad.name][:100])
    for in_root in (None, b"also bad"):
        if in_root is not None:
            _write(raw, {bad.name: in_root})
        with pytest.raises(data.DataCorruptError) as err:
            data.load("mnist")
        msg = str(err.value)
        assert f"{bad} is corrupt: md5 {_md5(FAKE[bad.name][:100])}, expected {_md5(FAKE[bad.name])}" in msg
        assert "not copied" in msg
        if in_root is None:
            assert not (raw / bad.name).exists()
        else:
            assert (raw / bad.name).read_bytes() == in_root and "left as it was" in msg
        assert not [p for p in raw.iterdir() if p.name.startswith(".")]  # no temporary left


def test_corrupt_root_file_is_healed_by_a_good_mirror(fake):
    mirror, raw = fake
    assert _is_fake(data.load("mnist"))
    victim = raw / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(FAKE[victim.name][:-10])  # truncated
    extracted = raw / "t10k-images-idx3-ubyte"
    extracted.write_bytes(b"stale")  # beside a corrupt archive: made again from the good one
    with pytest.warns(UserWarning, match="was corrupt"):
        assert _is_fake(data.load("mnist"))
    assert victim.read_bytes() == FAKE[victim.name]
    assert extracted.read_bytes() == gzip.decompress(FAKE[victim.name])


def test_corrupt_root_file_without_mirror_is_named(fake, monkeypatch):
    mirror, raw = fake
    assert _is_fake(data.load("mnist"))
    monkeypatch.delenv("MODCLUST_DATA_MIRROR")
    victim = raw / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(FAKE[victim.name][:-1])
    with pytest.raises(data.DataCorruptError) as err:
        data.load("mnist")
    msg = str(err.value)
    assert f"{victim} is corrupt: md5 {_md5(FAKE[victim.name][:-1])}, expected {_md5(FAKE[victim.name])}" in msg
    assert "MODCLUST_DATA_MIRROR" in msg and "internet" in msg and "delete the corrupt file" in msg
    assert "not in" not in msg  # nothing is called missing
    assert isinstance(err.value, data.DataUnavailableError)


def test_missing_file_is_named_and_present_ones_are_not(fake, monkeypatch):
    mirror, raw = fake
    monkeypatch.delenv("MODCLUST_DATA_MIRROR")
    names = list(FAKE)
    _write(raw, {n: FAKE[n] for n in names[1:]})
    with pytest.raises(data.DataUnavailableError) as err:
        data.load("mnist")
    msg = str(err.value)
    assert f"{names[0]} is not in {raw}" in msg and "corrupt" not in msg, msg
    assert not any(n in msg for n in names[1:]), msg
    assert not isinstance(err.value, data.DataCorruptError)


def test_mirror_lacking_a_file_is_said(fake):
    mirror, raw = fake
    (mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataUnavailableError, match="the mirror .* has no MNIST/raw/t10k-labels-idx1-ubyte.gz"):
        data.load("mnist")


def test_extracted_files_without_archives_load_unchecked_with_a_warning(fake, monkeypatch):
    mirror, raw = fake
    assert _is_fake(data.load("mnist"))
    monkeypatch.delenv("MODCLUST_DATA_MIRROR")
    (raw / "train-images-idx3-ubyte.gz").unlink()  # as torchvision alone would still load it
    with pytest.warns(UserWarning, match="has no train-images-idx3-ubyte.gz, only the file extracted"):
        assert _is_fake(data.load("mnist"))
    assert (raw / "train-images-idx3-ubyte").exists()


def test_interrupted_extraction_is_redone(fake):
    mirror, raw = fake
    assert _is_fake(data.load("mnist"))
    extracted = raw / "train-images-idx3-ubyte"
    extracted.write_bytes(extracted.read_bytes()[:-784])  # cut short, as a killed extraction leaves it
    assert _is_fake(data.load("mnist"))
    assert extracted.read_bytes() == gzip.decompress(FAKE["train-images-idx3-ubyte.gz"])


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_torchvision_download_still_fetches_missing_and_corrupt_files(fake, monkeypatch):
    """Online and without a data mirror: a local server stands in for torchvision's download mirror."""
    from torchvision import datasets
    mirror, raw = fake
    monkeypatch.delenv("MODCLUST_DATA_MIRROR")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(mirror / "MNIST" / "raw")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(datasets.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
        assert _is_fake(data.load("mnist"))  # a fresh root: everything downloaded
        victim = raw / "train-images-idx3-ubyte.gz"
        victim.write_bytes(b"truncated")
        assert _is_fake(data.load("mnist"))  # fetched again
        assert victim.read_bytes() == FAKE[victim.name]
    finally:
        server.shutdown()
        server.server_close()


# -- real data -----------------------------------------------------------------------------------

@pytest.mark.mnist
def test_mnist_from_a_mirror_into_a_fresh_root(tmp_path, monkeypatch):
    mirror = modclust.core.paths.data_mirror()
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


@pytest.mark.mnist
def test_real_mnist_root_file_corrupted_is_healed_from_the_mirror(tmp_path, monkeypatch):
    mirror = modclust.core.paths.data_mirror()
    if mirror is None:
        pytest.skip("MODCLUST_DATA_MIRROR is not set (CI always sets it)")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.RAW_FILES:
        shutil.copyfile(mirror / "MNIST" / "raw" / name, raw / name)
    victim = raw / "train-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-1000])
    monkeypatch.setenv("MODCLUST_DATA", str(tmp_path))
    with pytest.warns(UserWarning, match="train-labels-idx1-ubyte.gz was corrupt"):
        ds = data.load("mnist")
    assert ds.train_y.shape == (60000,) and ds.test_y[:5].tolist() == [7, 2, 1, 0, 4]
    assert data._md5(victim) == data.RAW_MD5["MNIST"][victim.name]
