"""Reproduce the seed notebook's numbers over several seeds (``make reproduce``).

Trains the seed configuration (lambda = 15 with 4 blocks on fc2, and lambda = 0; 10 epochs,
SGD lr 1e-3, batch 64) for each seed, all models in one batched run, then prints the table
of DESIGN.md section 2 (the seed notebook's value beside ours, per seed, mean and 95 %
interval) and, as the last line, one JSON object of the means.

    python -m modclust.seed.reproduce --seeds 3
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import torch

from modclust.core import data as data_mod
from modclust.analysis.circuits import search_space_pruned
from modclust.analysis.any_model import ablate, label_semanticity
from modclust.core.stats import mean_ci
from modclust.core.train import TrainConfig, train_many

SEED_NOTEBOOK = {
    "clustered_acc": 0.896,
    "clustered_C": None,
    "unclustered_acc": 0.90,
    "cluster_off_acc": [0.79, 0.61, 0.79, 0.72],
    "cluster_on_acc": [0.33, 0.27, 0.48, 0.23],
    "semanticity_clustered": 0.617,
    "semanticity_unclustered": 0.631,
    "search_space_pruned": 0.7640,
}


def run(seeds: Sequence[int], epochs: int = 10, lam: float = 15.0, dataset: str = "mnist",
        device: str = "cpu", progress: bool = True) -> dict[str, list]:
    """Per-seed values of every quantity in the table."""
    ds = data_mod.load(dataset, device)
    configs = [TrainConfig(dataset=dataset, lam=lam, epochs=epochs, seed=s) for s in seeds]
    configs += [TrainConfig(dataset=dataset, lam=0.0, epochs=epochs, seed=s) for s in seeds]
    results = train_many(configs, ds, progress=progress)
    clustered, plain = results[: len(seeds)], results[len(seeds):]
    per_seed: dict[str, list] = {k: [] for k in SEED_NOTEBOOK}
    for c, u in zip(clustered, plain):
        part = c.partitions["fc2"]
        abl = ablate(c.model, part, "fc2", ds.test_x, ds.test_y)
        per_seed["clustered_acc"].append(c.test_acc)
        per_seed["clustered_C"].append(c.final_clusterability)
        per_seed["unclustered_acc"].append(u.test_acc)
        per_seed["cluster_off_acc"].append(abl.off_acc)
        per_seed["cluster_on_acc"].append(abl.on_acc)
        per_seed["semanticity_clustered"].append(label_semanticity(c.model, "fc2", ds.test_x, ds.test_y, 50).score)
        per_seed["semanticity_unclustered"].append(label_semanticity(u.model, "fc2", ds.test_x, ds.test_y, 50).score)
        per_seed["search_space_pruned"].append(sum(search_space_pruned(c.config.widths, part, "fc2")) / part.k)
    return per_seed


def means_over_seeds(per_seed: dict[str, list]) -> dict[str, float | list[float]]:
    """Means over seeds; per-cluster quantities stay lists (one mean per cluster index)."""
    out: dict[str, float | list[float]] = {}
    for key, values in per_seed.items():
        if isinstance(values[0], list):
            out[key] = [mean_ci([v[i] for v in values]).mean for i in range(len(values[0]))]
        else:
            out[key] = mean_ci(values).mean
    return out


def design_table(per_seed: dict[str, list]) -> str:
    """The DESIGN.md section 2 table: seed notebook, each seed, mean [95 % interval]."""
    n = len(per_seed["clustered_acc"])
    header = f"{'quantity':<26} {'seed notebook':>22}  " + "  ".join(f"{'seed ' + str(i):>8}" for i in range(n))
    lines = [header + f"  {'mean [95% CI]':>24}", "-" * (len(header) + 26)]

    def fmt(v: object) -> str:
        return "—" if v is None else (" ".join(f"{x:.2f}" for x in v) if isinstance(v, list) else f"{v:.4f}")

    for key, values in per_seed.items():
        if isinstance(values[0], list):
            for i in range(len(values[0])):
                col = [v[i] for v in values]
                seed_val = SEED_NOTEBOOK[key][i] if i < len(SEED_NOTEBOOK[key] or []) else None
                lines.append(f"{key + f'[{i}]':<26} {fmt(seed_val):>22}  " + "  ".join(f"{x:>8.4f}" for x in col)
                             + f"  {mean_ci(col).fmt(4):>24}")
            sorted_means = [mean_ci([sorted(v)[i] for v in values]).fmt(3) for i in range(len(values[0]))]
            lines.append(f"{'  (sorted per seed)':<26} {fmt(sorted(SEED_NOTEBOOK[key])):>22}  " + ", ".join(sorted_means))
        else:
            lines.append(f"{key:<26} {fmt(SEED_NOTEBOOK[key]):>22}  " + "  ".join(f"{x:>8.4f}" for x in values)
                         + f"  {mean_ci(values).fmt(4):>24}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. n-1)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lam", type=float, default=15.0, help="lambda of the clustered model")
    p.add_argument("--dataset", default="mnist", choices=sorted(data_mod.DATASETS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    start = time.perf_counter()
    per_seed = run(range(args.seeds), args.epochs, args.lam, args.dataset, args.device)
    print(design_table(per_seed))
    print(f"\n{args.seeds} seeds x 2 models, {args.epochs} epochs, {args.dataset}, {args.device}: "
          f"{time.perf_counter() - start:.1f} s")
    print("per-cluster rows follow cluster index; clusters are exchangeable between seeds, so the "
          "sorted rows compare like with like.")
    print(json.dumps(means_over_seeds(per_seed)))


if __name__ == "__main__":
    main()
