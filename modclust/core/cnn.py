"""A small CNN for 28 x 28 MNIST / Fashion-MNIST, seeded, with an optional clusterability loss.

The default network (shapes for a batch of N images)::

    x        (N, 784) or (N, 1, 28, 28)   normalised pixels (modclust.core.data gives (N, 784))
    conv1    Conv2d(1, 16, 3, padding=1)  -> (N, 16, 28, 28), ReLU
    pool     MaxPool2d(2)                 -> (N, 16, 14, 14)
    conv2    Conv2d(16, 32, 3, padding=1) -> (N, 32, 14, 14), ReLU
    pool     MaxPool2d(2)                 -> (N, 32, 7, 7)
    flatten                               -> (N, 1568)      channel-major: feature = c * 49 + y * 7 + x
    fc1      Linear(1568, 64)             -> (N, 64), ReLU
    fc2      Linear(64, 10)               -> (N, 10)        logits

Channel counts and the hidden width are parameters (:func:`make_cnn`); the module names
``conv1, conv2, fc1, fc2`` are fixed. :func:`make_cnn` draws every weight and bias from its own
``torch.Generator``, from PyTorch's default distribution for both layer types,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so a seed gives the same network on every machine without
touching the global RNG.

Clusterability of a layer (:func:`modclust.core.clusterability.layer_clusterability` of its
weight and a partition of :func:`unit_shape`) is the seed's C on the layer's
(out, in) unit matrix: for a conv weight (out, in, kh, kw) each (output channel, input channel)
entry weighs its kernel's squared norm, so C is the share of the kernels' squared weight between
channels of the same block (:mod:`modclust.core.clusterability`). Equal blocks
line up through the network: conv2's k output-channel blocks are fc1's k input blocks, since
flattening is channel-major and 1568 = 32 channels * 49 positions (when k divides the channels).

Train it like any module (:func:`modclust.core.ensemble.train_module`, or many seeds at once
with :func:`~modclust.core.ensemble.train_ensemble`). Measured (Adam lr 1e-3, batch 64, one CPU
thread of a shared 2-core machine): one epoch of MNIST takes 8-12 s, test accuracy after it 0.965, 0.983, 0.982 (seeds 0,
1, 2), after two 0.987, 0.986, 0.988; Fashion-MNIST 12 s, 0.859 after one epoch. With
``lam=5`` on conv2 and fc1 (k = 4): 0.966 / 0.981 after one / two epochs, C = 0.997.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modclust.core.checks import check_int, check_ints
from modclust.core.model import SEED_MAX
from modclust.core.partition import Partition

CNN_LAYERS = ("conv1", "conv2", "fc1", "fc2")
"""The CNN's weight layers, input first; the names every caller uses."""


