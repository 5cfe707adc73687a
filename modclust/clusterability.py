"""Clusterability C(W): the share of a matrix's squared weight inside its clusters' blocks.

C(W) = sum_k sum_{i in U_k, j in V_k} W_ij^2 / sum_ij W_ij^2, with M the 0/1 block mask.
It is about 1/k at initialisation and 1 when all weight lies inside the blocks. Training
maximises it by adding -lambda * C to the loss. Because C depends on W alone its gradient has
a closed form, dC/dW = (2 / sum W^2) * W * (M - C), used by the fast trainer and the
``Modularity`` optimizer instead of autograd. Every function accepts leading batch
dimensions (M models stacked as (M, out, in)).
"""

from __future__ import annotations

from torch import Tensor


def clusterability(weight: Tensor, mask: Tensor) -> Tensor:
    """C(W) for W of shape (..., out, in) and a 0/1 mask broadcastable to it."""
    sq = weight.square()
    return (sq * mask).sum((-2, -1)) / sq.sum((-2, -1))


def clusterability_and_grad(weight: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """C(W) and dC/dW = (2 / sum W^2) * W * (M - C), sharing one pass over W."""
    sq = weight.square()
    total = sq.sum((-2, -1), keepdim=True)
    c = (sq * mask).sum((-2, -1), keepdim=True) / total
    return c.squeeze(-1).squeeze(-1), (2.0 / total) * weight * (mask - c)


def clusterability_grad(weight: Tensor, mask: Tensor) -> Tensor:
    """dC/dW in closed form (no autograd graph needed)."""
    return clusterability_and_grad(weight, mask)[1]
