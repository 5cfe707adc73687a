"""``Modularity``: a torch.optim optimizer that makes any model's weight matrices clusterable.

It wraps a base optimizer class (SGD, Adam, ...) and, before each base step, adds the
gradient of ``-alpha * C(W)`` to every 2-D parameter it was given, using the closed-form
gradient of C. With the default ``decoupled=False`` this is exactly the same as adding
``-alpha * sum_W C(W)`` to the loss (the seed's way, still available as
:func:`modclust.clusterability_loss`), for any base optimizer, but costs no autograd graph.
With ``decoupled=True`` the term bypasses the base optimizer's gradient transform and moves
the weights directly by ``lr * alpha * dC/dW``, as AdamW decouples weight decay from Adam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from modclust.clusterability import clusterability, clusterability_and_grad
from modclust.partition import Partition


class Modularity(Optimizer):
    """Regularise every 2-D parameter towards its partition, then take the base optimizer's step.

    Example::

        opt = Modularity(model.parameters(), torch.optim.SGD, n_clusters=4, alpha=20, lr=1e-3)

    Parameters with fewer than 2 dims (biases) and groups with ``alpha=0`` are left to the base
    optimizer alone. Each 2-D weight gets ``n_clusters`` equal diagonal blocks unless
    ``partitions`` maps that parameter to a :class:`Partition`. Per-group ``alpha`` and
    ``n_clusters`` may be set in param groups, as any torch optimizer option.
    """

    def __init__(self, params: Iterable[Any], base_optimizer: type[Optimizer], n_clusters: int = 4,
                 alpha: float = 20.0, partitions: Mapping[Tensor, Partition] | None = None,
                 decoupled: bool = False, **base_kwargs: Any) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0 (it rewards clusterability), got {alpha}")
        super().__init__(params, {"alpha": alpha, "n_clusters": n_clusters, "decoupled": decoupled})
        self.base = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base.param_groups  # one set of groups: lr and alpha live together
        self._partitions: dict[Tensor, Partition] = dict(partitions or {})
        self._masks: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim == 2:
                    self._partition_of(p, group)  # validate now, not at the first step

    def _partition_of(self, p: Tensor, group: dict[str, Any]) -> Partition:
        part = self._partitions.get(p)
        if part is None:
            k = group["n_clusters"]
            if k > min(p.shape):
                raise ValueError(
                    f"cannot cut a weight of shape {tuple(p.shape)} into n_clusters={k} blocks: "
                    "pass partitions={param: Partition(...)} or put it in a group with alpha=0"
                )
            part = Partition.equal_blocks(p.shape, k)
            self._partitions[p] = part
        part.check_fits(p)
        return part

    def _mask(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        mask = self._masks.get(p)
        if mask is None or mask.device != p.device or mask.dtype != p.dtype:
            mask = self._partition_of(p, group).mask(p.device, p.dtype)
            self._masks[p] = mask
        return mask

    def _regularised(self) -> Iterable[tuple[Tensor, dict[str, Any]]]:
        for group in self.param_groups:
            if group["alpha"] == 0:
                continue
            for p in group["params"]:
                if p.ndim == 2:
                    yield p, group

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for p, group in self._regularised():
            _, dc = clusterability_and_grad(p, self._mask(p, group))
            if group["decoupled"]:
                p.add_(dc, alpha=group["lr"] * group["alpha"])
            elif p.grad is None:
                p.grad = dc.mul(-group["alpha"])
            else:
                p.grad.add_(dc, alpha=-group["alpha"])
        self.base.step()
        return loss

    @torch.no_grad()
    def clusterability(self) -> float:
        """Mean C over the regularised parameters, as they are now."""
        values = [clusterability(p, self._mask(p, g)) for p, g in self._regularised()]
        return float(torch.stack(values).mean()) if values else float("nan")

    def partition(self, p: Tensor) -> Partition:
        """The partition a parameter is regularised towards."""
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                return self._partition_of(p, group)
        raise ValueError("this parameter is not managed by the optimizer")

    def state_dict(self) -> dict[str, Any]:
        sd = self.base.state_dict()
        flat = [p for g in self.param_groups for p in g["params"]]
        sd["partitions"] = {i: self._partitions[p].to_dict() for i, p in enumerate(flat) if p in self._partitions}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("partitions", {})
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        flat = [p for g in self.param_groups for p in g["params"]]
        for i, d in saved.items():
            self._partitions[flat[int(i)]] = Partition.from_dict(d)
        self._masks.clear()
