"""What one job of a launch runs (:mod:`modclust.pipeline.launch`): a chunk of a stage's runs,
trained as the stage trains them on one machine and saved where the stage will read them.

A job unpickles its function and arguments and imports their modules, so this module imports
what training needs and not the pipeline (papermill, nbformat: seconds more for every job). Each job sets the preset's threads, loads its own data on its own device (``"auto"``:
CUDA when the job's node has it) and returns the files it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modclust.core import checkpoint
from modclust.core.train import TrainConfig
from modclust.experiments.cnn_study import Cnn, CnnSettings
from modclust.experiments.grid import load_data, pick_device, set_threads, train_grid
from modclust.experiments.mlp_train import round_path
from modclust.experiments.modular_addition import ModAddSettings, stage_studies
from modclust.experiments.study import Study, save_trained


def train_mlp_chunk(configs: Sequence[TrainConfig], folder: Path, k: int, dataset: str, n_train: int, device: str,
                    threads: int) -> list[str]:
    """Stage 1, one chunk of round ``k``: ``configs`` trained as the stage trains them
    (``train_grid``: one batched model per shape) on the first ``n_train`` images of ``dataset``
    (0: all), saved in the round (:func:`~modclust.experiments.mlp_train.round_path`)."""
    set_threads(threads)
    data = load_data(dataset, pick_device(device), n_train=n_train or None)
    return [str(checkpoint.save(r, round_path(folder, k, r.config))) for r in train_grid(configs, data, progress=False)]


@dataclass(frozen=True)
class StudyPart:
    """One study of a stage on one data: ``name`` (in messages), how a job rebuilds the study and
    its data (``build()`` -> (study, data)), the study's grid and the folder its models go to."""

    name: str
    build: Callable[[], tuple[Study[Any, Any, Any], Any]]
    grid: tuple[tuple[float, int], ...]
    folder: Path


def cnn_study(settings: CnnSettings, dataset: str, device: str) -> tuple[Study[Any, Any, Any], Any]:
    """Stage 7's CNN study and its data ``dataset`` on ``device``, as notebook 07 has them."""
    family = Cnn(settings)
    return family, family.load_data(dataset, pick_device(device))


def modadd_study(settings: ModAddSettings, p: int, device: str) -> tuple[Study[Any, Any, Any], None]:
    """Stage 8's study of modulus ``p`` on ``device``, as notebook 08 has it; its data is None."""
    return stage_studies(settings, pick_device(device))[p], None


def train_study_chunk(chunk: tuple[StudyPart, Sequence[tuple[float, int]]], threads: int) -> list[str]:
    """One chunk of a study's grid: its runs trained by the family (:meth:`~modclust.experiments.study.Study.train`
    after :meth:`~modclust.experiments.study.Study.prepare` on the job's data), saved in the
    part's folder (:func:`~modclust.experiments.study.save_trained`)."""
    part, runs = chunk
    set_threads(threads)
    study, data = part.build()
    trained = study.train(data, study.prepare(data), list(runs))
    return [str(p) for p in save_trained(trained, part.folder)]
