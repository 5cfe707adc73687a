"""The paper's experiment grid: configurations over layer sets x lambda x seed, their training,
saved runs, per-run records and summaries over seeds.

The notebooks of the paper pipeline call these functions; each one is needed by more than one
notebook or is more than a line of glue. A *run* is one trained configuration, named
``lam<lambda>_seed<seed>`` (:func:`modclust.core.train.run_name`); a stage writes one JSON of
per-run results (:mod:`modclust.experiments.stage_results`), and later stages group them by
lambda to summarise over seeds.

One run is not evidence: the seed notebook's "clustered is more accurate" rests on a single
seed. The grid trains every (clustered layers, lambda, seed) combination, batching those that
share a shape into one ``train_many`` call. Runs with the same seed share their initialisation
and data order whatever lambda is, so differences to lambda = 0 are paired
(:func:`paired_difference`).

Summaries over seeds, by what they return:

- :func:`summarise`: one scalar per run -> ``{lambda: Interval}``;
- :func:`summary_table`: several metrics of flat records -> one JSON-ready row per group
  (by default per (layers, lambda));
- :func:`paired_difference`: a metric minus the same seed's value at lambda = 0, per group.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modclust.analysis import circuits
from modclust.analysis.any_model import faithfulness
from modclust.core import checkpoint, paths
from modclust.core.clusterability import clusterability
from modclust.core.data import Dataset, load
from modclust.core.io import write_atomic
from modclust.core.model import layer_names, layers_label
from modclust.core.progress import track
from modclust.core.stats import Interval, direction, mean_ci
from modclust.core.train import TrainConfig, TrainResult, batch_key, run_name, setting_of, train_many
from modclust.experiments.stage_results import TrainingResults


# --- Notebook glue: paths, device, threads, data ---------------------------------------------

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


# --- The grid: layer sets x lambda x seed, trained in as few batched calls as the shapes allow

LayerSet = str | Sequence[str]
"""Where the clusterability loss applies: a layer name, several names, or ``"all"`` (every layer)."""


def resolve_layers(layers: LayerSet, widths: Sequence[int]) -> tuple[str, ...]:
    """A layer set as layer names: ``"all"`` is every Linear layer, a name is that one layer."""
    names = tuple(layer_names(widths))
    if layers == "all":
        return names
    chosen = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise ValueError(f"layers {unknown} are not layers of this MLP ({list(names)}); use names or 'all'")
    return chosen


def grid_configs(lambdas: Iterable[float], seeds: Iterable[int], layer_sets: Sequence[LayerSet] | None = None,
                 base: TrainConfig | None = None, **common: Any) -> list[TrainConfig]:
    """One TrainConfig per (layer set, lambda, seed), in that order; lambda = 0 is the unclustered baseline.

    Each config is ``base`` (default: ``TrainConfig()``) with the fields ``common`` names, its
    lambda, seed and clustered layers. ``layer_sets`` (each a layer name, several names, or
    ``"all"``; see :func:`resolve_layers`) defaults to the one set of ``base``'s (or ``common``'s)
    ``clustered_layers``. Lambdas are sorted, lambdas and seeds deduplicated.

    Every config of a layer set carries its clustered layers, so lambda = 0 trains exactly
    without the clusterability term while its C is still logged on the same blocks, and the
    configs of a layer set can be trained as one batched model (:func:`train_grid`).
    """
    lambdas = sorted({float(v) for v in lambdas})
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    base = TrainConfig() if base is None else base
    base = dataclasses.replace(base, **common) if common else base
    layer_sets = [base.clustered_layers] if layer_sets is None else list(layer_sets)
    if not lambdas or not seeds or not layer_sets:
        raise ValueError("the grid needs at least one lambda, one seed and one layer set")
    if any(v < 0 for v in lambdas):
        raise ValueError(f"lambdas must be >= 0 (0 = unclustered), got {lambdas}")
    return [dataclasses.replace(base, lam=lam, seed=seed, clustered_layers=resolve_layers(ls, base.widths))
            for ls in layer_sets for lam in lambdas for seed in seeds]


def train_grid(configs: Sequence[TrainConfig], data: Dataset, progress: bool = True) -> list[TrainResult]:
    """Train every config, one batched ``train_many`` call per group of equal shape
    (:func:`modclust.core.train.batch_key`; one call for a plain grid); input order kept."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, c in enumerate(configs):
        groups[batch_key(c)].append(i)
    out: list[TrainResult | None] = [None] * len(configs)
    for idx in groups.values():
        for i, r in zip(idx, train_many([configs[i] for i in idx], data, progress=progress)):
            out[i] = r
    return out  # type: ignore[return-value]


