"""The seed's bias-free ReLU MLP, with widths and depth as parameters.

Layers are named ``fc1 .. fcL`` as in the seed, so "fc2" means the same thing in the code,
the notebooks and the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from modclust.core.checks import check_int, check_ints

SEED_WIDTHS = (784, 64, 64, 10)
SEED_MAX = 2**64 - 1  # the largest seed a torch.Generator takes


def check_widths(widths: Sequence[int], name: str = "widths") -> tuple[int, ...]:
    """``widths`` as a tuple of ints, checked: a sequence (not a string) of at least two ints >= 1.

    The one check of an MLP's layer widths, used by :class:`MLP`, :func:`init_weights` and
    :class:`modclust.core.train.TrainConfig`.
    """
    return check_ints(name, widths, minimum=1, min_length=2,
                      hint="layer widths, input first, e.g. (784, 64, 64, 10)")


def layer_names(widths: Sequence[int]) -> list[str]:
    """The names of an MLP's Linear layers, ``fc1 .. fcL`` (L = ``len(widths) - 1``).

    The one place the layer names are made: :class:`MLP`, the trainers, the circuits and the
    experiment grid all take them from here.
    """
    return [f"fc{i + 1}" for i in range(len(widths) - 1)]


def layers_label(clustered: Sequence[str], widths: Sequence[int]) -> str:
    """A short name for a set of clustered layers: "all", "none", or the names joined by "+"."""
    if not clustered:
        return "none"
    if list(clustered) == layer_names(widths):
        return "all"
    return "+".join(clustered)


def layer_shapes(widths: Sequence[int]) -> dict[str, tuple[int, int]]:
    """Each layer's weight shape (out, in) by name: ``{"fc1": (widths[1], widths[0]), ...}``."""
    return {name: (b, a) for name, a, b in zip(layer_names(widths), widths[:-1], widths[1:])}


def init_weights(widths: Sequence[int], generator: torch.Generator) -> list[Tensor]:
    """nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from ``generator``."""
    widths = check_widths(widths)
    weights = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.rand(fan_out, fan_in, generator=generator) * (2 * bound) - bound
        weights.append(w)
    return weights


def forward(weights: Sequence[Tensor], x: Tensor, biases: Sequence[Tensor | None] | None = None) -> Tensor:
    """Logits of the MLP given its weights; a weight may carry leading model dims (M, out, in).

    ``biases`` (one per layer, ``None`` for none) are added to each layer's pre-activation. The
    model itself is bias-free; a mean-ablated circuit uses them for its pruned weights' constant
    contributions (see :mod:`modclust.analysis.objectives`).
    """
    h = x
    for i, w in enumerate(weights):
        h = h @ w.transpose(-1, -2)
        if biases is not None and biases[i] is not None:
            h = h + biases[i]
        if i < len(weights) - 1:
            h = torch.relu(h)
    return h


class MLP(nn.Module):
    """Bias-free MLP ``widths[0] -> ... -> widths[-1]`` with ReLU between layers."""

    def __init__(self, widths: Sequence[int] = SEED_WIDTHS, seed: int | None = None) -> None:
        super().__init__()
        self.widths = check_widths(widths, "MLP widths")
        for name, (b, a) in layer_shapes(self.widths).items():
            self.add_module(name, nn.Linear(a, b, bias=False))
        if seed is not None:
            seed = check_int("MLP seed", seed, 0, SEED_MAX)
            self.set_weights(init_weights(self.widths, torch.Generator().manual_seed(seed)))

    @property
    def layer_names(self) -> list[str]:
        return layer_names(self.widths)

    @property
    def linears(self) -> list[nn.Linear]:
        return [getattr(self, name) for name in self.layer_names]

    def weights(self) -> list[Tensor]:
        return [layer.weight for layer in self.linears]

    @torch.no_grad()
    def set_weights(self, weights: Sequence[Tensor]) -> None:
        for layer, w in zip(self.linears, weights, strict=True):
            if layer.weight.shape != w.shape:
                raise ValueError(f"weight of shape {tuple(w.shape)} does not fit {layer}")
            layer.weight.copy_(w)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for inputs ``x`` (N, ...) flattening to (N, widths[0]).

        The forward calls its ``fc`` modules (``h = fc(h)``, ReLU between), so forward hooks on
        them fire: the analyses for any ``nn.Module`` read and ablate the MLP through them. A
        bias-free ``nn.Linear`` on (N, in) computes ``h @ W.T``, the same product as the batched
        kernel :func:`forward`, so the logits are bitwise those of ``forward(self.weights(), x)``
        (tested).
        """
        return self._run(x)[0]

    def activations(self, x: Tensor) -> dict[str, Tensor]:
        """Every layer's output for inputs ``x``: post-ReLU for hidden layers, logits last."""
        return self._run(x)[1]

    def _run(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        h = x.flatten(1)
        out = {}
        last = len(self.widths) - 2
        for i, name in enumerate(self.layer_names):
            h = getattr(self, name)(h)
            if i < last:
                h = torch.relu(h)
            out[name] = h
        return h, out

    def layer_index(self, name: str) -> int:
        if name not in self.layer_names:
            raise ValueError(f"unknown layer {name!r}: this MLP has {self.layer_names}")
        return self.layer_names.index(name)
