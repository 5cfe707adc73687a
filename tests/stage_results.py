"""Made-up stage results for the tests of the paper's numbers, built with the classes the
notebooks write them with (modclust.experiments.stage_results): a fake cannot lack a field
the stage writes, nor hold one it does not."""

from __future__ import annotations

import numpy as np

from modclust.core.train import SETTINGS, TrainConfig
from modclust.experiments.controls import summarise_controls
from modclust.experiments.grid import paired_difference, summary_table
from modclust.experiments.stage_results import (AblationResults, BeyondResults, CircuitResults, InterpretResults,
                                                TrainingResults)
from modclust.paper import claims, controls_numbers
from modclust.paper import numbers as report


def stage5_results(seeds=(0, 1, 2), main=15.0, k=4
                   ) -> tuple[TrainingResults, AblationResults, InterpretResults, CircuitResults]:
    """Results of stages 1-4 (train, ablate, interpret, circuits) as the notebooks write them, made up
    from a seeded generator, for the paper's numbers."""
    rng = np.random.default_rng(0)
    runs, abl, sem, circ = [], [], [], []
    cfg = {"dataset": "mnist", "widths": [784, 64, 64, 10], "n_clusters": k, "clustered_layers": ["fc2"],
           "lam": 0.0, "lr": 0.001, "batch_size": 64, "epochs": 1, "seed": 0}
    for lam in (0.0, main):
        for s in seeds:
            base = {"name": f"lam{lam:g}_seed{s}", "lam": lam, "seed": s}
            runs.append({**base, "config": {**cfg, "lam": lam, "seed": s}, "test_acc": 0.9 - lam * 1e-3 + rng.normal(0, 1e-3),
                         "clusterability": 0.25 if lam == 0 else 0.99, "ce_curve": list(rng.random(5)),
                         "c_curve": list(rng.random(5)), "test_acc_per_epoch": [0.1, 0.9], "steps": 10})
            off = list(rng.uniform(0.5, 0.9, k))
            abl.append({**base, "full_acc": 0.9, "full_classwise": list(rng.random(10)), "off_acc": off,
                        "off_classwise": rng.random((k, 10)).tolist(), "on_acc": list(rng.uniform(0.1, 0.4, k)),
                        "on_classwise": rng.random((k, 10)).tolist()})
            rc = list(range(64, 0, -6))[:10]
            sem.append({**base, "semanticity": {ly: {"score": 0.6 + rng.normal(0, 0.01), "reverse_cumulative": rc}
                                                for ly in ("fc1", "fc2")}})
            for objective, thr in (("seed", 1e-4), ("margin", 1e-4), ("margin", 1e-3), ("margin", 1e-2), ("kl", 1e-4)):
                shrink = {1e-4: 1.0, 1e-3: 0.5, 1e-2: 0.1}[thr]
                agree = {1e-4: 0.99, 1e-3: 0.96, 1e-2: 0.8}[thr]
                labs = [None] if objective == "kl" else range(10)
                def faith(c, objective=objective, agree=agree):
                    if objective == "seed":  # a constant classifier
                        return {"agreement": 0.1, "balanced_agreement": 0.5, "share_c": 1.0, "full_share_c": 0.1,
                                "top1_agreement": 0.1}
                    a = agree + rng.normal(0, 0.002)
                    return {"agreement": a, "balanced_agreement": a, "share_c": 0.1, "full_share_c": 0.1,
                            "top1_agreement": 0.9}
                circ.append({**base, "objective": objective, "threshold": thr, "method": "greedy",
                             "circuits": [{"label": c, "size": int(shrink * rng.integers(50, 200)) + 1,
                                           "faithfulness": faith(c)} for c in labs]})
    train_controls, circ_controls = stage4_controls(seeds, rng)
    train = TrainingResults(main_lambda=main, runs=runs, sweep=sweep_records(seeds, main, k), **train_controls)
    grid = [list(range(c * 8, c * 8 + 8)) for c in range(k)]
    return (train,
            AblationResults(layer="fc2", rows=abl),
            InterpretResults(layers=["fc1", "fc2"], top_k=50, rows=sem,
                             cluster_grid={"run": f"lam{main:g}_seed{seeds[0]}", "layer": "fc2", "indices": grid,
                                           "labels": [[i % 10 for i in row] for row in grid]}),
            CircuitResults(
                layers=["fc3"], labels=list(range(10)), threshold=1e-4, baseline="current", ablation="zero",
                objectives=["seed", "margin", "kl"], faithful_objective="margin", sweep_thresholds=[1e-4, 1e-3, 1e-2],
                match_on="balanced_agreement", match_level=0.97,
                search={"split": "train", "per_class": 50, "seed": 0, "n": 500}, judged_on="test",
                search_space={"layer": "fc2", "per_cluster": [0.764] * k},
                seed_cell={"label": 8, "layer": "fc3", "decided_pruned": 84, "decided_kept": 556, "nonzero_after": 0,
                           "visited": 640, "ours_kept": 212, "classwise_acc": [1.0] + [0.0] * 9,
                           "lam": main, "seed": 0},
                rows=circ, controls=circ_controls))


