"""Clusters of a weight matrix W (out x in): row sets U_k (output units), column sets V_k (inputs).

A partition need not cover every unit and its clusters need not be equal, but it is always
checked: sets disjoint, indices in range, shape matching the matrix it is applied to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from modclust.core.checks import check_int, check_ints


def _split_sizes(n: int, k: int) -> list[int]:
    """Sizes of k contiguous near-equal blocks of n units (the first ones one larger)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


@dataclass(frozen=True)
class Partition:
    """k clusters of a matrix of ``shape`` = (out, in): ``rows[k]`` = U_k, ``cols[k]`` = V_k."""

    shape: tuple[int, int]
    rows: tuple[tuple[int, ...], ...]
    cols: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", check_ints("Partition shape", self.shape, hint="(out, in) of a 2-D weight"))
        object.__setattr__(self, "rows", tuple(check_ints(f"Partition rows[{k}]", r) for k, r in enumerate(self.rows)))
        object.__setattr__(self, "cols", tuple(check_ints(f"Partition cols[{k}]", c) for k, c in enumerate(self.cols)))
        if len(self.shape) != 2 or min(self.shape) < 1:
            raise ValueError(f"a partition's shape is (out, in) of a 2-D weight, got {self.shape}")
        if len(self.rows) != len(self.cols) or not self.rows:
            raise ValueError(
                f"a partition needs one row set and one column set per cluster, got "
                f"{len(self.rows)} row sets and {len(self.cols)} column sets"
            )
        for what, sets, size in (("row", self.rows, self.shape[0]), ("column", self.cols, self.shape[1])):
            seen: dict[int, int] = {}
            for k, members in enumerate(sets):
                if not members:
                    raise ValueError(f"cluster {k} has no {what}s: every cluster needs at least one")
                for i in members:
                    if not 0 <= i < size:
                        raise ValueError(
                            f"{what} index {i} of cluster {k} is out of range for a matrix of "
                            f"shape {self.shape} ({what}s run 0..{size - 1})"
                        )
                    if i in seen:
                        raise ValueError(
                            f"{what} {i} is in cluster {seen[i]} and cluster {k}: clusters must be disjoint"
                        )
                    seen[i] = k

    # constructors ------------------------------------------------------------------------
    @classmethod
    def equal_blocks(cls, shape: Sequence[int], k: int) -> Partition:
        """k contiguous diagonal blocks (the seed's 4 blocks of 16 for a 64 x 64 fc2)."""
        out, inp = check_ints("shape", shape, 1, hint="(out, in) of a 2-D weight")
        k = check_int("k", k, hint="the number of blocks")
        if not 1 <= k <= min(out, inp):
            raise ValueError(f"cannot cut a {out} x {inp} matrix into {k} blocks: need 1 <= k <= {min(out, inp)}")
        def blocks(n: int) -> list[tuple[int, ...]]:
            starts = [0]
            for s in _split_sizes(n, k):
                starts.append(starts[-1] + s)
            return [tuple(range(a, b)) for a, b in zip(starts[:-1], starts[1:])]
        return cls((out, inp), tuple(blocks(out)), tuple(blocks(inp)))

    @classmethod
    def from_labels(cls, row_labels: Iterable[int], col_labels: Iterable[int]) -> Partition:
        """From a cluster label per row and per column (-1 leaves a unit out of every cluster)."""
        rl = list(check_ints("row_labels", row_labels, -1, hint="a cluster per row, -1 for none"))
        cl = list(check_ints("col_labels", col_labels, -1, hint="a cluster per column, -1 for none"))
        k = max(max(rl, default=-1), max(cl, default=-1)) + 1
        rows = tuple(tuple(i for i, v in enumerate(rl) if v == c) for c in range(k))
        cols = tuple(tuple(j for j, v in enumerate(cl) if v == c) for c in range(k))
        return cls((len(rl), len(cl)), rows, cols)

    # views -------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return len(self.rows)

    def check_fits(self, weight: Tensor, name: str = "weight") -> None:
        if tuple(weight.shape[-2:]) != self.shape:
            raise ValueError(
                f"partition of shape {self.shape} does not match {name} of shape "
                f"{tuple(weight.shape[-2:])}: build the partition for this layer"
            )

    def mask(self, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """M with M_ij = 1 where (i, j) lies inside a cluster's block U_k x V_k, else 0."""
        m = torch.zeros(self.shape, dtype=dtype)
        for r, c in zip(self.rows, self.cols):
            m[torch.tensor(r).unsqueeze(1), torch.tensor(c)] = 1
        return m.to(device)

    def off_mask(self, clusters: Iterable[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """Multiplicative mask that zeroes rows U_c and columns V_c of each cluster c given."""
        m = torch.ones(self.shape, dtype=dtype)
        for c in check_ints("clusters", clusters, 0, self.k - 1):
            m[list(self.rows[c]), :] = 0
            m[:, list(self.cols[c])] = 0
        return m

    def ablation_masks(self, mode: str) -> Tensor:
        """(k, out, in) masks: ``"off"`` turns cluster c off; ``"on"`` turns every other cluster off."""
        if mode == "off":
            return torch.stack([self.off_mask([c]) for c in range(self.k)])
        if mode == "on":
            return torch.stack([self.off_mask([o for o in range(self.k) if o != c]) for c in range(self.k)])
        raise ValueError(f"ablation mode must be 'off' or 'on', got {mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "rows": [list(r) for r in self.rows], "cols": [list(c) for c in self.cols]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Partition:
        return cls(tuple(d["shape"]), tuple(map(tuple, d["rows"])), tuple(map(tuple, d["cols"])))
