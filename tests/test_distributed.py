"""DDP: 2 processes (gloo, CPU) take the same steps as 1 process with the same global batch."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from modclust import TrainConfig
from modclust import train
from modclust.core.train import TrainingDivergedError
from modclust.core.distributed import exit_skipping_teardown, train_ddp

from conftest import make_tiny


def _worker(rank, world, init_file, config, data, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = train_ddp(config, data)
        torch.save([w.detach().clone() for w in result.model.weights()], f"{out_dir}/rank{rank}.pt")
        dist.barrier()  # both ranks done before teardown
    finally:
        dist.destroy_process_group()
    exit_skipping_teardown()  # reached only on success; a failure above still reaches mp.spawn


def test_two_processes_give_the_weights_of_one(tmp_path):
    # 210 examples: batches of 32 and a last one of 18; 32 splits 16/16, 18 splits 9/9
    data = make_tiny(n_train=210, n_test=50)
    config = TrainConfig(widths=(784, 16, 16, 10), n_clusters=4, lam=15.0, lr=0.05, batch_size=32, epochs=2, seed=5)
    alone = train_ddp(config, data)  # no process group: one process
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), config, data, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for w0, w1, w in zip(ranks[0], ranks[1], alone.model.weights()):
        assert torch.equal(w0, w1)  # DDP keeps the replicas identical
        assert torch.allclose(w0, w, atol=1e-5)  # and they equal the one-process run
    # the same steps as the library's own trainer (hand-written backward), up to rounding
    fast = train(config, data, progress=False)
    for a, b in zip(alone.model.weights(), fast.model.weights()):
        assert torch.allclose(a, b, atol=1e-4)
    assert abs(alone.history["test_acc"][-1] - fast.test_acc) <= 0.02


def test_an_uneven_split_gives_the_weights_of_one(tmp_path):
    data = make_tiny(n_train=101, n_test=50)  # batches of 32, 32, 32, 5: the last splits 3/2
    config = TrainConfig(widths=(784, 8, 8, 10), n_clusters=2, lam=5.0, lr=0.05, batch_size=32, epochs=1, seed=1)
    alone = train_ddp(config, data)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), config, data, str(tmp_path)), nprocs=2, join=True)
    for w0, w in zip(torch.load(tmp_path / "rank0.pt"), alone.model.weights()):
        assert torch.allclose(w0, w, atol=1e-5)


def test_a_diverging_ddp_run_stops_naming_its_step():
    data = make_tiny(n_train=128, n_test=20)
    config = TrainConfig(widths=(784, 16, 16, 10), n_clusters=4, lam=15.0, lr=1e6, batch_size=32, epochs=3, seed=0)
    with pytest.raises(TrainingDivergedError, match=r"non-finite loss at epoch 1, step \d+ of 4 \(rank 0 of 1\)"):
        train_ddp(config, data)