def sweep_records(seeds, main, k, layer_sets=("fc2", "all")) -> list[dict]:
    """Stage 1's sweep as run_record writes it (with each run's name): every layer set x lambda x seed."""
    return [{"name": f"lam{lam:g}_seed{s}" + ("" if layers == "fc2" else f"_{layers}"), "dataset": "mnist",
             "lam": lam, "seed": s, "n_clusters": k, "layers": layers,
             "clustered_layers": ["fc2"] if layers == "fc2" else ["fc1", "fc2", "fc3"], "epochs": 1,
             "test_acc": 0.9 - (0.05 if lam else 0.0) + 0.001 * s, "C_fc1": 0.25, "C_fc2": 0.25 if lam == 0 else 0.99,
             "C_fc3": 0.25, "C_clustered": 0.25 if lam == 0 else 0.99}
            for layers in layer_sets for lam in (0.0, main) for s in seeds]


def stage4_controls(seeds, rng, recipes=("seed", "converged")):
    """Stage 1's controls fields (controls, recipes, live_cutoff, l1_search) and stage 4's
    controls part (rows and summary), made up: every
    setting at every seed and recipe, three thresholds whose agreement brackets 0.97 except on
    the networks with nothing to find, which never get there."""
    records, rows = [], []
    for recipe in recipes:
        for setting in SETTINGS:
            if setting == "random_init" and recipe != recipes[0]:
                continue
            for s in seeds:
                name = f"{setting}_{recipe}_{s}"
                records.append({"name": name, "setting": setting, "recipe": recipe, "seed": s, "lam": 0.0,
                                "lr": 0.001, "l1": 0.0, "mask": "blocks", "epochs": 1,
                                "test_acc": 0.1 if setting in ("random_init", "shuffled_labels") else 0.9,
                                "live_density": 0.25 if setting in ("blocks", "random_mask", "l1") else 0.95,
                                "C_blocks": 0.99 if setting == "blocks" else 0.25, "C_loss_mask": 0.99})
                nothing = setting in ("random_init", "shuffled_labels")
                size = float(rng.integers(100, 300))
                for ablation in ("zero", "mean"):
                    for thr, agree, shrink in ((1e-4, 0.99, 1.0), (1e-3, 0.96, 0.5), (1e-2, 0.8, 0.1)):
                        rows.append({"name": name, "setting": setting, "recipe": recipe, "seed": s, "lam": 0.0,
                                     "objective": "margin", "method": "greedy", "ablation": ablation, "threshold": thr,
                                     "live_weights": 1000.0, "live_share": 0.2, "iou": 0.3, "iou_random": 0.2,
                                     "dominant_share": 0.3, "floor": 0.25,
                                     "circuits": [{"label": c, "size": int(size * shrink),
                                                   "faithfulness": {"balanced_agreement": agree - (0.3 if nothing else 0)
                                                                    + rng.normal(0, 0.002)}}
                                                  for c in range(10)]})
    summary = summarise_controls(records, rows, "balanced_agreement", 0.97, 1e-4)
    train = {"controls": records, "recipes": {r: 0.001 if r == "seed" else 0.05 for r in recipes}, "live_cutoff": 0.01,
             "l1_search": {r: {"strength": 0.5, "density": 0.26, "target": 0.25, "tolerance": 0.02, "within": True,
                               "probes": [[0.5, 0.26]]} for r in recipes}}
    return train, {"rows": rows, "summary": summary}


