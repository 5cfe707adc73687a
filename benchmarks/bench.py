"""`make bench`: the seed notebook's way against modclust's, side by side, in one process.

Parts (each prints its timings and ratio; the last line is one JSON object):

1. training: the seed's loop (torchvision Dataset with ToTensor + Normalize, DataLoader batch 64
   shuffled, nn.Module MLP, the block mask rebuilt with Python loops every step as in the seed's
   ``cluster_goodness_fast``, loss CE - 15 C, SGD lr 1e-3, the seed's per-step ``.item()``
   logging, without its periodic test evaluations) against ``modclust.core.train`` with one test
   pass at the end (``test_every_epoch=False``); same model, batch, epochs.
2. label semanticity of fc2 (k = 50): the seed's way (one pass over the test DataLoader per unit,
   ``np.argsort``, made stable so ties break like the library) against
   ``modclust.label_semanticity`` (the MLP path), on the same trained model; the scores must agree.
3. an ensemble of M configurations (``train_many``) against M sequential ``train`` calls (each
   tested once, at the end, on both sides).
4. greedy circuits of every label of two models: the plain loop (``greedy_circuit``) against
   ``greedy_circuits_fast``; the circuits must be identical. Once with the seed's objective on
   the test images of each label (as the seed did), once with the faithful c-vs-rest objective
   (``objective="margin"``), which reads inputs of every class: the pipeline's search set of 50
   training images per class.
5. on CUDA: 1, 64 and 256 models x 10 epochs through ``train_many`` (CUDA graph) with a test
   pass after every epoch (the library's default), 256 models tested once at the end, and one
   epoch without the graph for comparison.
6. any model's seeds at once: M seeds of a small CNN trained as one vectorised model
   (``modclust.core.ensemble.train_ensemble``, vmap over functional_call) against M sequential
   lone runs (``train_module``), a fixed number of steps each on MNIST images (1, 28, 28).

Parts 1 and 3 also print a ceiling: the time of the arithmetic no SGD on this model can skip
(the batch gather and fc1's two products, :func:`fc1_floor_s`), so a ratio can be read against
the most this machine allows. Their ways (and the ceiling) take turns for ``--repeats`` rounds
and each keeps its best time, as the speed of these machines drifts within the hour.

The seed's code below is written from the notebook's text (../shared/seed/), not imported.
Run: ``python benchmarks/bench.py [--epochs N] [--threads T] [--only cpu|cuda|generic|...]``.

Threads: by default torch's own choice (one per core), what a user's run gets on an idle
machine. On a machine whose cores are busy with other jobs that lets OpenMP spin-waits slow
every small op down 10-100x, for the seed's loop and modclust alike, and the ratios become
noise: pass ``--threads 1`` there (the training ratio is lower at 1 thread, as the seed's loop
gains least from a second thread).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")

import modclust  # noqa: E402
from modclust.core import paths  # noqa: E402
from modclust.analysis.circuits import greedy_circuit, greedy_circuits_fast, objective_inputs  # noqa: E402
from modclust.core.data import balanced_indices  # noqa: E402
from modclust.core.ensemble import ModuleConfig, train_ensemble, train_module  # noqa: E402
from modclust.analysis.any_model import label_semanticity  # noqa: E402
from modclust.core.train import TrainConfig, train, train_many  # noqa: E402


# --- the seed's way --------------------------------------------------------------------------

class SeedMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 64, bias=False)
        self.fc2 = nn.Linear(64, 64, bias=False)
        self.fc3 = nn.Linear(64, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 28 * 28)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def seed_cluster_goodness(model: SeedMLP, u_idx: dict, v_idx: dict, n_clusters: int) -> torch.Tensor:
    a = model.fc2.weight ** 2
    mask = torch.zeros_like(a, dtype=torch.bool)
    for c in range(n_clusters):
        u = torch.tensor(u_idx[c], dtype=torch.long)
        v = torch.tensor(v_idx[c], dtype=torch.long)
        mask[u.unsqueeze(1), v] = True
    return torch.sum(a[mask]) / torch.sum(a)


def seed_datasets() -> tuple[Any, Any]:
    import torchvision.transforms as transforms
    from torchvision.datasets import MNIST

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    root = str(paths.data_root())
    return (MNIST(root=root, train=True, download=True, transform=transform),
            MNIST(root=root, train=False, download=True, transform=transform))


def seed_train(train_set: Any, epochs: int, lam: float = 15.0) -> SeedMLP:
    from torch.utils.data import DataLoader

    torch.manual_seed(42)
    loader = DataLoader(dataset=train_set, batch_size=64, shuffle=True)
    model = SeedMLP()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    u_idx = {i: list(range(i * 16, (i + 1) * 16)) for i in range(4)}
    v_idx = {i: list(range(i * 16, (i + 1) * 16)) for i in range(4)}
    ce_losses, cluster_losses = [], []
    for _epoch in range(epochs):
        model.train()
        for data, target in loader:
            optimizer.zero_grad()
            output = model(data)
            loss_ce = criterion(output, target)
            loss_cluster = seed_cluster_goodness(model, u_idx, v_idx, 4)
            cluster_losses.append(loss_cluster.item())
            ce_losses.append(loss_ce.item())
            loss = loss_ce - lam * loss_cluster
            loss.backward()
            optimizer.step()
    return model


def seed_semanticity(model: SeedMLP, test_set: Any, k: int = 50) -> float:
    """The seed's max_activating_datapoints per unit of fc2, then 1 - mean(u / 10)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset=test_set, batch_size=64, shuffle=False)
    model.eval()
    distinct = []
    for unit in range(model.fc2.weight.shape[0]):
        activations = []
        with torch.no_grad():
            for images, _labels in loader:
                h1 = torch.relu(model.fc1(images.view(-1, 28 * 28)))
                h2 = torch.relu(model.fc2(h1))
                activations.extend(h2[:, unit].numpy())
        order = np.argsort(np.array(activations), kind="stable")[-k:]
        labels = [loader.dataset[i][1] for i in order]
        distinct.append(len(set(labels)))
    return 1.0 - float(np.mean([u / 10 for u in distinct]))


