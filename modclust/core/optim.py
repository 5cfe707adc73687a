"""``Modularity``: a torch.optim optimizer that makes any model's weights clusterable.

It wraps a base optimizer class (SGD, Adam, ...) and, before each base step, adds the
gradient of ``-alpha * C(W)`` to every weight it was given, using the closed-form gradient
of C. With the default ``decoupled=False`` this is exactly the same as adding
``-alpha * sum_W C(W)`` to the loss (the seed's way, still available as
:func:`modclust.clusterability_loss`), for any base optimizer, but costs no autograd graph.
With ``decoupled=True`` the term bypasses the base optimizer's gradient transform and moves
the weights directly by ``lr * alpha * dC/dW``, as AdamW decouples weight decay from Adam.

What it regularises, by a parameter's number of dims:

- 2-D [out, in] (``nn.Linear`` weights, and any other matrix): C of the matrix
  (:func:`~modclust.core.clusterability.clusterability_and_grad`);
- 4-D [out, in, kh, kw] (``nn.Conv2d`` weights): C of its (out-channel x in-channel) blocks,
  each entry weighing its kernel's squared norm
  (:func:`~modclust.core.clusterability.kernel_clusterability_and_grad`). A 4-D parameter is
  taken to be a dense conv kernel; a grouped conv's weight [out, in / groups, kh, kw] is not
  one, so give it ``alpha=0`` (:meth:`Modularity.for_model` refuses grouped convs);
- 0-D and 1-D (biases, norm scales and shifts): left to the base optimizer, by design;
- 3-D and 5-D or more (Conv1d / Conv3d kernels, stacked matrices, positional embeddings): it
  cannot regularise them, and says so: an :class:`UnregularisedParameterWarning` names each such
  parameter of a group with ``alpha > 0`` (by its name when the optimizer got
  ``named_parameters()``), once; they still take the base optimizer's steps. Put them in a
  param group with ``alpha=0`` to leave them out on purpose, without the warning.

:meth:`Modularity.for_model` takes the partitions of a model's clustered layers from a
:class:`~modclust.core.units.UnitClusters` and leaves every other parameter to the base optimizer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from modclust.core.checks import check_float, check_int
from modclust.core.clusterability import (clusterability, clusterability_and_grad, kernel_clusterability,
                                          kernel_clusterability_and_grad)
from modclust.core.partition import Partition
from modclust.core.units import UnitClusters


class UnregularisedParameterWarning(UserWarning):
    """A parameter with 3 or 5+ dims in a group with ``alpha > 0``: Modularity cannot regularise it."""


def _check_options(where: str, alpha: Any, n_clusters: Any, decoupled: Any) -> tuple[float, int, bool]:
    """The Modularity options of the defaults or of one param group, checked."""
    alpha = check_float(f"{where}alpha", alpha, 0.0, hint="it rewards clusterability; 0 leaves the group alone")
    n_clusters = check_int(f"{where}n_clusters", n_clusters, 1, hint="the number of diagonal blocks per weight")
    if not isinstance(decoupled, bool):
        raise TypeError(f"{where}decoupled must be True or False, got {decoupled!r}")
    return alpha, n_clusters, decoupled


def _regularisable(p: Tensor) -> bool:
    """A matrix [out, in] or a conv kernel [out, in, kh, kw]."""
    return p.ndim == 2 or p.ndim == 4


def _matrix_shape(p: Tensor) -> tuple[int, int]:
    """The (out, in) matrix a regularisable parameter's partition lives on (channels for a kernel)."""
    return int(p.shape[0]), int(p.shape[1])


