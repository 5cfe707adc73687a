"""The launcher (modclust.pipeline.launch): a stage's grid trained as a job array of chunks gives the
models the stage trains in one process, and the stage reads them back unchanged."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import make_tiny

from modclust.core.train import TrainConfig, run_name, train_many
from modclust.experiments.classifier import dataset_folder
from modclust.experiments.cnn_study import Cnn
from modclust.experiments.grid import load_data
from modclust.experiments.mlp_train import Replay, StagePlan, load_round
from modclust.experiments.study import load_trained
from modclust.pipeline import launch
from modclust.pipeline.stages import Layout, PipelineError, main, stage_parameters

SMOKE = launch.preset_settings(Layout().check("smoke"))
N_TRAIN = 600  # stage 1's first images; the CNN's are its n_train, below


@pytest.fixture
def one_thread():
    """The smoke preset's threads (1) in this process too, as its jobs run: a CPU matmul's rounding
    may depend on the number of threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(SMOKE[None].threads)
    yield
    torch.set_num_threads(before)


def mlp_settings(**kw):
    return dataclasses.replace(SMOKE[None], n_train=N_TRAIN, **kw)


def weights(run):
    return [w.detach().cpu() for w in run.model.weights()]


def test_the_smoke_grids_of_the_mlp_and_the_cnn_trained_as_local_jobs_equal_one_process(tmp_path, one_thread):
    """Stage 1's grid (its controls reuse the grid's runs: one round) and stage 7's, each as a job
    array of two chunks of two runs on the local executor: bitwise the models of one process. A
    chunk of two runs at one learning rate is one batched model of the MLP as the whole grid is,
    and the CNN's ensemble of two is computed as its ensemble of four, member by member."""
    mlp = mlp_settings(layer_sets=("fc2",), converged_lr=0.0, control_settings=("blocks", "none"))
    cnn = dataclasses.replace(SMOKE["cnn"], n_train=300, n_test=100)
    settings = {None: mlp, "cnn": cnn, "modadd": SMOKE["modadd"]}
    executor = launch.make_executor(tmp_path / "jobs", "local", "test-launch", launch.Resources(timeout_min=5))
    for stage in ("01_train", "07_cnn"):
        launch.launch_training(stage, settings, tmp_path / stage, executor, chunk=2)

    stage = StagePlan.of(mlp)
    here = stage.train(load_data(mlp.dataset, n_train=N_TRAIN), progress=False)
    configs = stage.configs
    assert len(configs) == 4
    there = load_round(tmp_path / "01_train", 1, configs)
    assert not (tmp_path / "01_train" / "round2").exists()  # the controls are the grid's runs
    for c, run in zip(configs, there):
        assert run.config == c
        assert all(torch.equal(a, b) for a, b in zip(weights(run), weights(here.results[c]))), run_name(c)
        assert run.history == here.results[c].history

    family = Cnn(cnn)
    data = family.load_data("mnist")
    prepared = family.prepare(data)
    ours = family.train(data, prepared, family.grid())
    theirs = load_trained(family, data, prepared, dataset_folder(tmp_path / "07_cnn", "mnist"))
    for a, b in zip(ours, theirs):
        assert (a.lam, a.seed) == (b.lam, b.seed) and a.record == b.record
        for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
            assert torch.equal(x, y), (a.lam, a.seed, name)


def test_stage_1_in_rounds_replays_exactly_and_equals_one_process(tmp_path, one_thread):
    """Every round of stage 1 with its controls (two recipes, the L1 searches) as chunks of at
    most four runs, each a job run in this process (submitit's debug executor): bitwise the runs
    of one process, the same train.json; and notebook 01's replay of the rounds gives them back
    bitwise. The controls' round mixes two learning rates (dealt so that each chunk mixes them
    too) and the searches' rounds of six probes train as two chunks."""
    mlp = mlp_settings(layer_sets=("fc2",), control_settings=("blocks", "random_mask", "l1", "none"),
                       l1_tolerance=0.05)
    stage = StagePlan.of(mlp)
    folder = tmp_path / "launch"
    trainer = launch.ArrayTrainer(folder, launch.make_executor(folder / "jobs", "debug", "test-rounds"), 4, mlp)
    launched = stage.train(None, trainer, progress=False)
    data = load_data(mlp.dataset, n_train=N_TRAIN)
    replayed = stage.train(data, Replay(folder), progress=False)
    here = stage.train(data, progress=False)
    assert trainer.rounds >= 4  # the grid, the controls, at least one search round per recipe, the L1 runs
    summaries = [json.loads(json.dumps(runs.save(tmp_path / name).to_dict())) for runs, name in
                 ((launched, "launched"), (replayed, "replayed"), (here, "here"))]
    assert summaries[0] == summaries[1] == summaries[2]
    for runs in (replayed, here):
        pairs = [(launched.results[c], runs.results[c]) for c in stage.configs] + list(
            zip(launched.controls.results, runs.controls.results))
        for x, y in pairs:
            assert x.config == y.config and all(torch.equal(a, b) for a, b in zip(weights(x), weights(y)))
    other = StagePlan.of(dataclasses.replace(mlp, batch_size=32))  # the same names, other runs
    with pytest.raises(ValueError, match="was trained for .* not .*launch the stage again"):
        other.train(data, Replay(folder), progress=False)


