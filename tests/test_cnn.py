"""The small CNN: shapes, seeded init, channel-block clusterability, and training that learns."""

from __future__ import annotations

import math

import pytest
import torch

from modclust.core.clusterability import layer_clusterability
from modclust.core.cnn import CNN, CNN_LAYERS, equal_block_partitions, make_cnn, unit_shape
from modclust.core.ensemble import ModuleConfig, train_module
from modclust.core.data import Dataset
from modclust.core.partition import Partition


def image_data(n_train: int = 800, n_test: int = 120, side: int = 12, seed: int = 0) -> Dataset:
    """Images whose label is the quadrant (of four) that holds a bright blob, plus noise: learnable by a CNN."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 4, (n,), generator=g)
        x = 0.3 * torch.randn(n, 1, side, side, generator=g)
        h = side // 2
        for i, q in enumerate(y.tolist()):
            r, c = divmod(q, 2)
            x[i, 0, r * h:(r + 1) * h, c * h:(c + 1) * h] += 1.0
        return x.flatten(1), y

    (tx, ty), (vx, vy) = split(n_train), split(n_test)
    return Dataset("mnist", tx, ty, vx, vy)


def test_default_shapes_and_names() -> None:
    model = make_cnn(0)
    assert [n for n, _ in model.named_children()] == list(CNN_LAYERS) == model.layer_names
    assert tuple(model.conv1.weight.shape) == (16, 1, 3, 3)
    assert tuple(model.conv2.weight.shape) == (32, 16, 3, 3)
    assert tuple(model.fc1.weight.shape) == (64, 32 * 7 * 7)
    assert tuple(model.fc2.weight.shape) == (10, 64)
    x = torch.randn(5, 784)
    out = model(x)
    assert out.shape == (5, 10)
    torch.testing.assert_close(model(x.reshape(5, 1, 28, 28)), out)
    acts = model.activations(x)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "conv1": (5, 16, 28, 28), "conv2": (5, 32, 14, 14), "fc1": (5, 64), "fc2": (5, 10)}
    torch.testing.assert_close(acts["fc2"], out)


def test_sizes_are_configurable() -> None:
    model = make_cnn(1, channels=(4, 6), hidden=9, n_classes=3, image_size=12)
    assert tuple(model.fc1.weight.shape) == (9, 6 * 3 * 3)
    assert model(torch.randn(2, 144)).shape == (2, 3)
    with pytest.raises(ValueError, match="divisible by 4"):
        CNN(image_size=30)
    with pytest.raises(ValueError, match="two ints"):
        CNN(channels=(4, 5, 6))
    with pytest.raises(ValueError, match="flat inputs"):
        model(torch.randn(2, 100))


def test_seeded_init_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b, c = make_cnn(7), make_cnn(7), make_cnn(8)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
    for name in CNN_LAYERS:
        layer = a.layer(name)
        bound = 1 / math.sqrt(layer.weight[0].numel())
        for p in (layer.weight, layer.bias):
            assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound  # PyTorch's default U(-b, b)


def test_conv_clusterability_is_the_channel_block_share() -> None:
    model = make_cnn(0, channels=(8, 12))
    part = Partition.equal_blocks(unit_shape(model.conv2), 4)
    w = model.conv2.weight.detach()
    sq = w.square().sum((2, 3))  # (out, in) squared mass per channel pair
    expected = (sq * part.mask()).sum() / sq.sum()
    torch.testing.assert_close(layer_clusterability(model.conv2.weight, part.mask()), expected)
    assert 0.15 < float(expected) < 0.35  # about 1/k at init
    with torch.no_grad():
        model.conv2.weight.mul_(part.mask()[:, :, None, None])
    assert float(layer_clusterability(model.conv2.weight, part.mask()).detach()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not match"):
        layer_clusterability(model.conv1.weight, part.mask())
    parts = equal_block_partitions(model, ["conv2", "fc1"], 2)
    assert parts["conv2"].shape == (12, 8) and parts["fc1"].shape == (64, 12 * 49)


def test_equal_blocks_line_up_through_the_flatten() -> None:
    model = make_cnn(0)
    parts = equal_block_partitions(model, ["conv2", "fc1"], 4)
    # conv2's output-channel block j (8 channels) is fc1's input block j (8 channels * 49 positions)
    for j in range(4):
        channels = parts["conv2"].rows[j]
        features = parts["fc1"].cols[j]
        assert features == tuple(range(channels[0] * 49, (channels[-1] + 1) * 49))


def test_the_cnn_learns_and_clusters_with_the_generic_trainer() -> None:
    data = image_data()
    small = dict(channels=(4, 8), hidden=16, n_classes=4, image_size=12)
    make = lambda seed: make_cnn(seed, **small)  # noqa: E731
    cfg = ModuleConfig(epochs=3, lr=3e-3, batch_size=32, optimizer="adam")
    run = train_module(make, 0, data, cfg)
    assert run.test_acc > 0.95
    assert sum(run.history["loss"][-5:]) < sum(run.history["loss"][:5])
    again = train_module(make, 0, data, cfg)
    assert again.history["loss"] == run.history["loss"]  # the seed fixes init and data order
    parts = equal_block_partitions(make(0), ["conv2", "fc1"], 2)
    clustered = train_module(make, 0, data, ModuleConfig(epochs=3, lr=3e-3, batch_size=32, optimizer="adam", lam=5.0,
                                                         clustered={f"{n}.weight": p for n, p in parts.items()}))
    assert clustered.history["clusterability"][-1] > 0.9 > clustered.history["clusterability"][0]
    assert clustered.test_acc > 0.9
    for name, part in parts.items():
        assert float(layer_clusterability(clustered.model.layer(name).weight, part.mask()).detach()) > 0.9


@pytest.mark.mnist
def test_cnn_learns_mnist_quickly(mnist: Dataset) -> None:
    data = mnist.subset(6000, 2000)
    assert data.train_x.shape == (6000, 784)
    run = train_module(make_cnn, 0, data, ModuleConfig(epochs=1, optimizer="adam"))  # 94 steps, about 1 s
    assert run.test_acc > 0.85
