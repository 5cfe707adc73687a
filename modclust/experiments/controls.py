"""Modularity or sparsity: the controls a claim about the clusterability loss needs.

The loss makes a layer block-sparse, so "clustered models have smaller circuits" may be what any
equally sparse network shows. Each setting below is trained at the same seeds (so at the same
init and data order) with each training *recipe* (the seed's, and one trained to convergence):

- ``blocks``: the loss on k diagonal blocks (the paper's clustered models);
- ``random_mask``: the same loss, lambda and density on a random mask of the blocks' density,
  drawn per seed (:func:`modclust.core.train.random_mask`): as sparse, no modules;
- ``l1``: an L1 penalty on the same layer, its strength searched (:func:`search_l1`) so the
  layer's density of live weights matches the blocks models';
- ``none``: lambda = 0;
- ``random_init`` and ``shuffled_labels``: networks with nothing to find, on which a circuit
  finder that reports small faithful circuits measures itself.

Stage 1 trains them (:func:`train_controls`); stage 4 searches their circuits with the faithful
objective at every threshold, under zero and under mean ablation (:func:`control_circuits`);
:func:`summarise_controls` gives the paper's table: circuit size at matched faithfulness, as a
share of live weights, label-pair overlap against random subsets of the same sizes, and the
dominant-cluster share against the floor of an even spread over the live weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modclust.analysis import circuits
from modclust.analysis.any_model import mask_circuits
from modclust.analysis.sparsity import LIVE_CUTOFF, live_density, live_mask, mean_pairwise_iou, proportional_floor
from modclust.core.checks import check_choice, check_float, check_int
from modclust.core.clusterability import clusterability
from modclust.core.data import Dataset
from modclust.core.progress import track
from modclust.core.stats import direction, mean_ci, size_at_faithfulness
from modclust.core.train import SETTINGS, TrainConfig, TrainResult, run_name, setting_of, train_many
from modclust.experiments.grid import circuit_rows, find_circuits, mean_over_circuits, train_grid
from modclust.experiments.stage_results import TrainingResults

RECIPES = ("seed", "converged")
"""The seed's training recipe (its learning rate) and one trained to convergence (a larger one)."""

ABLATIONS = ("zero", "mean")

_SETTING_FIELDS: dict[str, dict[str, Any]] = {
    "blocks": {},  # lam = main lambda
    "random_mask": {"mask": "random"},  # lam = main lambda
    "l1": {"lam": 0.0},  # l1 from the search
    "none": {"lam": 0.0},
    "random_init": {"lam": 0.0, "epochs": 0},
    "shuffled_labels": {"lam": 0.0, "shuffle_labels": True},
}


def control_config(base: TrainConfig, setting: str, seed: int, main_lambda: float, l1: float = 0.0) -> TrainConfig:
    """``base`` (its recipe: learning rate, epochs, data) as one of :data:`SETTINGS` at ``seed``."""
    check_choice("setting", setting, SETTINGS)
    fields: dict[str, Any] = {"seed": int(seed), "lam": float(main_lambda), "mask": "blocks", "l1": 0.0,
                              "shuffle_labels": False, **_SETTING_FIELDS[setting]}
    if setting == "l1":
        fields["l1"] = check_float("l1", l1, 0.0, strict_min=True, hint="the L1 strength (from search_l1)")
    cfg = dataclasses.replace(base, **fields)
    assert setting_of(cfg) == setting, (setting, cfg)
    return cfg


def clustered_density(result: TrainResult, cutoff: float = LIVE_CUTOFF) -> float:
    """The mean live density (:func:`modclust.analysis.sparsity.live_density`) of the run's clustered layers."""
    layers = result.config.clustered_layers
    if not layers:
        raise ValueError(f"{run_name(result.config)} has no clustered layer to measure the density of")
    return sum(live_density(getattr(result.model, n).weight, cutoff) for n in layers) / len(layers)


@dataclass(frozen=True)
class L1Search:
    """The L1 strength whose trained clustered layers come closest to a target live density."""

    strength: float
    density: float
    target: float
    tolerance: float
    probes: list[tuple[float, float]]  # (strength, density) of every model trained, in order

    @property
    def within(self) -> bool:
        return abs(self.density - self.target) <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "within": self.within}


