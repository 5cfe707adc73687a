import pytest
import torch

from modclust import MLP, TrainConfig, checkpoint, train


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
