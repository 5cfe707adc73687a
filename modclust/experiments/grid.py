"""The paper's experiment grid: configurations over lambda x seed, their runs, and summaries.

The notebooks of the paper pipeline call these functions; each one is needed by more than one
notebook or is more than a line of glue. A *run* is one trained configuration, named
``lam<lambda>_seed<seed>``; a stage writes one JSON of per-run results, and later stages
group them by lambda to summarise over seeds.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from modclust.core import checkpoint
from modclust.analysis import circuits
from modclust.core import paths
from modclust.core.data import Dataset, load
from modclust.core.io import read_json, write_json
from modclust.core.stats import Interval, mean_ci
from modclust.core.train import TrainConfig, TrainResult, train_many


def resolve(path: str | os.PathLike[str]) -> Path:
    """A path from a notebook parameter: relative paths are taken from the checkout's root.

    Notebooks run with different working directories (papermill from the root, nbval from
    the notebook's folder), so every relative path is anchored at the root.
    """
    p = Path(path)
    return p if p.is_absolute() else paths.REPO / p


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; otherwise the device named."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available: use 'cpu' or 'auto'")
    return torch.device(device)


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads for torch (0 keeps torch's default).

    On an idle CPU torch's default (one thread per core) is fastest: here 2 threads trained 40
    models twice as fast as 1, and pruned 1.5x as fast. On a busy CPU a second thread waiting
    to be scheduled slows every operation down (greedy pruning by 10x or more was measured on
    a shared 2-core machine): use 1 there. The paper preset uses the default, the others 1.
    """
    if n < 0:
        raise ValueError(f"threads must be >= 0 (0 = torch's default), got {n}")
    if n > 0:
        torch.set_num_threads(n)


def load_data(dataset: str, device: str | torch.device = "cpu", n_train: int | None = None,
              n_test: int | None = None) -> Dataset:
    """The dataset on ``device``, cut to its first ``n_train`` / ``n_test`` examples if given."""
    data = load(dataset, device)
    if n_train is not None or n_test is not None:
        data = data.subset(n_train, n_test)
    return data


def run_name(config: TrainConfig) -> str:
    return f"lam{config.lam:g}_seed{config.seed}"


def grid_configs(lambdas: Iterable[float], seeds: Iterable[int], **common: Any) -> list[TrainConfig]:
    """One TrainConfig per (lambda, seed); lambda = 0 is the unclustered baseline.

    Every config carries the same clustered layer, so lambda = 0 trains exactly without the
    clusterability term while its C is still logged on the same blocks, and all configs can
    be trained as one batched model.
    """
    lambdas = sorted({float(v) for v in lambdas})
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not lambdas or not seeds:
        raise ValueError("the grid needs at least one lambda and one seed")
    if any(v < 0 for v in lambdas):
        raise ValueError(f"lambdas must be >= 0 (0 = unclustered), got {lambdas}")
    return [TrainConfig(lam=lam, seed=seed, **common) for lam in lambdas for seed in seeds]


def _batch_key(c: TrainConfig) -> tuple:
    return (c.dataset, c.widths, c.batch_size, c.epochs, c.clustered_layers)


def train_grid(configs: Sequence[TrainConfig], data: Dataset, progress: bool = True) -> list[TrainResult]:
    """Train every config, as few batched calls as the shapes allow (one for a plain grid)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(configs):
        groups[_batch_key(c)].append(i)
    out: list[TrainResult | None] = [None] * len(configs)
    for idx in groups.values():
        for i, r in zip(idx, train_many([configs[i] for i in idx], data, progress=progress)):
            out[i] = r
    return out  # type: ignore[return-value]


def downsample(values: Sequence[float], n_points: int = 200) -> list[float]:
    """Means of ``n_points`` consecutive equal chunks (fewer if there are fewer values)."""
    v = torch.tensor(list(values), dtype=torch.float64)
    if len(v) <= n_points:
        return v.tolist()
    chunks = torch.tensor_split(v, n_points)
    return [float(c.mean()) for c in chunks]


def save_runs(results: Sequence[TrainResult], out_dir: str | os.PathLike[str], main_lambda: float,
              curve_points: int = 200) -> dict[str, Any]:
    """Checkpoints in ``out_dir/checkpoints`` and a summary ``out_dir/train.json``; returns it."""
    out = resolve(out_dir)
    runs = []
    for r in results:
        name = run_name(r.config)
        checkpoint.save(r, out / "checkpoints" / f"{name}.pt")
        runs.append({
            "name": name,
            "lam": r.config.lam,
            "seed": r.config.seed,
            "config": r.config.to_dict(),
            "test_acc": r.test_acc,
            "clusterability": r.final_clusterability,
            "test_acc_per_epoch": r.history["test_acc"],
            "ce_curve": downsample(r.history["ce"], curve_points),
            "c_curve": downsample(r.history["clusterability"], curve_points),
            "steps": len(r.history["ce"]),
        })
    summary = {"main_lambda": float(main_lambda), "runs": runs}
    if float(main_lambda) not in {r["lam"] for r in runs}:
        raise ValueError(f"main_lambda {main_lambda} is not among the trained lambdas "
                         f"{sorted({r['lam'] for r in runs})}: add it to lambdas")
    write_json(out / "train.json", summary)
    return summary


def load_summary(train_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = resolve(train_dir) / "train.json"
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run notebooks/01_train.ipynb (make paper runs it) first")
    return read_json(path)


def load_runs(train_dir: str | os.PathLike[str], lambdas: Iterable[float] | None = None,
              device: str | torch.device = "cpu") -> list[TrainResult]:
    """The trained runs of a train stage, optionally only those with the given lambdas."""
    summary = load_summary(train_dir)
    keep = None if lambdas is None else {float(v) for v in lambdas}
    ckpt = resolve(train_dir) / "checkpoints"
    return [checkpoint.load(ckpt / f"{r['name']}.pt", device)
            for r in summary["runs"] if keep is None or r["lam"] in keep]


def analysis_lambdas(summary: Mapping[str, Any]) -> list[float]:
    """The lambdas the deeper analyses compare: the unclustered 0 and the main lambda."""
    return sorted({0.0, float(summary["main_lambda"])})


def per_run(results: Sequence[TrainResult], fn: Callable[[TrainResult], Any],
            desc: str = "runs", progress: bool = True) -> list[dict[str, Any]]:
    """``[{"name", "lam", "seed", **fn(run)}]`` for each run, with a progress bar."""
    rows = []
    for r in tqdm(results, desc=desc, disable=not progress):
        rows.append({"name": run_name(r.config), "lam": r.config.lam, "seed": r.config.seed, **fn(r)})
    return rows


def group(rows: Iterable[Mapping[str, Any]], key: str | Callable[[Mapping[str, Any]], Any]
          ) -> dict[float, list[Any]]:
    """Values of ``key`` (a field, or a function of a row) per lambda, in seed order."""
    get = (lambda r: r[key]) if isinstance(key, str) else key
    out: dict[float, list[tuple[int, Any]]] = defaultdict(list)
    for r in rows:
        out[float(r["lam"])].append((int(r["seed"]), get(r)))
    return {lam: [v for _, v in sorted(vals, key=lambda t: t[0])] for lam, vals in sorted(out.items())}


def summarise(rows: Iterable[Mapping[str, Any]], key: str | Callable[[Mapping[str, Any]], Any]
              ) -> dict[float, Interval]:
    """Mean and 95 % interval over seeds of a scalar, per lambda."""
    return {lam: mean_ci([float(v) for v in vals]) for lam, vals in group(rows, key).items()}


def curves(summary: Mapping[str, Any], key: str) -> tuple[Any, dict[float, Any]]:
    """A downsampled training curve (``"ce_curve"`` or ``"c_curve"``) as (epoch axis, {lam: (seeds, points)})."""
    import numpy as np

    runs = summary["runs"]
    epochs = runs[0]["config"]["epochs"]
    n = len(runs[0][key])
    x = (np.arange(n) + 0.5) / max(n, 1) * epochs
    return x, {lam: np.asarray(v, dtype=float) for lam, v in group(runs, key).items()}


def cluster_top_examples(result: TrainResult, x: torch.Tensor, layer: str, n: int) -> list[list[int]]:
    """Per cluster of ``layer``: the ``n`` inputs that most excite its output units U_c (their mean).

    Ties are broken as :func:`modclust.analysis.semanticity.top_k_indices` breaks them.
    """
    from modclust.analysis.semanticity import layer_activations
    from modclust.analysis.selectivity import cluster_top_examples as top_per_group

    part = result.partitions.get(layer)
    if part is None:
        raise ValueError(f"{run_name(result.config)} has no partition on {layer!r}: "
                         f"clustered layers are {list(result.partitions)}")
    return top_per_group(layer_activations(result.model, x, layer), part.rows, n).tolist()


def find_circuits(results: Sequence[TrainResult], x: torch.Tensor, y: torch.Tensor, labels: Sequence[int],
                  layers: Sequence[str], objective: str = "seed", threshold: float = 1e-4, baseline: str = "current",
                  ablation: str = "zero", method: str = "fast", progress: bool = True
                  ) -> list[dict[int | None, circuits.Circuit]]:
    """Greedy circuits of each run: per run, ``{label: circuit}`` (``{None: circuit}`` for "kl").

    ``x, y`` is the search set (the inputs each objective reads are taken from it, see
    :func:`modclust.analysis.circuits.objective_inputs`). ``method="plain"``: ``circuits.greedy_circuit``,
    one candidate at a time. ``"fast"``: ``circuits.greedy_circuits_fast``, all runs and labels
    at once, the same circuits.
    """
    if method not in ("plain", "fast"):
        raise ValueError(f"method must be 'plain' or 'fast', got {method!r}")
    labels = [int(c) for c in labels]  # a label without examples fails in circuits.objective_inputs
    if method == "fast":
        return circuits.greedy_circuits_fast([r.model for r in results], x, y, labels=labels, layers=list(layers),
                                             threshold=threshold, baseline=baseline, progress=progress,
                                             objective=objective, ablation=ablation)
    out = []
    for r in tqdm(results, desc=f"{objective} circuits", disable=not progress):
        out.append({c: circuits.greedy_circuit(r.model, circuits.objective_inputs(objective, x, y, c), c,
                                               layers=list(layers), threshold=threshold, baseline=baseline,
                                               objective=objective, ablation=ablation)
                    for c in circuits.circuit_labels(objective, y, labels)})
    return out


def circuit_rows(results: Sequence[TrainResult], found: Sequence[Mapping[int | None, circuits.Circuit]],
                 test_x: torch.Tensor, test_y: torch.Tensor, method: str = "greedy"
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per run, a JSON row of its circuits with their faithfulness on the test set; and the records.

    A row is ``{"name", "lam", "seed", "objective", "threshold", "circuits": [circuit.to_dict() +
    {"faithfulness": ...}]}``; a record (one per circuit, for ``circuits.pt``) is
    :meth:`modclust.analysis.circuits.Circuit.to_record`.
    """
    rows, records = [], []
    for r, per_label in zip(results, found, strict=True):
        name = run_name(r.config)
        cs = []
        for c in per_label.values():
            f = circuits.faithfulness(r.model, c, test_x, test_y)
            cs.append({**c.to_dict(), "faithfulness": f.to_dict()})
            records.append(c.to_record(name, r.config.lam, r.config.seed, method))
        first = next(iter(per_label.values()))
        rows.append({"name": name, "lam": r.config.lam, "seed": r.config.seed, "objective": first.objective,
                     "method": method, "threshold": first.threshold, "circuits": cs})
    return rows, records


def save_circuit_records(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Every circuit's record in one file, loadable with ``torch.load(path, weights_only=True)``."""
    from modclust.core.io import write_atomic

    return write_atomic(resolve(path), lambda tmp: torch.save(list(records), tmp))


def select_rows(rows: Iterable[Mapping[str, Any]], objective: str, threshold: float | None = None
                ) -> list[Mapping[str, Any]]:
    """The rows of one objective (and of one threshold, when given)."""
    out = [r for r in rows if r["objective"] == objective and (threshold is None or r["threshold"] == threshold)]
    if not out:
        raise ValueError(f"no circuit rows for objective {objective!r} at threshold {threshold}")
    return out


def mean_over_circuits(row: Mapping[str, Any], key: str) -> float:
    """The mean over a row's circuits of ``size`` or a faithfulness field (``"agreement"``, ...)."""
    vals = [float(c["size"] if key == "size" else c["faithfulness"][key]) for c in row["circuits"]]
    vals = [v for v in vals if v == v]
    return sum(vals) / len(vals) if vals else float("nan")
