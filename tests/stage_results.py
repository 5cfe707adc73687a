"""Made-up stage results, shaped as the notebooks write them, for the tests of the paper's numbers."""

from __future__ import annotations

import numpy as np

from modclust.experiments.grid import paired_difference


def stage5_results(seeds=(0, 1, 2), main=15.0, k=4):
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
    train = {"main_lambda": main, "runs": runs}
    return (train, {"layer": "fc2", "rows": abl}, {"layers": ["fc1", "fc2"], "top_k": 50, "rows": sem},
            {"layers": ["fc3"], "labels": list(range(10)), "threshold": 1e-4, "baseline": "current",
             "ablation": "zero", "objectives": ["seed", "margin", "kl"], "faithful_objective": "margin",
             "sweep_thresholds": [1e-4, 1e-3, 1e-2], "match_on": "balanced_agreement", "match_level": 0.97,
             "search": {"split": "train", "per_class": 50, "seed": 0, "n": 500}, "judged_on": "test",
             "search_space": {"layer": "fc2", "per_cluster": [0.764] * k}, "rows": circ,
             "seed_cell": {"label": 8, "layer": "fc3", "decided_pruned": 84, "decided_kept": 556, "nonzero_after": 0,
                           "visited": 640, "ours_kept": 212, "classwise_acc": [1.0] + [0.0] * 9,
                           "lam": main, "seed": 0}})


def stage6_results() -> dict:
    """Stage 6 results of 4 seeds in which the clustered models are less accurate, have smaller
    greedy circuits and more selective clusters, and nothing else differs."""
    seeds = [0, 1, 2, 3]
    recs = [{"layers": layers, "lam": lam, "seed": s, "test_acc": 0.9 - (0.05 if lam else 0) + 0.001 * s,
             "C_clustered": 0.25 if lam == 0 else 0.99}
            for layers in ("fc2", "all") for lam in (0.0, 15.0) for s in seeds]

    def rows(key_fn):
        return [{"lam": lam, "seed": s, **key_fn(lam, s)} for lam in (0.0, 15.0) for s in seeds]

    res = {
        "main_lambda": 15.0, "seeds": seeds, "lambdas": [0.0, 15.0], "records": recs,
        "paired_accuracy": paired_difference(recs),
        "spectral": {"rows": rows(lambda lam, s: {"spectral_c": 0.3, "null_c": 0.3, "z_c": 0.1 * (s - 1.5),
                                                  "z_ncut": 0.0, "blocks_c": 0.25})},
        "circuits": {"rows": rows(lambda lam, s: {"greedy_size": 100 - 50 * (lam > 0) + s, "mask_size": 80 + s,
                                                  "greedy_iou": 0.5, "mask_iou": 0.4, "greedy_vs_mask_iou": 0.7,
                                                  "greedy_agreement": 0.98, "mask_agreement": 0.97})},
        "seed_circuits": {"rows": rows(lambda lam, s: {"greedy_iou": 0.6, "greedy_share_c": 1.0, "mask_share_c": 0.9})},
        "selectivity": {"layers": ["fc1", "fc2"], "rows": rows(lambda lam, s: {"sel_fc1": 0.3, "mi_fc1": 0.4,
                                                                              "sel_fc2": 0.4 + 0.01 * s, "mi_fc2": 0.5,
                                                                       "cluster_sel": 0.2 + 0.1 * (lam > 0) + 0.01 * s,
                                                                       "cluster_mi": 0.3})},
    }
    return res