Trainer = Callable[[Sequence[TrainConfig]], list[TrainResult]]
"""Trains configs and returns their runs in the same order: on the data by default
(:func:`~modclust.experiments.grid.train_grid`), or elsewhere (a job array,
:mod:`modclust.pipeline.launch`, or the runs it saved, :class:`modclust.experiments.mlp_train.Replay`)."""


def search_l1(base: TrainConfig, data: Dataset | None, target: float, cutoff: float = LIVE_CUTOFF,
              tolerance: float = 0.02, per_round: int = 6, rounds: int = 3, lo: float = 1e-3, hi: float = 10.0,
              progress: bool = False, train: Trainer | None = None) -> L1Search:
    """Search the L1 strength at which ``base`` (lambda 0) trains its clustered layers to live
    density ``target``, within ``tolerance``.

    Each round trains ``per_round`` strengths, log-spaced, as one batched model: first over
    [lo, hi], then between the two tried strengths whose densities bracket the target (or
    beyond the range, a hundredfold, when none does). It stops once a strength lands within
    ``tolerance`` or after ``rounds`` rounds, and returns the closest strength tried with every
    probe, so the caller can see (and report) a search that missed. ``train`` trains each round
    (default: ``train_many`` on ``data``).
    """
    target = check_float("target", target, 0.0, 1.0, strict_min=True, hint="a live density, e.g. 0.25")
    tolerance = check_float("tolerance", tolerance, 0.0, strict_min=True)
    per_round = check_int("per_round", per_round, 2)
    rounds = check_int("rounds", rounds, 1)
    lo = check_float("lo", lo, 0.0, strict_min=True)
    hi = check_float("hi", hi, lo, strict_min=True, hint="above lo")
    if train is None:
        train = lambda configs: train_many(configs, data, progress=progress)  # noqa: E731
    probes: list[tuple[float, float]] = []
    a, b, ends = math.log(lo), math.log(hi), True
    for _ in range(rounds):
        n = per_round if ends else per_round + 2
        grid = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        strengths = grid if ends else grid[1:-1]
        runs = train([dataclasses.replace(base, lam=0.0, l1=s) for s in strengths])
        probes += [(s, clustered_density(r, cutoff)) for s, r in zip(strengths, runs)]
        best = min(probes, key=lambda p: abs(p[1] - target))
        if abs(best[1] - target) <= tolerance:
            break
        tried = sorted(probes)
        bracket = [(s0, s1) for (s0, d0), (s1, d1) in zip(tried, tried[1:]) if d0 >= target >= d1]
        if bracket:
            s0, s1 = bracket[0]
            a, b, ends = math.log(s0), math.log(s1), False
        elif all(d > target for _, d in tried):  # too dense everywhere: stronger L1
            a, b, ends = math.log(tried[-1][0]), math.log(tried[-1][0] * 100), False
        else:  # too sparse everywhere: weaker L1
            a, b, ends = math.log(tried[0][0] / 100), math.log(tried[0][0]), False
    best = min(probes, key=lambda p: abs(p[1] - target))
    return L1Search(best[0], best[1], target, tolerance, probes)


def control_record(result: TrainResult, setting: str, recipe: str, cutoff: float = LIVE_CUTOFF) -> dict[str, Any]:
    """A JSON row for a control run: what it is, its accuracy, live density and C on the blocks."""
    cfg = result.config
    layer = cfg.clustered_layers[0]
    w = getattr(result.model, layer).weight.detach()
    return {"name": run_name(cfg), "setting": setting, "recipe": recipe, "seed": cfg.seed, "lam": cfg.lam,
            "lr": cfg.lr, "l1": cfg.l1, "mask": cfg.mask, "epochs": cfg.epochs, "test_acc": result.test_acc,
            "live_density": clustered_density(result, cutoff),
            "C_blocks": float(clusterability(w, result.blocks(layer).mask(w.device, w.dtype))),
            "C_loss_mask": result.final_clusterability}


@dataclass
class ControlRuns:
    """The control runs of every recipe, their JSON rows, and each recipe's L1 search."""

    results: list[TrainResult]
    records: list[dict[str, Any]]  # control_record of each result, in the same order
    searches: dict[str, L1Search]  # recipe -> its L1 search