def stage6_results() -> BeyondResults:
    """Stage 6 results of 4 seeds in which the clustered models are less accurate, have smaller
    greedy circuits and more selective clusters, and nothing else differs."""
    seeds = [0, 1, 2, 3]
    recs = [{"layers": layers, "lam": lam, "seed": s, "test_acc": 0.9 - (0.05 if lam else 0) + 0.001 * s,
             "C_clustered": 0.25 if lam == 0 else 0.99}
            for layers in ("fc2", "all") for lam in (0.0, 15.0) for s in seeds]

    def rows(key_fn):
        return [{"lam": lam, "seed": s, **key_fn(lam, s)} for lam in (0.0, 15.0) for s in seeds]

    res = BeyondResults(
        dataset="mnist", main_lambda=15.0, lambdas=[0.0, 15.0], seeds=seeds, layer_sets=["fc2", "all"],
        config=TrainConfig().to_dict(), records=recs, summary=summary_table(recs, metrics=["test_acc", "C_clustered"]),
        paired_accuracy=paired_difference(recs),
        spectral={"rows": rows(lambda lam, s: {"spectral_c": 0.3, "null_c": 0.3, "z_c": 0.1 * (s - 1.5),
                                               "z_ncut": 0.0, "blocks_c": 0.25})},
        circuits={"rows": rows(lambda lam, s: {"greedy_size": 100 - 50 * (lam > 0) + s, "mask_size": 80 + s,
                                               "greedy_iou": 0.5, "mask_iou": 0.4, "greedy_vs_mask_iou": 0.7,
                                               "greedy_agreement": 0.98, "mask_agreement": 0.97})},
        seed_circuits={"rows": rows(lambda lam, s: {"greedy_iou": 0.6, "greedy_share_c": 1.0, "mask_share_c": 0.9})},
        selectivity={"layers": ["fc1", "fc2"],
                     "rows": rows(lambda lam, s: {"sel_fc1": 0.3, "mi_fc1": 0.4, "sel_fc2": 0.4 + 0.01 * s,
                                                  "mi_fc2": 0.5, "sel_live_fc1": 0.35, "dead_fc1": 0.1,
                                                  "sel_live_fc2": 0.45 + 0.01 * s, "dead_fc2": 0.1 * (lam > 0),
                                                  "cluster_sel": 0.2 + 0.1 * (lam > 0) + 0.01 * s,
                                                  "cluster_mi": 0.3})},
    )
    return res


def written_macros() -> set[str]:
    """Every macro stages 5 (with the controls' section) and 6 write from the made-up results, and
    LaTeX's own capitalised commands: what paper/main.tex and the sections below stage 7 may use."""
    stage5 = stage5_results()
    known = set(report.paper_numbers(*stage5, preset="smoke")[0].items)
    known |= set(controls_numbers.controls_numbers(stage5[0], stage5[3])[0].items)
    known |= claims_macro_names() | {"NStagesText"}  # written at compile time
    return known | set(report.beyond_macros(stage6_results())) | {"LaTeX", "TeX", "IfFileExists"}


def claims_macro_names() -> set[str]:
    """The macros modclust.paper.claims writes when the paper is compiled (claims.tex)."""
    names = {"NPrimary", "NDeclared", "Alpha", "AbstractFindings", "ConclusionFindings", "PrimaryTally"}
    for d in claims.PRIMARY:
        names |= {f"Claim{d.key}{part}" for part in ("Sentence", "Cell")}
    return names