# --- helpers ---------------------------------------------------------------------------------

def timed(fn: Callable[[], Any], device: torch.device | None = None) -> tuple[Any, float]:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    out = fn()
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t


def fc1_floor_s(data: modclust.Dataset, epochs: int, m: int) -> float:
    """Seconds of the arithmetic no SGD on this model can skip: per step, every member's batch
    gathered, fc1's forward product and its weight-gradient product (the other two layers,
    the loss and the update left out). A ratio cannot beat the one against this time."""
    g = torch.Generator().manual_seed(0)
    n, bs = len(data.train_x), 64
    w = torch.randn(m, 64, data.train_x.shape[1], generator=g) * 0.01
    grad_out = torch.randn(m, bs, 64, generator=g) * 1e-6
    t = time.perf_counter()
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for _ in range(m)])
        for b in range(n // bs):
            x = data.train_x.index_select(0, order[:, b * bs:(b + 1) * bs].reshape(-1)).view(m, bs, -1)
            torch.bmm(x, w.transpose(1, 2))
            w.baddbmm_(grad_out.transpose(1, 2), x, alpha=-1e-3)
    return time.perf_counter() - t


def alternated(fns: list[Callable[[], Any]], repeats: int) -> tuple[list[Any], list[float]]:
    """Each function's last result and best time over ``repeats`` rounds, the functions taking
    turns within a round: these machines' speed drifts by up to 1.5x within the hour, so
    competing ways are timed in the same minutes and a slow moment hits each about equally."""
    results: list[Any] = [None] * len(fns)
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            results[i], t = timed(fn)
            best[i] = min(best[i], t)
    return results, best


def row(name: str, seed_s: float, ours_s: float) -> float:
    ratio = seed_s / ours_s
    print(f"  {name:<44} {seed_s:9.2f} s  {ours_s:9.3f} s  {ratio:8.1f}x", flush=True)
    return ratio


# --- parts -----------------------------------------------------------------------------------

def bench_seed(data: modclust.Dataset, epochs: int, repeats: int, out: dict[str, Any]) -> None:
    print(f"\n[1-2] the seed's way vs modclust (CPU, {epochs} epoch(s), batch 64, lambda 15; "
          f"training: best of {repeats}, alternated)")
    print(f"  {'':<44} {'seed':>11}  {'modclust':>11}  {'ratio':>9}")
    train_set, test_set = seed_datasets()
    (_, result, _), (seed_s, ours_s, floor_s) = alternated([
        lambda: seed_train(train_set, epochs),
        lambda: train(TrainConfig(epochs=epochs), data, progress=False, test_every_epoch=False),
        lambda: fc1_floor_s(data, epochs, 1)], repeats)
    out["train_speedup"] = row(f"train {epochs} epoch(s), clustered", seed_s, ours_s)
    out["train_speedup_ceiling"] = row("  ceiling: fc1's two products alone", seed_s, floor_s)
    out.update(seed_train_s=seed_s, modclust_train_s=ours_s, epochs=epochs, train_floor_s=floor_s)

    seed_model = SeedMLP()
    with torch.no_grad():
        for a, w in zip((seed_model.fc1, seed_model.fc2, seed_model.fc3), result.model.weights()):
            a.weight.copy_(w)
    seed_score, seed_sem_s = timed(lambda: seed_semanticity(seed_model, test_set))
    ours, ours_sem_s = timed(lambda: label_semanticity(result.model, "fc2", data.test_x, data.test_y, k=50))
    out["semanticity_speedup"] = row("label semanticity fc2, 64 units, k=50", seed_sem_s, ours_sem_s)
    agree = abs(seed_score - ours.score) < 1e-12
    print(f"  semanticity: seed {seed_score:.4f}, modclust {ours.score:.4f}, same model: "
          f"{'agree' if agree else 'DISAGREE'}")
    out.update(semanticity_seed=seed_score, semanticity_modclust=ours.score, semanticity_agree=agree)


def bench_ensemble(data: modclust.Dataset, epochs: int, m: int, repeats: int, out: dict[str, Any]) -> list[Any]:
    print(f"\n[3] ensemble of {m} (train_many) vs {m} sequential train calls (CPU, {epochs} epoch(s); "
          f"best of {repeats}, alternated)")
    configs = [TrainConfig(seed=s, lam=lam, epochs=epochs) for lam in (15.0, 0.0) for s in range(m // 2)]
    (_, results, _), (seq_s, ens_s, floor_s) = alternated([
        lambda: [train(c, data, progress=False, test_every_epoch=False) for c in configs],
        lambda: train_many(configs, data, progress=False, test_every_epoch=False),
        lambda: fc1_floor_s(data, epochs, m)], repeats)
    out["ensemble_speedup"] = row(f"{m} configs", seq_s, ens_s)
    out["ensemble_speedup_ceiling"] = row(f"  ceiling: fc1's two products of {m} members", seq_s, floor_s)
    out.update(ensemble_m=m, sequential_s=seq_s, ensemble_s=ens_s, ensemble_floor_s=floor_s)
    return results


class BenchCNN(nn.Module):
    """Part 6's model: (B, 1, 28, 28) -> conv 1->8 (3x3, stride 2) -> ReLU -> conv 8->8 (3x3,
    stride 2) -> ReLU -> flatten (288) -> Linear(288, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, stride=2)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2)
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def bench_cnn(seed: int) -> BenchCNN:
    torch.manual_seed(seed)
    return BenchCNN()


def bench_ensemble_generic(data: modclust.Dataset, m: int, steps: int, repeats: int, out: dict[str, Any]) -> None:
    """M seeds of :class:`BenchCNN`, ``steps`` SGD steps of batch 64 each (one epoch over the
    first 64 * steps training images), lambda 15 on conv2: one vectorised ensemble against M
    lone runs; each member must agree with its lone run."""
    print(f"\n[6] generic ensemble: {m} seeds of a small CNN (train_ensemble, vmap) vs {m} sequential train_module "
          f"calls (CPU, {steps} steps of batch 64, lambda 15 on conv2; best of {repeats}, alternated)")
    n = 64 * steps
    images = (data.train_x[:n].reshape(-1, 1, 28, 28), data.train_y[:n],
              data.test_x[:1000].reshape(-1, 1, 28, 28), data.test_y[:1000])
    cfg = ModuleConfig(epochs=1, lr=0.05, batch_size=64, lam=15.0, clustered=("conv2.weight",), n_clusters=4)
    seeds = list(range(m))
    (alone, together), (seq_s, ens_s) = alternated([
        lambda: [train_module(bench_cnn, s, images, cfg) for s in seeds],
        lambda: train_ensemble(bench_cnn, seeds, images, cfg)], repeats)
    out["ensemble_generic_ratio"] = row(f"{m} CNN seeds, vmap vs sequential", seq_s, ens_s)
    # Batched kernels round differently from the lone ones (about 1 float32 ulp per step), and
    # SGD can amplify that over hundreds of steps (a ReLU that flips), so a member is checked on
    # its first 50 steps' losses and its final test accuracy; the weights' gap is reported.
    same = all(max(abs(a - b) for a, b in zip(r.history["loss"][:50], t.history["loss"][:50])) < 1e-5
               and abs(r.test_acc - t.test_acc) <= 0.01 for r, t in zip(alone, together))
    gap = max(float((a - b).abs().max()) for r, t in zip(alone, together)
              for a, b in zip(r.model.state_dict().values(), t.model.state_dict().values()))
    acc = float(np.mean([r.test_acc for r in together]))
    print(f"  members agree with their lone runs (first 50 losses within 1e-5, test acc within 0.01): {same}; "
          f"largest weight gap after {steps} steps {gap:.1e}; mean test acc {acc:.4f}")
    out.update(ensemble_generic_m=m, ensemble_generic_steps=steps, ensemble_generic_sequential_s=seq_s,
               ensemble_generic_s=ens_s, ensemble_generic_agree=same, ensemble_generic_weight_gap=gap)
    if not same:
        raise SystemExit("an ensemble member differs from its lone run")


def bench_pruning(models: list[Any], data: modclust.Dataset, layers: list[str], out: dict[str, Any],
                  key: str = "pruning", objective: str = "seed") -> None:
    """Plain vs fast greedy circuits on the data's device; results under ``key``_*.

    The seed's objective reads each label's test images; the others read the pipeline's search
    set (50 training images per class, seed 0).
    """
    labels = list(range(10))
    if objective == "seed":
        x, y, where = data.test_x, data.test_y, "each label's test images"
    else:
        idx = balanced_indices(data.train_y, 50, seed=0).to(data.device)
        x, y, where = data.train_x[idx], data.train_y[idx], f"{len(idx)} training images of every class"
    print(f"\n[4] greedy circuits ({objective} objective, on {where}) on {data.device.type}, {len(models)} models "
          f"x {len(labels)} labels, layers {layers}, baseline 'current', threshold 1e-4")
    models = [m.to(data.device) for m in models]
    sync = data.device if data.device.type == "cuda" else None
    plain, plain_s = timed(lambda: [[greedy_circuit(m, objective_inputs(objective, x, y, c), c, layers=layers,
                                                    objective=objective) for c in labels] for m in models], sync)
    fast, fast_s = timed(lambda: greedy_circuits_fast(models, x, y, labels=labels, layers=layers, objective=objective),
                         sync)
    out[f"{key}_speedup"] = row("plain loop vs fast", plain_s, fast_s)
    same = all(torch.equal(p.kept[n], fast[mi][p.label].kept[n])
               for mi, per_model in enumerate(plain) for p in per_model for n in p.kept)
    sizes = [[c.size for c in per_model] for per_model in plain]
    print(f"  same circuits: {same}; sizes per label: {sizes}")
    out.update({f"{key}_plain_s": plain_s, f"{key}_fast_s": fast_s, f"{key}_same_circuits": same,
                f"{key}_layers": layers, f"{key}_problems": len(models) * len(labels)})
    if not same:
        raise SystemExit("fast pruning found different circuits from the plain loop")


def bench_cuda(data: modclust.Dataset, out: dict[str, Any]) -> None:
    device = torch.device("cuda")
    data = data.to(device)
    name = torch.cuda.get_device_name(device)
    print(f"\n[5] CUDA ({name}): train_many, seed setup, 10 epochs, CUDA graph step")
    out["cuda_device"] = name
    train_many([TrainConfig(epochs=1)], data.subset(6400), progress=False)  # warm up kernels
    steps = 10 * -(-len(data.train_x) // 64)
    sweep = lambda m: [TrainConfig(seed=s, lam=15.0 if s % 2 == 0 else 0.0, epochs=10) for s in range(m)]  # noqa: E731
    for m in (1, 64, 256):
        configs = sweep(m)
        try:
            res, s = timed(lambda: train_many(configs, data, progress=False), device)
        except Exception as err:  # report, and measure without the graph rather than nothing
            print(f"  CUDA graph failed ({type(err).__name__}: {err}); timing without it")
            out["cuda_graph_error"] = f"{type(err).__name__}: {err}"
            res, s = timed(lambda: train_many(configs, data, progress=False, cuda_graph=False), device)
        acc = float(np.mean([r.test_acc for r in res]))
        print(f"  {m:4d} model(s) x 10 epochs: {s:7.2f} s  ({s / steps * 1e6:7.1f} us/step, "
              f"mean test acc {acc:.4f})", flush=True)
        out[f"cuda_{m}_model{'s' if m > 1 else ''}_10_epochs_s"] = s
        out[f"cuda_{m}_us_per_step"] = s / steps * 1e6
    configs = sweep(256)
    res, s = timed(lambda: train_many(configs, data, progress=False, test_every_epoch=False), device)
    acc = float(np.mean([r.test_acc for r in res]))
    print(f"   256 models x 10 epochs, tested once at the end: {s:6.2f} s ({s / steps * 1e6:7.1f} us/step, "
          f"mean test acc {acc:.4f})", flush=True)
    out["cuda_256_models_10_epochs_test_once_s"] = s
    pair = [res[0].model, res[1].model]  # one clustered and one unclustered model, for pruning
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # opt-in, reported apart: TF32 rounds matmul inputs
    res, s = timed(lambda: train_many(configs, data, progress=False), device)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    acc = float(np.mean([r.test_acc for r in res]))
    print(f"   256 models x 10 epochs with TF32 matmuls (opt-in): {s:6.2f} s (mean test acc {acc:.4f})")
    out["cuda_256_models_10_epochs_tf32_s"] = s
    for m in (1, 256):
        configs = [TrainConfig(seed=s, epochs=1) for s in range(m)]
        _, s = timed(lambda: train_many(configs, data, progress=False, cuda_graph=False), device)
        print(f"  {m:4d} model(s) x 1 epoch without the graph: {s:6.2f} s ({s * 10:.1f} s per 10 epochs)")
        out[f"cuda_{m}_eager_1_epoch_s"] = s
    bench_pruning(pair, data, ["fc2", "fc3"], out, key="cuda_pruning")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1, help="epochs for the CPU comparisons (ratios are what matter)")
    ap.add_argument("--ensemble", type=int, default=16, help="M configs in the ensemble comparison")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of the training and ensemble comparisons, the ways alternated; best time kept")
    ap.add_argument("--prune-layers", default="fc2,fc3", help="layers pruned in the circuit comparison")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads; 0 (default) = torch's own choice, one per core. Use 1 on a "
                         "busy machine: more threads than free cores let OpenMP spin-waits slow small ops "
                         "down 10-30x, for both sides")
    ap.add_argument("--generic-seeds", type=int, default=8, help="M seeds of the CNN in the generic ensemble row")
    ap.add_argument("--generic-steps", type=int, default=300,
                    help="SGD steps of batch 64 per member in the generic ensemble row (one pass over "
                         "64 x steps images)")
    ap.add_argument("--only", default="all", choices=["all", "seed", "ensemble", "pruning", "generic", "cuda", "cpu"],
                    help="run one part (cpu = every CPU part)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MODCLUST_DATA_MIRROR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    data = modclust.load("mnist")
    out: dict[str, Any] = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                           "load_average": os.getloadavg()[0]}
    run = lambda part: args.only in ("all", part) or (args.only == "cpu" and part != "cuda")  # noqa: E731
    print(f"modclust bench: torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if run("seed"):
        bench_seed(data, args.epochs, args.repeats, out)
    if run("ensemble"):
        results = bench_ensemble(data, args.epochs, args.ensemble, args.repeats, out)
        pair = [results[0], results[len(results) // 2]]  # one clustered and one unclustered model
    else:
        pair = train_many([TrainConfig(lam=15.0, epochs=args.epochs), TrainConfig(lam=0.0, epochs=args.epochs)], data,
                          progress=False)
    if run("pruning"):
        bench_pruning([r.model for r in pair], data, args.prune_layers.split(","), out)
        bench_pruning([r.model for r in pair], data, args.prune_layers.split(","), out, key="faithful_pruning",
                      objective="margin")
    if run("generic"):
        bench_ensemble_generic(data, args.generic_seeds, args.generic_steps, args.repeats, out)
    if run("cuda"):
        if torch.cuda.is_available():
            bench_cuda(data, out)
        else:
            print("\n[5] CUDA: no GPU here, skipped")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
