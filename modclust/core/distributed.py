"""Beyond one machine: one model trained data-parallel under DDP.

:func:`train_ddp` trains the MLP as an ``nn.Module`` wrapped in ``DistributedDataParallel``,
with the :class:`~modclust.core.optim.Modularity` optimizer around SGD. Every process draws the
same seeded data order, takes its slice of each global batch and scales its summed
cross-entropy by ``world / global batch``, so DDP's gradient average is exactly the mean over
the global batch, also when a batch does not split evenly. Modularity adds the clusterability
gradient after the all-reduce; it depends on the weights alone, which are the same on every
rank. W processes therefore take the same steps as one process with the same global batch (and
as ``train(config)``, up to float rounding).

A grid of many runs (seeds x lambda, a stage's whole grid) needs no communication: the launcher
(:mod:`modclust.pipeline.launch`) trains it as a job array of batched chunks.

Example (launch with ``torchrun``)::

    torchrun --nproc_per_node=2 -m modclust.core.distributed ddp --seed 0 --lam 15 --out build/ddp
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from modclust.core.checkpoint import save
from modclust.core.data import Dataset
from modclust.core.data import load as load_data
from modclust.core.optim import Modularity
from modclust.core.train import (TrainConfig, TrainingDivergedError, TrainResult, check_data_fits, epoch_order,
                                 eval_accuracy, run_name, seeded_model, steps_per_epoch)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def local_device() -> torch.device:
    """This process's GPU under torchrun (``LOCAL_RANK``), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def train_ddp(config: TrainConfig, data: Dataset) -> TrainResult:
    """Train one configuration data-parallel over the current process group (or alone).

    The same init and data order as ``train(config)``: one generator seeded with
    ``config.seed`` draws the weights, then one permutation per epoch
    (:func:`~modclust.core.train.seeded_model`, :func:`~modclust.core.train.epoch_order`).
    """
    check_data_fits(config, data)
    if config.mask != "blocks" or config.l1 > 0 or config.shuffle_labels:
        raise ValueError(f"train_ddp trains the blocks loss on the true labels only, got mask={config.mask!r}, "
                         f"l1={config.l1}, shuffle_labels={config.shuffle_labels}: train controls with "
                         "modclust.train_many")
    rank, world = rank_and_world() if dist.is_available() and dist.is_initialized() else (0, 1)
    device = data.device
    model, gen = seeded_model(config, device)
    parts = config.partitions()
    clustered = [getattr(model, n).weight for n in parts]
    others = [p for p in model.parameters() if all(p is not q for q in clustered)]
    alpha = config.lam / max(len(parts), 1)  # loss = CE - lam * mean C over the clustered layers
    groups = [{"params": clustered, "alpha": alpha}] if clustered else []
    if others:
        groups.append({"params": others, "alpha": 0.0})
    opt = Modularity(groups, torch.optim.SGD, partitions={getattr(model, n).weight: p for n, p in parts.items()},
                     lr=config.lr)
    net: torch.nn.Module = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    n_train = len(data.train_x)
    bs = config.batch_size
    history: dict[str, list[float]] = {"test_acc": [eval_accuracy(model, data)]}
    # The first step (of this rank) whose loss is not finite, -1 while none: kept on the device
    # and read once per epoch, so a diverged run stops naming its step, without a sync per step.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    steps = steps_per_epoch(n_train, bs)
    for epoch in range(config.epochs):
        order = epoch_order(gen, n_train, device)
        for b in range(steps):
            batch = order[b * bs:(b + 1) * bs]
            mine = torch.tensor_split(batch, world)[rank]
            logits = net(data.train_x[mine])
            loss = F.cross_entropy(logits, data.train_y[mine], reduction="sum") * (world / len(batch))
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), epoch * steps + b, first_bad)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bad = int(first_bad)
        if bad >= 0:
            raise TrainingDivergedError(
                f"training met a non-finite loss at epoch {bad // steps + 1}, step {bad % steps + 1} of {steps} "
                f"(rank {rank} of {world}) for {config!r}: lower lr or lam")
        with torch.no_grad():
            history["test_acc"].append(eval_accuracy(model, data))
    return TrainResult(config, model, parts, history)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m modclust.core.distributed",
                                 description="Train one model data-parallel over torchrun's processes.")
    ap.add_argument("mode", choices=["ddp"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lam", type=float, default=15.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--out", type=Path, required=True, help="folder for the checkpoint")
    args = ap.parse_args(argv)
    device = local_device()
    data = load_data(args.dataset, device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        result = train_ddp(TrainConfig(dataset=args.dataset, lam=args.lam, seed=args.seed, epochs=args.epochs), data)
        if dist.get_rank() == 0:
            save(result, args.out / f"ddp_{run_name(result.config)}.pt")
            print(f"test accuracy {result.test_acc:.4f} with {dist.get_world_size()} processes")
        dist.barrier()  # all ranks done before teardown
    finally:
        dist.destroy_process_group()


def exit_skipping_teardown() -> None:
    """End a process that used gloo without running the interpreter's teardown.

    With gloo, a process whose work is finished, saved and whose group is destroyed can still
    abort (SIGABRT, "terminate called without an active exception") while the interpreter
    shuts down: a background C++ thread of the backend is destroyed unjoined. We saw it in about
    1 in 16 two-process runs here, never with this exit (0 in 150). Call it last, on success only.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    exit_skipping_teardown()