class Modularity(Optimizer):
    """Regularise every 2-D and 4-D parameter towards its partition, then take the base optimizer's step.

    Example::

        opt = Modularity(model.parameters(), torch.optim.SGD, n_clusters=4, alpha=20, lr=1e-3)
        opt = Modularity.for_model(model, UnitClusters.equal(model, ["conv2", "fc1"], 4, x), torch.optim.SGD,
                                   alpha=20, lr=1e-3)

    Matrices [out, in] get C of their blocks, conv kernels [out, in, kh, kw] C of their
    (out-channel x in-channel) blocks (see the module doc). Parameters with fewer than 2 dims
    (biases, norms) and groups with ``alpha=0`` are left to the base optimizer alone; parameters
    with 3 or 5+ dims are too, with an :class:`UnregularisedParameterWarning` naming them. Each
    regularised weight gets ``n_clusters`` equal diagonal blocks unless ``partitions`` maps that
    parameter to a :class:`Partition` (of its (out, in) matrix, channels for a kernel). Per-group
    ``alpha`` and ``n_clusters`` may be set in param groups, as any torch optimizer option.
    """

    def __init__(self, params: Iterable[Any], base_optimizer: type[Optimizer], n_clusters: int = 4,
                 alpha: float = 20.0, partitions: Mapping[Tensor, Partition] | None = None,
                 decoupled: bool = False, **base_kwargs: Any) -> None:
        alpha, n_clusters, decoupled = _check_options("Modularity ", alpha, n_clusters, decoupled)
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, Optimizer)):
            raise TypeError(f"Modularity's base_optimizer must be a torch optimizer class, e.g. torch.optim.SGD, "
                            f"got {base_optimizer!r}: pass the class itself, its options as keywords (lr=...)")
        super().__init__(params, {"alpha": alpha, "n_clusters": n_clusters, "decoupled": decoupled})
        self.base = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base.param_groups  # one set of groups: lr and alpha live together
        self._partitions: dict[Tensor, Partition] = dict(partitions or {})
        self._masks: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                self._validate(p, group)  # now, not at the first step

    @classmethod
    def for_model(cls, model: nn.Module, clusters: UnitClusters, base_optimizer: type[Optimizer],
                  alpha: float = 20.0, decoupled: bool = False, **base_kwargs: Any) -> Modularity:
        """An optimizer for all of ``model``'s parameters that regularises the clustered layers' weights
        towards the partitions ``clusters`` gives them (:meth:`UnitClusters.weight_partitions`) and
        leaves every other parameter (biases, norms, unclustered layers) to the base optimizer, in a
        group with ``alpha=0``. ``base_kwargs`` go to the base optimizer (``lr=...``)."""
        if not isinstance(clusters, UnitClusters):
            raise TypeError(f"clusters must be a UnitClusters (e.g. UnitClusters.equal(model, layers, k, x)), "
                            f"got {type(clusters).__name__}")
        parts = clusters.weight_partitions(model)
        clustered = {id(p) for p in parts}
        rest = [p for p in model.parameters() if id(p) not in clustered]
        groups: list[dict[str, Any]] = [{"params": list(parts)}]
        if rest:
            groups.append({"params": rest, "alpha": 0.0})
        return cls(groups, base_optimizer, n_clusters=clusters.k, alpha=alpha, partitions=parts,
                   decoupled=decoupled, **base_kwargs)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as any torch optimizer); its ``alpha`` and ``n_clusters`` are checked.

        After construction the group goes to the base optimizer too, which fills in its own
        defaults (lr, ...), and its 2-D and 4-D weights are checked against their partitions at
        once. Parameters it cannot regularise are reported (:class:`UnregularisedParameterWarning`).
        """
        base = self.__dict__.get("base")
        if base is None:  # during Optimizer.__init__: the base does not exist yet
            super().add_param_group(param_group)
            self._check_group(len(self.param_groups) - 1)
            self._report(len(self.param_groups) - 1)
            return
        for key, default in self.defaults.items():
            param_group.setdefault(key, default)
        base.add_param_group(param_group)
        self.param_groups = base.param_groups
        try:
            self._check_group(len(self.param_groups) - 1)
            for p in self.param_groups[-1]["params"]:
                self._validate(p, self.param_groups[-1])
        except (TypeError, ValueError):
            self.param_groups.pop()  # leave the optimizer as it was
            raise
        self._report(len(self.param_groups) - 1)

    def _check_group(self, i: int) -> None:
        group = self.param_groups[i]
        group["alpha"], group["n_clusters"], group["decoupled"] = _check_options(
            f"Modularity param group {i}: ", group["alpha"], group["n_clusters"], group["decoupled"])

    def _report(self, i: int) -> None:
        """Warn, once per parameter, of those in group ``i`` it cannot regularise (3 or 5+ dims, alpha > 0)."""
        group = self.param_groups[i]
        if group["alpha"] == 0:
            return
        reported: set[int] = self.__dict__.setdefault("_reported", set())
        names = group.get("param_names")
        found = []
        for j, p in enumerate(group["params"]):
            if p.ndim > 2 and not _regularisable(p) and id(p) not in reported:
                reported.add(id(p))
                label = repr(names[j]) if names is not None and j < len(names) else f"#{j}"
                found.append(f"{label} of shape {tuple(p.shape)}")
        if found:
            warnings.warn(
                f"Modularity cannot regularise {len(found)} parameter{'s' if len(found) > 1 else ''} of param group "
                f"{i} (it regularises 2-D weights [out, in] and 4-D conv kernels [out, in, kh, kw]): "
                f"{'; '.join(found)}. They take the base optimizer's steps only; put them in a param group with "
                f"alpha=0 to say so and silence this warning",
                UnregularisedParameterWarning, stacklevel=2)

    def _validate(self, p: Tensor, group: dict[str, Any]) -> None:
        """Fix a regularisable parameter's partition now (equal blocks unless given), checked to fit it.

        A weight in a group with ``alpha=0`` that is too small for the group's ``n_clusters`` and
        has no partition given is left alone: it is not regularised, so it needs no blocks.
        """
        if not _regularisable(p):
            return
        if group["alpha"] == 0 and p not in self._partitions and group["n_clusters"] > min(_matrix_shape(p)):
            return
        self._partition_of(p, group)

    def _partition_of(self, p: Tensor, group: dict[str, Any]) -> Partition:
        part = self._partitions.get(p)
        shape = _matrix_shape(p)
        if part is None:
            k = group["n_clusters"]
            if k > min(shape):
                what = "" if p.ndim == 2 else f" (a conv kernel: {shape[0]} out- x {shape[1]} in-channels)"
                raise ValueError(
                    f"cannot cut a weight of shape {tuple(p.shape)}{what} into n_clusters={k} blocks: "
                    "pass partitions={param: Partition(...)} or put it in a group with alpha=0"
                )
            part = Partition.equal_blocks(shape, k)
            self._partitions[p] = part
        if p.ndim == 2:
            part.check_fits(p)
        elif part.shape != shape:
            raise ValueError(
                f"partition of shape {part.shape} does not match the conv weight of shape {tuple(p.shape)}, whose "
                f"(out, in) channel matrix is {shape}: build the partition for this layer")
        return part

    def _mask(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        mask = self._masks.get(p)  # [out, in], for a kernel too
        if mask is None or mask.device != p.device or mask.dtype != p.dtype:
            mask = self._partition_of(p, group).mask(p.device, p.dtype)
            self._masks[p] = mask
        return mask

    def _regularised(self) -> Iterable[tuple[Tensor, dict[str, Any]]]:
        for i, group in enumerate(self.param_groups):
            if group["alpha"] == 0:
                continue
            for p in group["params"]:
                if p.ndim == 2 or p.ndim == 4:
                    yield p, group
                elif p.ndim > 2 and id(p) not in self.__dict__.get("_reported", ()):
                    self._report(i)  # alpha was raised from 0 after the group was added

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for p, group in self._regularised():
            if p.ndim == 2:
                _, dc = clusterability_and_grad(p, self._mask(p, group))
            else:
                _, dc = kernel_clusterability_and_grad(p, self._mask(p, group))
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
        values = [clusterability(p, self._mask(p, g)) if p.ndim == 2 else kernel_clusterability(p, self._mask(p, g))
                  for p, g in self._regularised()]
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