def train_controls(data: Dataset | None, base: TrainConfig, seeds: Sequence[int], main_lambda: float,
                   recipes: Mapping[str, float], settings: Sequence[str] = SETTINGS,
                   trained: Mapping[TrainConfig, TrainResult] | None = None, cutoff: float = LIVE_CUTOFF,
                   tolerance: float = 0.02, progress: bool = True, train: Trainer | None = None) -> ControlRuns:
    """Train every setting at every seed under every recipe (``{recipe name: learning rate}``).

    ``base`` holds what the recipes share (data, widths, clustered layers, epochs). Runs already
    in ``trained`` (e.g. stage 1's grid) are reused, not trained again. The untrained
    ``random_init`` networks are the same under every recipe and are made once, under the first.
    For ``l1``, each recipe's strength is searched on the first seed so that its clustered
    layers' live density matches the mean of its ``blocks`` runs (which must be among the
    settings); the search is returned, hit or miss.

    ``train`` trains each batch of runs (the settings' runs, each round of each search, the L1
    runs), in that order; by default :func:`~modclust.experiments.grid.train_grid` on ``data``
    (and ``train_many`` for the searches' rounds).
    """
    settings = list(dict.fromkeys(settings))
    for s in settings:
        check_choice("settings", s, SETTINGS)
    if "l1" in settings and "blocks" not in settings:
        raise ValueError("the l1 control matches the blocks' live density: settings must include 'blocks'")
    if not recipes:
        raise ValueError("give at least one recipe, e.g. {'seed': 0.001}")
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("give at least one seed")
    trained = dict(trained or {})
    first = next(iter(recipes))
    plan: list[tuple[str, str, TrainConfig]] = []  # (setting, recipe, config) of the settings without a search
    for recipe, lr in recipes.items():
        rbase = dataclasses.replace(base, lr=float(lr))
        for setting in settings:
            if setting == "l1" or (setting == "random_init" and recipe != first):
                continue
            plan += [(setting, recipe, control_config(rbase, setting, s, main_lambda)) for s in seeds]
    search_train = train
    if train is None:
        train = lambda configs: train_grid(configs, data, progress=progress)  # noqa: E731
    todo = list(dict.fromkeys(c for _, _, c in plan if c not in trained))
    trained.update(zip(todo, train(todo)))
    searches: dict[str, L1Search] = {}
    if "l1" in settings:
        l1_plan = []
        for recipe, lr in recipes.items():
            blocks = [trained[c] for s, r, c in plan if s == "blocks" and r == recipe]
            target = sum(clustered_density(r, cutoff) for r in blocks) / len(blocks)
            rbase = dataclasses.replace(base, lr=float(lr), seed=seeds[0])
            searches[recipe] = search_l1(rbase, data, target, cutoff, tolerance, progress=False, train=search_train)
            l1_plan += [("l1", recipe, control_config(rbase, "l1", s, main_lambda, searches[recipe].strength))
                        for s in seeds]
        todo = [c for _, _, c in l1_plan if c not in trained]
        trained.update(zip(todo, train(todo)))
        plan += l1_plan
    order = {s: i for i, s in enumerate(SETTINGS)}
    plan.sort(key=lambda t: (list(recipes).index(t[1]), order[t[0]], t[2].seed))
    results = [trained[c] for _, _, c in plan]
    records = [control_record(r, s, rec, cutoff) for (s, rec, _), r in zip(plan, results)]
    return ControlRuns(results, records, searches)


# --- Stage 4: circuits of every control, and their structure ----------------------------------

