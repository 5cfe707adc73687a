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

from modclust.core.checks import check_float, check_int
from modclust.core.clusterability import clusterability, clusterability_and_grad
from modclust.core.partition import Partition


def _check_options(where: str, alpha: Any, n_clusters: Any, decoupled: Any) -> tuple[float, int, bool]:
    """The Modularity options of the defaults or of one param group, checked."""
    alpha = check_float(f"{where}alpha", alpha, 0.0, hint="it rewards clusterability; 0 leaves the group alone")
    n_clusters = check_int(f"{where}n_clusters", n_clusters, 1, hint="the number of diagonal blocks per weight")
    if not isinstance(decoupled, bool):
        raise TypeError(f"{where}decoupled must be True or False, got {decoupled!r}")
    return alpha, n_clusters, decoupled


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
        alpha, n_clusters, decoupled = _check_options("Modularity ", alpha, n_clusters, decoupled)
        super().__init__(params, {"alpha": alpha, "n_clusters": n_clusters, "decoupled": decoupled})
        self.base = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base.param_groups  # one set of groups: lr and alpha live together
        self._partitions: dict[Tensor, Partition] = dict(partitions or {})
        self._masks: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim == 2:
                    self._partition_of(p, group)  # validate now, not at the first step

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as any torch optimizer); its ``alpha`` and ``n_clusters`` are checked.

        After construction the group goes to the base optimizer too, which fills in its own
        defaults (lr, ...), and its 2-D weights are checked against their partitions at once.
        """
        base = self.__dict__.get("base")
        if base is None:  # during Optimizer.__init__: the base does not exist yet
            super().add_param_group(param_group)
            self._check_group(len(self.param_groups) - 1)
            return
        for key, default in self.defaults.items():
            param_group.setdefault(key, default)
        base.add_param_group(param_group)
        self.param_groups = base.param_groups
        try:
            self._check_group(len(self.param_groups) - 1)
            for p in self.param_groups[-1]["params"]:
                if p.ndim == 2:
                    self._partition_of(p, self.param_groups[-1])
        except (TypeError, ValueError):
            self.param_groups.pop()  # leave the optimizer as it was
            raise

    def _check_group(self, i: int) -> None:
        group = self.param_groups[i]
        group["alpha"], group["n_clusters"], group["decoupled"] = _check_options(
            f"Modularity param group {i}: ", group["alpha"], group["n_clusters"], group["decoupled"])

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
        for i in range(len(self.param_groups)):
            self._check_group(i)
