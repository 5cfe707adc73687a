"""Clusterability C(W): the share of a matrix's squared weight inside its clusters' blocks.

C(W) = sum_k sum_{i in U_k, j in V_k} W_ij^2 / sum_ij W_ij^2, with M the 0/1 block mask.
It is about 1/k at initialisation and 1 when all weight lies inside the blocks. Training
maximises it by adding -lambda * C to the loss. Because C depends on W alone its gradient has
a closed form, dC/dW = (2 / sum W^2) * W * (M - C), used by the fast trainer and the
``Modularity`` optimizer instead of autograd. Every function accepts leading batch
dimensions (M models stacked as (M, out, in)). The ``kernel_*`` functions do the same for a
Conv2d weight [out, in, kh, kw] on its (out-channel x in-channel) blocks, each entry weighing
its kernel's squared norm (see the section below).

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


# convolution kernels -------------------------------------------------------------------------------
#
# A Conv2d weight W [out, in, kh, kw] connects in-channel j to out-channel i by a kernel W_ij.
# Its clusters are blocks of the (out x in) channel matrix, and the entry (i, j) weighs what the
# whole kernel weighs: S_ij = sum_ab W_ijab^2 (the [out, in] matrix of kernel squared norms), so
#
#     C(W) = sum_ij M_ij S_ij / sum_ij S_ij,
#     dC/dW_ijab = (2 / sum S) * W_ijab * (M_ij - C),
#
# the 2-D formulas with each entry's square replaced by its kernel's squared norm (for a 1 x 1
# kernel, exactly C of the [out, in] matrix). The same conventions hold: leading batch dims
# (..., out, in, kh, kw), C = 0 and dC/dW = 0 for an all-zero weight.

def kernel_clusterability(weight: Tensor, mask: Tensor) -> Tensor:
    """C of a conv weight [..., out, in, kh, kw] on the blocks of a 0/1 mask [out, in] (broadcastable
    to [..., out, in]): the share of the kernels' squared mass inside the blocks; shape [...]."""
    s = weight.square().sum((-2, -1))  # [..., out, in] kernel squared norms
    return _ratio((s * mask).sum((-2, -1)), s.sum((-2, -1)))[0]


def kernel_clusterability_and_grad(weight: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """C of a conv weight [..., out, in, kh, kw] ([...]) and dC/dW (the weight's shape), in closed
    form: dC/dW = (2 / sum S) * W * (M - C), with M [out, in] spread over each kernel."""
    s = weight.square().sum((-2, -1))  # [..., out, in]
    c, safe_total = _ratio((s * mask).sum((-2, -1), keepdim=True), s.sum((-2, -1), keepdim=True))  # [..., 1, 1]
    scale = ((2.0 / safe_total) * (mask - c)).unsqueeze(-1).unsqueeze(-1)  # [..., out, in, 1, 1]
    return c.squeeze(-1).squeeze(-1), scale * weight


def kernel_clusterability_grad(weight: Tensor, mask: Tensor) -> Tensor:
    """dC/dW of a conv weight [..., out, in, kh, kw] in closed form (no autograd graph needed)."""
    return kernel_clusterability_and_grad(weight, mask)[1]


def layer_clusterability(weight: Tensor, mask: Tensor) -> Tensor:
    """C of a layer's weight, whichever kind: a matrix (out, in) by :func:`clusterability`, a conv
    kernel (out, in, kh, kw) by :func:`kernel_clusterability`; ``mask`` is (out, in) either way
    (e.g. ``partition.mask()`` of a partition of the layer's unit matrix)."""
    units = tuple(weight.shape[:2])
    if weight.ndim in (2, 4) and tuple(mask.shape) != units:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match this layer's (out, in) unit matrix "
                         f"{units}: build the partition for this layer")
    if weight.ndim == 2:
        return clusterability(weight, mask)
    if weight.ndim == 4:
        return kernel_clusterability(weight, mask)
    raise ValueError(f"a clusterability needs a Linear weight (out, in) or a Conv2d weight (out, in, kh, kw), "
                     f"got shape {tuple(weight.shape)}")