def circuit_structure(result: TrainResult, found: Mapping[int | None, circuits.Circuit], layers: Sequence[str],
                      cutoff: float = LIVE_CUTOFF) -> dict[str, float]:
    """What a run's per-label circuits look like against the run's own live weights.

    ``live_share``: mean circuit size over the live weights of the pruned layers; ``iou`` and
    ``iou_random``: the mean IoU of two labels' circuits, and what random subsets of the live
    weights of the same sizes would give; ``dominant_share`` and ``floor`` (on the clustered
    layer, when pruned): the mean share of a circuit's weights of that layer in its dominant
    block, and that share for a circuit spread over the blocks in proportion to their live
    weights (:func:`modclust.analysis.sparsity.proportional_floor`).
    """
    live = {n: live_mask(getattr(result.model, n).weight, cutoff).cpu() for n in layers}
    n_live = sum(int(m.sum()) for m in live.values())
    cs = list(found.values())
    out: dict[str, float] = {"live_weights": float(n_live),
                             "live_share": sum(c.size for c in cs) / len(cs) / n_live if n_live else math.nan}
    masks = [torch.cat([c.kept[n].flatten().bool() for n in layers]) for c in cs]
    pool = torch.cat([live[n].flatten() for n in layers])
    out["iou"], out["iou_random"] = mean_pairwise_iou(masks, pool)
    layer = result.config.clustered_layers[0] if result.config.clustered_layers else None
    if layer in layers:
        part = result.blocks(layer)
        shares = [circuits.cluster_share(c, part, layer).share for c in cs]
        shares = [s for s in shares if s == s]
        out["dominant_share"] = sum(shares) / len(shares) if shares else math.nan
        out["floor"] = proportional_floor(live[layer], part)
    return out