# --- Saved runs: checkpoints and the train stage's summary -----------------------------------

def downsample(values: Sequence[float], n_points: int = 200) -> list[float]:
    """Means of ``n_points`` consecutive equal chunks (fewer if there are fewer values)."""
    v = torch.tensor(list(values), dtype=torch.float64)
    if len(v) <= n_points:
        return v.tolist()
    chunks = torch.tensor_split(v, n_points)
    return [float(c.mean()) for c in chunks]


def save_runs(results: Sequence[TrainResult], out_dir: str | os.PathLike[str], main_lambda: float, *,
              recipes: Mapping[str, float], live_cutoff: float, sweep: Sequence[TrainResult] = (),
              curve_points: int = 200, controls: Sequence[TrainResult] = (),
              control_records: Sequence[Mapping[str, Any]] = (),
              l1_search: Mapping[str, Mapping[str, Any]] | None = None) -> TrainingResults:
    """Checkpoints in ``out_dir/checkpoints`` and stage 1's result ``out_dir/train.json``; returns it.

    ``results`` are the grid's runs (``runs``: the paper's lambda x seed comparison, which
    stages 2-5 read); ``sweep`` are the runs of the lambda x layer-set sweep (``sweep``: one
    :func:`run_record` each, with its name; stage 6 reads them); ``controls`` the control runs
    with their ``control_records`` (``controls``, see :mod:`modclust.experiments.controls`),
    trained by the ``recipes`` (name -> learning rate) with ``live_cutoff`` and the L1 searches
    ``l1_search`` (none without controls). A run in several is saved once.
    """
    if len(controls) != len(control_records):
        raise ValueError(f"{len(controls)} control runs but {len(control_records)} records: give one each")
    if float(main_lambda) not in {float(r.config.lam) for r in results}:
        raise ValueError(f"main_lambda {main_lambda} is not among the trained lambdas "
                         f"{sorted({r.config.lam for r in results})}: add it to lambdas")
    out = resolve(out_dir)
    runs = []
    saved: set[str] = set()
    for r in [*results, *sweep, *controls]:
        name = run_name(r.config)
        if name not in saved:
            checkpoint.save(r, out / "checkpoints" / f"{name}.pt")
            saved.add(name)
    for r in results:
        runs.append({
            "name": run_name(r.config),
            "setting": setting_of(r.config),
            "recipe": "seed",
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
    summary = TrainingResults(main_lambda=float(main_lambda), runs=runs,
                           sweep=[{"name": run_name(r.config), **run_record(r)} for r in sweep],
                           controls=[dict(rec) for rec in control_records], recipes=dict(recipes),
                           live_cutoff=live_cutoff, l1_search=dict(l1_search or {}))
    summary.write(out / TrainingResults.FILE)
    return summary


def unique_configs(*config_lists: Sequence[TrainConfig]) -> list[TrainConfig]:
    """The configs of all lists, each once (first-seen order): a run shared by the grid and the
    sweep is trained once."""
    return list(dict.fromkeys(c for configs in config_lists for c in configs))


def load_summary(train_dir: str | os.PathLike[str]) -> TrainingResults:
    """Stage 1's result in ``train_dir`` (:meth:`TrainingResults.read`)."""
    return TrainingResults.read(resolve(train_dir) / TrainingResults.FILE)


def load_runs(train_dir: str | os.PathLike[str], lambdas: Iterable[float] | None = None,
              device: str | torch.device = "cpu") -> list[TrainResult]:
    """The trained runs of a train stage, optionally only those with the given lambdas."""
    summary = load_summary(train_dir)
    keep = None if lambdas is None else {float(v) for v in lambdas}
    ckpt = resolve(train_dir) / "checkpoints"
    return [checkpoint.load(ckpt / f"{r['name']}.pt", device)
            for r in summary.runs if keep is None or r["lam"] in keep]


def load_sweep(train_dir: str | os.PathLike[str], device: str | torch.device = "cpu"
               ) -> tuple[list[TrainResult], list[dict[str, Any]]]:
    """The sweep's runs of a train stage and their records (see :func:`save_runs`)."""
    summary = load_summary(train_dir)
    if not summary.sweep:
        raise ValueError(f"{resolve(train_dir) / 'train.json'} holds no sweep: give notebooks/01_train.ipynb "
                         "sweep_lambdas and layer_sets (every preset has them)")
    ckpt = resolve(train_dir) / "checkpoints"
    records = [{k: v for k, v in r.items() if k != "name"} for r in summary.sweep]
    return [checkpoint.load(ckpt / f"{r['name']}.pt", device) for r in summary.sweep], records


def load_controls(train_dir: str | os.PathLike[str], device: str | torch.device = "cpu"
                  ) -> tuple[list[TrainResult], list[dict[str, Any]]]:
    """The control runs of a train stage and their records (``setting``, ``recipe``, ...; see
    :mod:`modclust.experiments.controls`); empty lists when the stage trained none."""
    summary = load_summary(train_dir)
    records = list(summary.controls)
    ckpt = resolve(train_dir) / "checkpoints"
    return [checkpoint.load(ckpt / f"{r['name']}.pt", device) for r in records], records


def analysis_lambdas(summary: TrainingResults) -> list[float]:
    """The lambdas the deeper analyses compare: the unclustered 0 and the main lambda."""
    return sorted({0.0, float(summary.main_lambda)})


# --- Per-run rows --------------------------------------------------------------------------

def per_run(results: Sequence[TrainResult], fn: Callable[[TrainResult], Any],
            desc: str = "runs", progress: bool = True) -> list[dict[str, Any]]:
    """``[{"name", "lam", "seed", **fn(run)}]`` for each run, with a progress bar."""
    rows = []
    for r in track(results, desc=desc, disable=not progress):
        rows.append({"name": run_name(r.config), "lam": r.config.lam, "seed": r.config.seed, **fn(r)})
    return rows


def layer_clusterabilities(result: TrainResult) -> dict[str, float]:
    """C of every layer under the run's blocks (:meth:`~modclust.core.train.TrainResult.blocks`).

    Measured on every layer, clustered or not (equal blocks with the run's k, clamped to the
    layer), so an unclustered run shows how far each of its layers sits from chance (about 1/k).
    """
    out = {}
    for name, w in zip(result.model.layer_names, result.model.weights()):
        w = w.detach()
        out[name] = float(clusterability(w, result.blocks(name).mask(w.device, w.dtype)))
    return out


def run_record(result: TrainResult) -> dict[str, Any]:
    """One flat, JSON-ready row for a trained run: its settings, accuracy and C per layer."""
    cfg = result.config
    row: dict[str, Any] = {
        "dataset": cfg.dataset, "lam": cfg.lam, "seed": cfg.seed, "n_clusters": cfg.n_clusters,
        "layers": layers_label(cfg.clustered_layers, cfg.widths), "clustered_layers": list(cfg.clustered_layers),
        "epochs": cfg.epochs, "test_acc": result.test_acc,
    }
    cs = layer_clusterabilities(result)
    row.update({f"C_{name}": c for name, c in cs.items()})
    row["C_clustered"] = (sum(cs[n] for n in cfg.clustered_layers) / len(cfg.clustered_layers)
                          if cfg.clustered_layers else None)
    return row


# --- Summaries over seeds --------------------------------------------------------------------

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
    """Mean and 95 % interval over seeds of one scalar (a field, or a function of a row), per lambda.

    ``{lambda: Interval}``; for several metrics or other groupings, see :func:`summary_table`.
    """
    return {lam: mean_ci([float(v) for v in vals]) for lam, vals in group(rows, key).items()}


def summary_table(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("test_acc", "C_fc2"),
                  by: Sequence[str] = ("layers", "lam")) -> list[dict[str, Any]]:
    """A table of several metrics over seeds: one row per group of ``by`` (first-seen order).

    Each row holds the group's ``by`` values, its size ``n`` and, per metric, the mean and 95 %
    t-interval as a dict (``Interval.to_dict``; None when no record of the group has it).
    For one scalar per lambda as ``Interval`` objects, see :func:`summarise`.
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    rows = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(by, key))
        row["n"] = len(rs)
        for m in metrics:
            vals = [r[m] for r in rs if r.get(m) is not None]
            row[m] = mean_ci(vals).to_dict() if vals else None
        rows.append(row)
    return rows


def paired_difference(records: Sequence[Mapping[str, Any]], metric: str = "test_acc", baseline_lam: float = 0.0
                      ) -> list[dict[str, Any]]:
    """Per (layers, lambda): metric minus the same seed's value at ``baseline_lam``, with an interval.

    Pairing by seed removes the init and data-order noise the two runs share. ``direction`` is
    :func:`modclust.core.stats.direction` of the paired 95 % interval of the difference
    ("higher", "lower", or "indistinguishable", also with fewer than two seeds).
    """
    base: dict[tuple, float] = {}
    for r in records:
        if r["lam"] == baseline_lam:
            base[(r["layers"], r["seed"])] = r[metric]
            base.setdefault(("*", r["seed"]), r[metric])  # lam = baseline trains the same whatever the layers
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in records:
        if r["lam"] == baseline_lam:
            continue
        b = base.get((r["layers"], r["seed"]), base.get(("*", r["seed"])))
        if b is None:
            continue
        groups.setdefault((r["layers"], r["lam"]), []).append((r[metric], b))
    rows = []
    for (layers, lam), pairs in groups.items():
        iv = mean_ci([a - b for a, b in pairs])
        rows.append({"layers": layers, "lam": lam, "metric": metric, "n": len(pairs), "difference": iv.to_dict(),
                     "direction": direction(iv)})
    return rows


def curves(summary: TrainingResults, key: str) -> tuple[Any, dict[float, Any]]:
    """A downsampled training curve (``"ce_curve"`` or ``"c_curve"``) as (epoch axis, {lam: (seeds, points)})."""
    runs = summary.runs
    epochs = runs[0]["config"]["epochs"]
    n = len(runs[0][key])
    x = (np.arange(n) + 0.5) / max(n, 1) * epochs
    return x, {lam: np.asarray(v, dtype=float) for lam, v in group(runs, key).items()}


# --- Circuits of a grid's runs -------------------------------------------------------------

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
    for r in track(results, desc=f"{objective} circuits", disable=not progress):
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
            f = faithfulness(r.model, c, test_x, test_y)
            cs.append({**c.to_dict(), "faithfulness": f.to_dict()})
            records.append(c.to_record(name, r.config.lam, r.config.seed, method))
        first = next(iter(per_label.values()))
        rows.append({"name": name, "lam": r.config.lam, "seed": r.config.seed, "objective": first.objective,
                     "method": method, "threshold": first.threshold, "circuits": cs})
    return rows, records


CIRCUIT_KEY = ("run", "label", "objective", "method", "ablation", "threshold", "baseline")
"""What makes a circuit record one search: the same key twice is the same circuit found twice."""


def save_circuit_records(records: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Every circuit's record in one file, loadable with ``torch.load(path, weights_only=True)``.

    A search done twice (the same :data:`CIRCUIT_KEY`, e.g. a control that is also one of the
    main runs) is saved once; if its two circuits differ, that is an error, not a choice.
    """
    kept: dict[tuple, Mapping[str, Any]] = {}
    for rec in records:
        key = tuple(rec[k] for k in CIRCUIT_KEY)
        first = kept.setdefault(key, rec)
        if first is not rec and any(not torch.equal(first["kept"][n], rec["kept"][n]) for n in first["kept"]):
            raise ValueError(f"two different circuits for the same search {dict(zip(CIRCUIT_KEY, key))}: "
                             "the pruner is not deterministic here")
    return write_atomic(resolve(path), lambda tmp: torch.save(list(kept.values()), tmp))


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
