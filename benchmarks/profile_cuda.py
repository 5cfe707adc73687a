"""Where a batched training step spends its GPU time (run on a CUDA machine).

Profiles one epoch of M models through ``train_many`` without the CUDA graph, so each kernel
shows, then times 10 epochs with the graph in full float32 and with TF32 matmuls.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")

import modclust  # noqa: E402
from modclust.core.train import TrainConfig, train_many  # noqa: E402


def main() -> None:
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    data = modclust.load("mnist", "cuda")
    configs = [TrainConfig(seed=s, epochs=1) for s in range(m)]
    train_many(configs, data.subset(6400), progress=False)
    sub = data.subset(64 * 200)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        train_many(configs, sub, progress=False, cuda_graph=False)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        configs = [TrainConfig(seed=s, epochs=10) for s in range(m)]
        torch.cuda.synchronize()
        t = time.perf_counter()
        res = train_many(configs, data, progress=False)
        torch.cuda.synchronize()
        s = time.perf_counter() - t
        print(f"{m} models x 10 epochs, tf32={tf32}: {s:.2f} s, mean acc {sum(r.test_acc for r in res) / m:.4f}")


if __name__ == "__main__":
    main()