class CNN(nn.Module):
    """conv1-ReLU-pool-conv2-ReLU-pool-fc1-ReLU-fc2 on ``in_channels x image_size x image_size`` images.

    ``channels`` = (conv1's, conv2's) output channels, ``hidden`` = fc1's width. Inputs may be
    flat (N, in_channels * image_size**2), as :mod:`modclust.core.data` gives them, or images
    (N, in_channels, image_size, image_size). ``image_size`` must be divisible by 4 (two pools).
    """

    def __init__(self, channels: Sequence[int] = (16, 32), hidden: int = 64, n_classes: int = 10,
                 image_size: int = 28, in_channels: int = 1) -> None:
        super().__init__()
        chans = check_ints("CNN channels", channels, minimum=1, min_length=2,
                           hint="(conv1's, conv2's) output channels, e.g. (16, 32)")
        if len(chans) != 2:
            raise ValueError(f"CNN channels must be two ints (conv1's, conv2's), got {chans}")
        c1, c2 = chans
        self.channels = (c1, c2)
        self.hidden = check_int("CNN hidden", hidden, 1)
        self.n_classes = check_int("CNN n_classes", n_classes, 1)
        self.image_size = check_int("CNN image_size", image_size, 4)
        if self.image_size % 4:
            raise ValueError(f"CNN image_size must be divisible by 4 (two 2x2 max-pools), got {image_size}")
        self.in_channels = check_int("CNN in_channels", in_channels, 1)
        side = self.image_size // 4
        self.conv1 = nn.Conv2d(self.in_channels, c1, 3, padding=1)  # (N, c1, S, S)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)                # (N, c2, S/2, S/2)
        self.fc1 = nn.Linear(c2 * side * side, self.hidden)         # (N, c2 * (S/4)^2) -> (N, hidden)
        self.fc2 = nn.Linear(self.hidden, self.n_classes)           # (N, hidden) -> (N, n_classes)

    @property
    def layer_names(self) -> list[str]:
        return list(CNN_LAYERS)

    def layer(self, name: str) -> nn.Conv2d | nn.Linear:
        if name not in CNN_LAYERS:
            raise ValueError(f"unknown layer {name!r}: this CNN has {list(CNN_LAYERS)}")
        return getattr(self, name)

    def images(self, x: Tensor) -> Tensor:
        """``x`` as (N, in_channels, S, S): flat (N, in_channels * S * S) inputs are reshaped."""
        s = self.image_size
        if x.dim() == 2:
            if x.shape[1] != self.in_channels * s * s:
                raise ValueError(f"flat inputs must have {self.in_channels * s * s} features, got {x.shape[1]}")
            return x.reshape(len(x), self.in_channels, s, s)
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, s, s):
            raise ValueError(f"inputs must be (N, {self.in_channels * s * s}) or (N, {self.in_channels}, {s}, {s}), "
                             f"got {tuple(x.shape)}")
        return x

    def activations(self, x: Tensor) -> dict[str, Tensor]:
        """Every layer's output: post-ReLU for conv1 (N, c1, S, S), conv2 (N, c2, S/2, S/2) (before
        pooling) and fc1 (N, hidden); logits (N, n_classes) for fc2."""
        out = {}
        h = torch.relu(self.conv1(self.images(x)))
        out["conv1"] = h
        h = torch.relu(self.conv2(F.max_pool2d(h, 2)))
        out["conv2"] = h
        h = torch.relu(self.fc1(F.max_pool2d(h, 2).flatten(1)))
        out["fc1"] = h
        out["fc2"] = self.fc2(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, n_classes) for inputs (N, 784) or (N, 1, 28, 28) (default sizes)."""
        h = F.max_pool2d(torch.relu(self.conv1(self.images(x))), 2)  # (N, c1, S/2, S/2)
        h = F.max_pool2d(torch.relu(self.conv2(h)), 2)                # (N, c2, S/4, S/4)
        h = torch.relu(self.fc1(h.flatten(1)))                        # (N, hidden)
        return self.fc2(h)                                            # (N, n_classes)


VIEW_LAYERS = ("images", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2")
"""The modules of :func:`cnn_as_sequential`, in forward order."""


def cnn_as_sequential(model: CNN) -> nn.Sequential:
    """A hookable, cuttable view of the CNN: the modules :data:`VIEW_LAYERS` in forward order.

    The view holds the CNN's own conv and Linear modules (not copies), so its parameters have
    the CNN's names (``fc1.weight``) and values, and it computes ``model(x)`` for flat inputs x
    (N, in_channels * S * S), the layout :mod:`modclust.core.data` gives. The CNN's ReLUs and
    pools become modules (``relu1``, ``pool1``, ...), so any module can be read or cut at
    (:mod:`modclust.analysis.any_model` reads modules by hooks). It mirrors :meth:`CNN.forward`:
    a change there must be made here too (``tests/test_cnn_study.py`` compares them exactly).
    """
    if not isinstance(model, CNN):
        raise TypeError(f"cnn_as_sequential takes a modclust.core.cnn.CNN, got {type(model).__name__}")
    s = model.image_size
    return nn.Sequential(OrderedDict([
        ("images", nn.Unflatten(1, (model.in_channels, s, s))),  # (N, C*S*S) -> (N, C, S, S)
        ("conv1", model.conv1), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", model.conv2), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten(1)),
        ("fc1", model.fc1), ("relu3", nn.ReLU()), ("fc2", model.fc2),
    ]))


@torch.no_grad()
def seeded_init(model: nn.Module, generator: torch.Generator) -> None:
    """Redraw every Conv2d / Linear weight and bias of ``model`` from ``generator``, in module order.

    PyTorch's default init for both layer types: U(-b, b) with b = 1 / sqrt(fan_in), fan_in =
    in_features (Linear) or in_channels * kh * kw (Conv2d), for the weight and the bias alike.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            for p in (module.weight, module.bias):
                if p is not None:
                    p.copy_(torch.rand(p.shape, generator=generator) * (2 * bound) - bound)


def make_cnn(seed: int = 0, channels: Sequence[int] = (16, 32), hidden: int = 64, n_classes: int = 10,
             image_size: int = 28, in_channels: int = 1) -> CNN:
    """A :class:`CNN` whose parameters are drawn from ``torch.Generator().manual_seed(seed)``."""
    seed = check_int("make_cnn seed", seed, 0, SEED_MAX)
    with torch.random.fork_rng(devices=[]):  # the modules' own default init draws from the global RNG
        model = CNN(channels, hidden, n_classes, image_size, in_channels)
    seeded_init(model, torch.Generator().manual_seed(seed))
    return model


def unit_shape(layer: nn.Conv2d | nn.Linear) -> tuple[int, int]:
    """The (out, in) unit matrix a layer's clusters live on: channels for a conv, features for a Linear."""
    return tuple(layer.weight.shape[:2])  # type: ignore[return-value]


def equal_block_partitions(model: CNN, layers: Sequence[str], k: int) -> dict[str, Partition]:
    """k contiguous equal diagonal blocks on each named layer's (out, in) unit matrix."""
    return {name: Partition.equal_blocks(unit_shape(model.layer(name)), k) for name in layers}
