"""The per-run analyses of the beyond stage return complete, JSON-ready results on a tiny run."""

import json

import torch

from modclust.beyond import circuit_analysis, selectivity_analysis, spectral_baseline
from modclust.data import Dataset
from modclust.train import TrainConfig, train


def tiny_run() -> tuple:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=g)
    y = x[:, :10].argmax(1)
    data = Dataset("mnist", x[:200], y[:200], x[200:], y[200:])
    cfg = TrainConfig(widths=(12, 8, 8, 10), n_clusters=2, lam=5.0, epochs=2, batch_size=20, lr=0.05)
    return train(cfg, data, progress=False), data


def test_beyond_analyses_are_complete_and_serialisable() -> None:
    run, data = tiny_run()
    sb = spectral_baseline(run, data, "fc2", n_draws=3)
    assert sb["spectral"]["k"] <= 2 and len(sb["spectral"]["null_c"]) == 3
    assert len(sb["blocks"]["ablation"]["off_acc"]) == 2
    ca = circuit_analysis(run, data, labels=[0, 1, 2], layers=["fc2", "fc3"], mask_steps=20)
    assert len(ca["greedy"]["sizes"]) == 3 and len(ca["mask"]["iou"]) == 3
    assert len(ca["greedy_vs_mask_iou"]) == 3 and len(ca["mask"]["share"]) == 3
    sa = selectivity_analysis(run, data, layers=["fc1", "fc2"])
    assert len(sa["units"]["fc2"]["selectivity"]) == 8 and len(sa["clusters"]["profile"]) == 2
    json.dumps({"s": sb, "c": ca, "u": sa})