def control_mask_circuits(results: Sequence[TrainResult], records: Sequence[Mapping[str, Any]],
                          search_x: torch.Tensor, search_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                          labels: Sequence[int], layers: Sequence[str], sparsity: float, steps: int,
                          objective: str = "margin", cutoff: float = LIVE_CUTOFF, progress: bool = True
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Learned-mask circuits (:func:`modclust.analysis.any_model.mask_circuits`, zero ablation) of every
    control run: rows and records as :func:`control_circuits` gives them, with ``method`` "mask" and
    ``ablation`` "zero". A second finder, so that what the greedy one reports on a network with
    nothing to find is not a property of greedy pruning alone."""
    if len(results) != len(records):
        raise ValueError(f"{len(results)} runs but {len(records)} records: give one record per run")
    meta = {rec["name"]: rec for rec in records}
    found = [{c.label: c for c in mask_circuits(r.model, list(layers), search_x, search_y, list(labels),
                                                 objective=objective, sparsity=sparsity, steps=steps)}
             for r in track(results, desc="control mask circuits", disable=not progress)]
    rows, recs = circuit_rows(results, found, test_x, test_y, method="mask")
    for res, row, f in zip(results, rows, found):
        m = meta[row["name"]]
        row.update({"setting": m["setting"], "recipe": m["recipe"], "ablation": "zero",
                    **circuit_structure(res, f, layers, cutoff)})
    for rec in recs:
        rec.update({"setting": meta[str(rec["run"])]["setting"], "recipe": meta[str(rec["run"])]["recipe"]})
    return rows, recs


def control_circuits(results: Sequence[TrainResult], records: Sequence[Mapping[str, Any]], search_x: torch.Tensor,
                     search_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, labels: Sequence[int],
                     layers: Sequence[str], thresholds: Sequence[float], ablations: Sequence[str] = ABLATIONS,
                     objective: str = "margin", baseline: str = "current", cutoff: float = LIVE_CUTOFF,
                     progress: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Greedy circuits of every control run at every threshold under every ablation, judged on the
    test set: JSON rows (one per run, threshold and ablation: the run's ``setting``, ``recipe``,
    its circuits with their faithfulness, and :func:`circuit_structure`) and the circuits'
    records for ``circuits.pt`` (with ``setting`` and ``recipe``)."""
    if len(results) != len(records):
        raise ValueError(f"{len(results)} runs but {len(records)} records: give one record per run")
    for a in ablations:
        check_choice("ablations", a, ABLATIONS)
    rows, recs = [], []
    jobs = [(float(t), a) for a in ablations for t in sorted({float(t) for t in thresholds})]
    for thr, ablation in track(jobs, desc="control circuits", disable=not progress):
        found = find_circuits(results, search_x, search_y, labels, layers, objective, thr, baseline, ablation,
                              progress=False)
        r_rows, r_recs = circuit_rows(results, found, test_x, test_y)
        meta = {rec["name"]: rec for rec in records}
        for res, row, f in zip(results, r_rows, found):
            m = meta[row["name"]]
            row.update({"setting": m["setting"], "recipe": m["recipe"], "ablation": ablation,
                        **circuit_structure(res, f, layers, cutoff)})
        for rec in r_recs:
            rec.update({"setting": meta[str(rec["run"])]["setting"], "recipe": meta[str(rec["run"])]["recipe"]})
        rows += r_rows
        recs += r_recs
    return rows, recs


# --- The table: every setting x recipe, and the blocks against each control ----------------

COMPARED = ("random_mask", "l1", "none")
"""The controls the blocks are compared with, paired by seed."""


def _interval(values: Sequence[float]) -> dict[str, Any] | None:
    vals = [v for v in values if v == v]
    return mean_ci(vals).to_dict() if vals else None


def summarise_controls(train_records: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                       match_on: str, level: float, threshold: float) -> dict[str, Any]:
    """The modularity-or-sparsity table from stage 1's control records and :func:`control_circuits`' rows.

    Rows of the learned masks (``method`` "mask") give ``mask``: their size and ``match_on``.
    Per (setting, recipe): the seeds' test accuracy and live density; per ablation, each seed's
    circuit size at ``match_on`` = ``level`` (interpolated over the thresholds; nan where the
    thresholds do not bracket the level, e.g. for a network with nothing to find) and the
    highest ``match_on`` any threshold reached; and, at ``threshold`` under zero ablation, the
    circuits' share of live weights, label-pair IoU against random subsets, and dominant-cluster
    share against its floor. ``comparisons``: blocks minus each of :data:`COMPARED`, paired by
    seed, per recipe and ablation, with the paired 95 % interval and its direction.
    """
    level = check_float("level", level)
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    masks: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        (masks if r.get("method") == "mask" else by_key).setdefault((r["setting"], r["recipe"]), []).append(r)
    table, matched_all = [], {}
    for rec_key in dict.fromkeys((t["setting"], t["recipe"]) for t in train_records):
        setting, recipe = rec_key
        trs = [t for t in train_records if (t["setting"], t["recipe"]) == rec_key]
        crs = by_key.get(rec_key, [])
        entry: dict[str, Any] = {"setting": setting, "recipe": recipe, "n": len(trs),
                                 "test_acc": _interval([t["test_acc"] for t in trs]),
                                 "live_density": _interval([t["live_density"] for t in trs]),
                                 "C_blocks": _interval([t["C_blocks"] for t in trs])}
        for ablation in ABLATIONS:
            sel = [r for r in crs if r["ablation"] == ablation]
            if not sel:
                continue
            matched, reached = {}, {}
            for seed in sorted({int(r["seed"]) for r in sel}):
                pts = [(mean_over_circuits(r, match_on), mean_over_circuits(r, "size"))
                       for r in sel if int(r["seed"]) == seed]
                matched[seed] = size_at_faithfulness(pts, level)
                reached[seed] = max(f for f, _ in pts)
            matched_all[(setting, recipe, ablation)] = matched
            entry[ablation] = {"per_seed": [{"seed": k, "matched_size": matched[k], "best_faithfulness": reached[k]}
                                            for k in matched],
                               "matched": _interval(list(matched.values())),
                               "n_matched": sum(v == v for v in matched.values()),
                               "best_faithfulness": _interval(list(reached.values()))}
        at = [r for r in crs if r["ablation"] == "zero" and float(r["threshold"]) == float(threshold)]
        for key in ("size", match_on):
            entry[f"{key}_at_threshold"] = _interval([mean_over_circuits(r, key) for r in at])
        for key in ("live_share", "iou", "iou_random", "dominant_share", "floor"):
            entry[key] = _interval([r[key] for r in at if key in r])
        # each seed's dominant-cluster share minus its own floor: how far circuits lean on one cluster
        entry["above_floor"] = _interval([r["dominant_share"] - r["floor"] for r in at if "floor" in r])
        mr = masks.get(rec_key, [])
        if mr:
            entry["mask"] = {"size": _interval([mean_over_circuits(r, "size") for r in mr]),
                             match_on: _interval([mean_over_circuits(r, match_on) for r in mr])}
        table.append(entry)
    comparisons = []
    recipes = list(dict.fromkeys(t["recipe"] for t in train_records))
    for recipe in recipes:
        for ablation in ABLATIONS:
            blocks = matched_all.get(("blocks", recipe, ablation))
            if blocks is None:
                continue
            for other in COMPARED:
                them = matched_all.get((other, recipe, ablation))
                if them is None:
                    continue
                pairs = [(blocks[s], them[s]) for s in blocks if s in them and blocks[s] == blocks[s]
                         and them[s] == them[s]]
                diffs = [a - b for a, b in pairs]
                iv = mean_ci(diffs) if diffs else None
                comparisons.append({"recipe": recipe, "ablation": ablation, "other": other, "n": len(pairs),
                                    "difference": iv.to_dict() if iv else None,
                                    "ratio": _interval([a / b for a, b in pairs]),
                                    "direction": direction(iv) if iv else "indistinguishable"})
    return {"match_on": match_on, "level": level, "threshold": float(threshold), "table": table,
            "comparisons": comparisons}


def training_table(summary: TrainingResults) -> list[str]:
    """Stage 1's controls as printable lines: per recipe and setting, the seeds' mean test
    accuracy, live density and C on the blocks; then each recipe's L1 search."""
    recs = summary.controls
    if not recs:
        return ["no controls trained (control_settings is empty)"]
    lines = []
    for key in dict.fromkeys((r["recipe"], r["setting"]) for r in recs):
        rs = [r for r in recs if (r["recipe"], r["setting"]) == key]
        mean = lambda k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
        lr = rs[0]["lr"]
        lines.append(f"{key[0]:>9} (lr {lr:g}) {key[1]:<16} {len(rs)} seeds: test accuracy {mean('test_acc'):.3f}, "
                     f"live density {mean('live_density'):.3f}, C on the blocks {mean('C_blocks'):.3f}")
    for recipe, s in summary.l1_search.items():
        lines.append(f"L1 search ({recipe}): strength {s['strength']:.3g} gives live density {s['density']:.3f} "
                     f"against the blocks' {s['target']:.3f} ({'within' if s['within'] else 'NOT within'} "
                     f"{s['tolerance']:g}; {len(s['probes'])} strengths tried)")
    return lines


def tag_records(circuit_records: Sequence[dict[str, Any]], run_records: Sequence[Mapping[str, Any]]) -> None:
    """Give each circuit record (``circuits.pt``) its run's ``setting`` and ``recipe``, from the
    train stage's records of the runs (matched by name), in place."""
    meta = {r["name"]: r for r in run_records}
    for rec in circuit_records:
        m = meta.get(str(rec["run"]))
        if m is None:
            raise ValueError(f"circuit of run {rec['run']!r} has no record among the train stage's runs")
        rec["setting"], rec["recipe"] = m["setting"], m["recipe"]


def circuit_table(summary: Mapping[str, Any]) -> list[str]:
    """:func:`summarise_controls` as printable lines: per recipe and setting, the circuit size at
    matched faithfulness under each ablation (with how many seeds reach the level, and the best
    level any threshold reached), then the paired comparisons of the blocks with each control."""
    def iv(d: Mapping[str, Any] | None, digits: int = 0, scale: float = 1.0) -> str:
        if d is None:
            return "--"
        half = (d["hi"] - d["mean"]) * scale if d["n"] > 1 else float("nan")
        return f"{d['mean'] * scale:.{digits}f}" + ("" if half != half else f" ± {half:.{digits}f}")
    level = f"{summary['match_on']} {summary['level']:g}"
    lines = []
    for e in summary["table"]:
        parts = []
        for a in ABLATIONS:
            if a in e:
                parts.append(f"{a}: {iv(e[a]['matched'])} weights ({e[a]['n_matched']}/{e['n']} reach it; best "
                             f"{iv(e[a]['best_faithfulness'], 3)})")
        if "mask" in e:
            parts.append(f"learned masks: {iv(e['mask']['size'])} weights, {summary['match_on']} "
                         f"{iv(e['mask'][summary['match_on']], 3)}")
        lines.append(f"{e['recipe']:>9} {e['setting']:<16} at {level}: " + "; ".join(parts))
    for c in summary["comparisons"]:
        d = c["difference"]
        lines.append(f"{c['recipe']:>9} {c['ablation']:>4}: blocks - {c['other']:<11} {iv(d, 1)} weights over "
                     f"{c['n']} paired seeds ({c['direction']})")
    return lines