def test_a_chunk_of_one_learning_rate_cut_from_a_batch_of_two_agrees_to_rounding_only() -> None:
    """Why the MLP's chunks mix the learning rates their batch mixes: the SGD step of a batch
    takes a shared learning rate as one scalar, several as one per run, and rounds differently."""
    data = make_tiny(n_train=300, n_test=50)
    runs = [TrainConfig(widths=(784, 16, 16, 10), epochs=1, lr=lr, seed=s) for lr in (0.001, 0.05) for s in (0, 1)]
    together = train_many(runs, data, progress=False)
    apart = train_many(runs[:2], data, progress=False) + train_many(runs[2:], data, progress=False)
    dealt = [r for chunk in launch.mlp_chunks(runs, 2) for r in train_many(chunk, data, progress=False)]
    assert [len({c.lr for c in chunk}) for chunk in launch.mlp_chunks(runs, 2)] == [2, 2]
    by_config = {r.config: r for r in dealt}
    diffs = [max(float((a - b).abs().max()) for a, b in zip(weights(x), weights(y))) for x, y in zip(together, apart)]
    assert 0 < max(diffs) < 1e-6
    assert all(all(torch.equal(a, b) for a, b in zip(weights(x), weights(by_config[x.config]))) for x in together)


def test_the_slurm_jobs_ask_for_what_the_command_line_says(tmp_path, monkeypatch) -> None:
    (tmp_path / "srun").write_text("#!/bin/sh\n")  # submitit looks for it to believe it is on a SLURM cluster
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    resources = launch.Resources(timeout_min=30, slurm_partition="gpu", gpus_per_node=1, cpus_per_task=2, mem_gb=8,
                                 array_parallelism=4)
    executor = launch.make_executor(tmp_path / "jobs", "slurm", "modclust-gpu-07_cnn", resources)
    assert executor.cluster == "slurm"
    assert executor._executor.parameters == {"job_name": "modclust-gpu-07_cnn", "time": 30, "gpus_per_node": 1,
                                             "cpus_per_task": 2, "mem": "8GB", "partition": "gpu",
                                             "array_parallelism": 4}


def test_chunks_and_mistakes(tmp_path) -> None:
    assert [len(c) for c in launch.split(list(range(10)), 8)] == [5, 5]
    assert [len(c) for c in launch.split(list(range(7)), 3)] == [3, 2, 2]
    assert launch.split([], 3) == [] and launch.split([1], 3) == [[1]]
    stage = StagePlan.of(mlp_settings())
    chunks = launch.mlp_chunks(stage.configs, 3)  # the fc2 runs and the runs clustered on every layer apart
    assert sum(map(len, chunks)) == len(stage.configs) and all(len(set(map(launch.batch_key, c))) == 1 for c in chunks)
    with pytest.raises(FileNotFoundError, match="launch the stage"):
        Replay(tmp_path / "nothing")
    trace = ("Job (task=0) failed during processing with trace:\n----\nTraceback (most recent call last):\n"
             '  File "jobs.py", line 1, in train_study_chunk\nmodclust.core.data.DataUnavailableError: no MNIST\n'
             "  - its.log\n")
    assert launch.job_error(RuntimeError(trace)) == "modclust.core.data.DataUnavailableError: no MNIST"
    assert launch.job_error(RuntimeError("the job died\nsomehow")) == "RuntimeError: the job died"
    assert main(["launch", "smoke", "02_ablate", "--chunk", "2", "--cluster", "local"], [launch.COMMAND]) == 1
    assert main(["launch", "smoke", "07_cnn", "--chunk", "0", "--cluster", "local"], [launch.COMMAND]) == 1
    assert main(["launch", "smoke", "07_cnn", "--chunk", "2"], [launch.COMMAND]) == 1  # no cluster
    with pytest.raises(PipelineError, match="takes no trained_dir"):
        stage_parameters("smoke", "02_ablate", Path("b"), Path("o"), trained_dir=Path("t"))
