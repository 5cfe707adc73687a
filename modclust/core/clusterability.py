"""Clusterability C(W): the share of a matrix's squared weight inside its clusters' blocks.

C(W) = sum_k sum_{i in U_k, j in V_k} W_ij^2 / sum_ij W_ij^2, with M the 0/1 block mask.
It is about 1/k at initialisation and 1 when all weight lies inside the blocks. Training
maximises it by adding -lambda * C to the loss. Because C depends on W alone its gradient has
a closed form, dC/dW = (2 / sum W^2) * W * (M - C), used by the fast trainer and the
``Modularity`` optimizer instead of autograd. Every function accepts leading batch
dimensions (M models stacked as (M, out, in)).

An all-zero matrix (sum W^2 = 0, also when the squares underflow) has C = 0 and dC/dW = 0:
it has no weight, so none of it lies inside the blocks, and the ratio's 0/0 never becomes a
NaN that a training step would spread into the weights. Every other matrix gets the ratio as
written (a nan weight still gives a nan C).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _ratio(inside: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """inside / total, 0 where total is 0; and the total with its zeros replaced by 1 (safe to
    divide by). A nan total (a nan weight) stays nan: only exact zeros are special."""
    zero = total == 0
    safe = torch.where(zero, torch.ones_like(total), total)
    return torch.where(zero, torch.zeros_like(inside), inside / safe), safe


def clusterability(weight: Tensor, mask: Tensor) -> Tensor:
    """C(W) for W of shape (..., out, in) and a 0/1 mask broadcastable to it (0 for W = 0)."""
    sq = weight.square()
    return _ratio((sq * mask).sum((-2, -1)), sq.sum((-2, -1)))[0]


def clusterability_and_grad(weight: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """C(W) and dC/dW = (2 / sum W^2) * W * (M - C), sharing one pass over W (both 0 for W = 0)."""
    sq = weight.square()
    c, safe_total = _ratio((sq * mask).sum((-2, -1), keepdim=True), sq.sum((-2, -1), keepdim=True))
    return c.squeeze(-1).squeeze(-1), (2.0 / safe_total) * weight * (mask - c)


def clusterability_grad(weight: Tensor, mask: Tensor) -> Tensor:
    """dC/dW in closed form (no autograd graph needed)."""
    return clusterability_and_grad(weight, mask)[1]
