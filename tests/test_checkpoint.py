import os
import zipfile

import pytest
import torch

from modclust import MLP, TrainConfig
from modclust.core import checkpoint
from modclust import train


def test_round_trip(tiny, tmp_path):
    r = train(TrainConfig(widths=(784, 16, 16, 10), epochs=1, batch_size=50), tiny)
    path = checkpoint.save(r, tmp_path / "run" / "model.pt")
    back = checkpoint.load(path)
    assert back.config == r.config
    assert back.partitions == r.partitions
    assert back.history == r.history
    assert all(torch.equal(a, b) for a, b in zip(back.model.weights(), r.model.weights()))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left behind


def test_mismatched_architecture_fails_clearly(tiny, tmp_path):
    r = train(TrainConfig(widths=(784, 16, 16, 10), epochs=0), tiny)
    sd = r.model.state_dict()
    with pytest.raises(ValueError, match="build the model with the checkpoint's widths"):
        checkpoint.load_weights(MLP((784, 32, 10)), sd)


def test_not_a_checkpoint_and_missing(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a modclust checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="train one first"):
        checkpoint.load(tmp_path / "absent.pt")


def test_failed_write_leaves_nothing(tiny, tmp_path, monkeypatch):
    r = train(TrainConfig(widths=(784, 16, 16, 10), epochs=0), tiny)

    def boom(obj, f):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(r, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


# -- damage, tampering, old formats -------------------------------------------------------------

@pytest.fixture
def saved(tiny, tmp_path):
    r = train(TrainConfig(widths=(784, 16, 16, 10), epochs=1, batch_size=50), tiny)
    return r, checkpoint.save(r, tmp_path / "good" / "model.pt")


def _same(a, b):
    return (a.config == b.config and a.partitions == b.partitions and a.history == b.history
            and all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values())))


def test_round_trip_is_bitwise_and_checksummed(saved):
    r, path = saved
    back = checkpoint.load(path)
    for (k, a), (k2, b) in zip(r.model.state_dict().items(), back.model.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and a.shape == b.shape
        assert a.view(torch.uint8).flatten().tolist() == b.view(torch.uint8).flatten().tolist()
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == checkpoint.FORMAT == "modclust-checkpoint-2"
    assert payload["checksum"] == checkpoint.content_checksum(payload)
    assert payload["checksum"].startswith("sha256:") and len(payload["checksum"]) == 7 + 64


def test_truncated_checkpoints_name_the_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "run" / "model.pt"
    bad.parent.mkdir()
    for n in [0, 1, 10, 100, 1000, 5000, len(data) // 2, len(data) - 100, len(data) - 22, len(data) - 1]:
        bad.write_bytes(data[:n])
        with pytest.raises(checkpoint.CheckpointError) as err:
            checkpoint.load(bad)
        msg = str(err.value)
        assert str(bad) in msg and "damaged" in msg and f"({n} byte" in msg and "delete it" in msg, msg
        assert isinstance(err.value, ValueError)


def _tensor_data_offsets(path):
    """(start, end) of each tensor record's bytes inside the (uncompressed) zip."""
    spans = []
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if "/data/" in info.filename and info.file_size >= 400:
                h = info.header_offset
                name_len, extra_len = (int.from_bytes(raw[i:i + 2], "little") for i in (h + 26, h + 28))
                start = h + 30 + name_len + extra_len  # after the local file header
                assert info.compress_type == zipfile.ZIP_STORED
                spans.append((start, start + info.file_size))
    return spans


def _flip(data, offset, n=200):
    out = bytearray(data)
    for i in range(offset, min(offset + n, len(out))):
        out[i] ^= 0xA5
    return bytes(out)


def test_flipped_bytes_never_load_silently(saved, tmp_path):
    r, path = saved
    data = path.read_bytes()
    bad = tmp_path / "model.pt"
    spans = _tensor_data_offsets(path)
    assert len(spans) == 3  # fc1, fc2, fc3
    inside = [s + k * (e - s - 200) // 3 for s, e in spans for k in range(4)]
    for offset in inside:
        bad.write_bytes(_flip(data, offset))
        with pytest.raises(checkpoint.CheckpointError, match="content checksum does not match") as err:
            checkpoint.load(bad)
        assert str(bad) in str(err.value)
    # anywhere in the file: an error naming it, or (bytes torch ignores, e.g. zip padding) the same content
    for offset in range(0, len(data), max(1, len(data) // 40)):
        bad.write_bytes(_flip(data, offset))
        try:
            back = checkpoint.load(bad)
        except checkpoint.CheckpointError as err:
            assert str(bad) in str(err)
        else:
            assert _same(back, r), f"flipped bytes at {offset} loaded as different content"


def test_changed_content_with_its_old_checksum_is_caught(saved, tmp_path):
    _, path = saved
    for change in ("weight", "history", "config"):
        payload = torch.load(path, weights_only=True)
        if change == "weight":
            payload["state_dict"]["fc2.weight"][3, 4] += 1e-6
        elif change == "history":
            payload["history"]["test_acc"][-1] = 0.99
        else:
            payload["config"]["lam"] = 1.5
        torch.save(payload, tmp_path / f"{change}.pt")
        with pytest.raises(checkpoint.CheckpointError, match="changed or corrupted after it was written"):
            checkpoint.load(tmp_path / f"{change}.pt")


def test_format_1_loads_with_a_warning(saved, tmp_path):
    r, path = saved
    payload = torch.load(path, weights_only=True)
    del payload["checksum"]
    payload["format"] = "modclust-checkpoint-1"
    torch.save(payload, tmp_path / "old.pt")
    with pytest.warns(checkpoint.CheckpointWarning, match="older modclust.*no content checksum"):
        back = checkpoint.load(tmp_path / "old.pt")
    assert _same(back, r)
    payload["format"] = "modclust-checkpoint-9"
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(checkpoint.CheckpointError, match="written by a newer"):
        checkpoint.load(tmp_path / "new.pt")
    payload["format"] = checkpoint.FORMAT
    torch.save(payload, tmp_path / "nosum.pt")  # format 2 without its checksum
    with pytest.raises(checkpoint.CheckpointError, match="nosum.pt is damaged"):
        checkpoint.load(tmp_path / "nosum.pt")


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless, but a global that weights_only refuses


def test_weights_only_refusal_names_the_file(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["history"] = {"x": _Evil()}
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.load(tmp_path / "evil.pt")
    msg = str(err.value)
    assert str(tmp_path / "evil.pt") in msg and "weights_only=True" in msg and "getcwd" in msg, msg
    assert "will likely succeed" not in msg  # torch's advice to unpickle it anyway is not passed on


def test_unreadable_paths_name_the_file(tmp_path):
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="dir.pt cannot be read"):
        checkpoint.load(tmp_path / "dir.pt")
    (tmp_path / "text.pt").write_text("hello, not a checkpoint\n" * 10)
    with pytest.raises(checkpoint.CheckpointError, match=r"text.pt \(240 bytes\) is damaged"):
        checkpoint.load(tmp_path / "text.pt")
