"""Stage 1's training: the MLP's lambda grid, its sweep and its controls, by any trainer.

:class:`StagePlan` plans the runs from notebook 01's parameters (the fields of
:class:`~modclust.experiments.mlp_study.MlpSettings` it declares) and trains them in a fixed
sequence of calls of a trainer (:data:`~modclust.experiments.controls.Trainer`): the grid and
the sweep, then the controls (:func:`~modclust.experiments.controls.train_controls`: their
runs, each round of each L1 search, the L1 runs). :meth:`StageRuns.save` writes the stage's
checkpoints and ``train.json`` (:func:`~modclust.experiments.grid.save_runs`).

The default trainer trains on the data in this process. Trained elsewhere, each non-empty call
is a *round*, its runs saved one checkpoint each (:func:`modclust.core.checkpoint.save`, named
:func:`~modclust.core.train.run_name`) in ``<folder>/round<k>/``: the launcher
(:mod:`modclust.pipeline.launch`) trains every round as a job array, and :class:`Replay` gives
notebook 01 the same runs back in the same calls, each checked against the config asked for.
The sequence replays exactly: a call's configs depend on the parameters and on the runs before
it (the L1 search's next round on the densities of the last), and the loaded runs are the runs
the launcher loaded, bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modclust.core import checkpoint
from modclust.core.data import Dataset
from modclust.core.train import TrainConfig, TrainResult, run_name
from modclust.experiments.controls import ControlRuns, Trainer, train_controls
from modclust.experiments.grid import grid_configs, save_runs, train_grid, unique_configs
from modclust.experiments.stage_results import TrainingResults

PARAMETERS = ("dataset", "widths", "n_clusters", "clustered_layer", "lambdas", "main_lambda", "sweep_lambdas",
              "layer_sets", "seeds", "epochs", "lr", "converged_lr", "control_settings", "live_cutoff",
              "l1_tolerance", "batch_size")
"""The parameters (MlpSettings' fields) that say what stage 1 trains; ``n_train``, ``device`` and
``threads`` say on what, and where."""


@dataclass(frozen=True)
class StagePlan:
    """Stage 1's runs, planned: ``grid`` (lambdas x seeds on the clustered layer, which stages 2-5
    read), ``sweep`` (sweep lambdas, 0 and the main lambda x seeds x layer sets, stage 6) and the
    controls of every recipe (``{"seed": lr, "converged": converged_lr}``, the second left out
    when 0)."""

    base: TrainConfig
    grid: tuple[TrainConfig, ...]
    sweep: tuple[TrainConfig, ...]
    seeds: tuple[int, ...]
    main_lambda: float
    recipes: dict[str, float]
    control_settings: tuple[str, ...]
    live_cutoff: float
    l1_tolerance: float

    @classmethod
    def of(cls, p: Mapping[str, Any] | Any) -> StagePlan:
        """The runs of stage 1's parameters ``p``: a mapping with the keys of :data:`PARAMETERS`
        (notebook 01's ``globals()``), or an :class:`~modclust.experiments.mlp_study.MlpSettings`."""
        if dataclasses.is_dataclass(p):
            p = dataclasses.asdict(p)
        missing = [k for k in PARAMETERS if k not in p]
        if missing:
            raise KeyError(f"stage 1's parameters lack {missing}")
        base = TrainConfig(dataset=p["dataset"], widths=tuple(p["widths"]), n_clusters=p["n_clusters"],
                           clustered_layers=(p["clustered_layer"],), epochs=p["epochs"], lr=p["lr"],
                           batch_size=p["batch_size"])
        grid = grid_configs(p["lambdas"], p["seeds"], base=base)
        sweep = grid_configs([*p["sweep_lambdas"], 0.0, p["main_lambda"]], p["seeds"], layer_sets=p["layer_sets"],
                             base=base)
        recipes = {"seed": p["lr"], **({"converged": p["converged_lr"]} if p["converged_lr"] > 0 else {})}
        return cls(base, tuple(grid), tuple(sweep), tuple(p["seeds"]), float(p["main_lambda"]), recipes,
                   tuple(p["control_settings"]), float(p["live_cutoff"]), float(p["l1_tolerance"]))

    @property
    def configs(self) -> list[TrainConfig]:
        """The grid's and the sweep's runs, each once (a run in both is trained once)."""
        return unique_configs(self.grid, self.sweep)

    def train(self, data: Dataset | None, train: Trainer | None = None, progress: bool = True) -> StageRuns:
        """Train every run: on ``data`` in this process (``train`` None), or by ``train`` (then
        ``data`` is not read; see the module doc)."""
        train_ = train or (lambda configs: train_grid(configs, data, progress=progress))  # type: ignore[arg-type]
        configs = self.configs
        results = dict(zip(configs, train_(configs)))
        ctl = (train_controls(data, self.base, self.seeds, self.main_lambda, self.recipes, self.control_settings,
                              trained=results, cutoff=self.live_cutoff, tolerance=self.l1_tolerance,
                              progress=progress, train=train) if self.control_settings else None)
        return StageRuns(self, results, ctl)


@dataclass
class StageRuns:
    """Stage 1's trained runs: ``results`` by config (the grid's and the sweep's) and the controls."""

    stage: StagePlan
    results: dict[TrainConfig, TrainResult]
    controls: ControlRuns | None

    def save(self, out_dir: str | os.PathLike[str]) -> TrainingResults:
        """The stage's checkpoints and ``train.json`` in ``out_dir`` (:func:`~modclust.experiments.grid.save_runs`),
        with the recipes, the live cutoff and the L1 searches; returns the stage's result."""
        st, ctl = self.stage, self.controls
        return save_runs([self.results[c] for c in st.grid], out_dir, st.main_lambda, recipes=st.recipes,
                         live_cutoff=st.live_cutoff, sweep=[self.results[c] for c in st.sweep],
                         controls=ctl.results if ctl else (), control_records=ctl.records if ctl else (),
                         l1_search={k: s.to_dict() for k, s in ctl.searches.items()} if ctl else {})


# --- runs trained elsewhere, round by round -----------------------------------------------------

def round_path(folder: str | os.PathLike[str], k: int, config: TrainConfig) -> Path:
    """Where round ``k``'s run of ``config`` is saved: ``<folder>/round<k>/<run name>.pt``."""
    return Path(folder) / f"round{k}" / f"{run_name(config)}.pt"


def load_round(folder: str | os.PathLike[str], k: int, configs: Sequence[TrainConfig],
               device: str | torch.device = "cpu") -> list[TrainResult]:
    """Round ``k``'s runs of ``configs``, in their order, each checked to be the config asked for."""
    out = []
    for config in configs:
        path = round_path(folder, k, config)
        if not path.exists():
            raise FileNotFoundError(f"no {path}: round {k} of the launch in {folder} did not train {run_name(config)}; "
                                    "launch the stage again (python -m modclust.pipeline launch)")
        run = checkpoint.load(path, device)
        if run.config != config:
            raise ValueError(f"{path} was trained for {run.config}, not {config}: the launch in {folder} was made "
                             "with other parameters; launch the stage again")
        out.append(run)
    return out


class Rounds(ABC):
    """A trainer whose k-th non-empty call is round k, kept in ``<folder>/round<k>``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.rounds = 0

    def __call__(self, configs: Sequence[TrainConfig]) -> list[TrainResult]:
        configs = list(configs)
        if not configs:
            return []
        names = [run_name(c) for c in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"two runs of one round share a name: {sorted({n for n in names if names.count(n) > 1})}")
        self.rounds += 1
        return self.train_round(self.rounds, configs)

    @abstractmethod
    def train_round(self, k: int, configs: list[TrainConfig]) -> list[TrainResult]:
        """Round ``k``: the runs of ``configs``, in their order."""


class Replay(Rounds):
    """The runs a launch trained (:mod:`modclust.pipeline.launch`), given back round by round:
    notebook 01's trainer when its ``trained_dir`` is set. Nothing is trained."""

    def __init__(self, folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        super().__init__(folder)
        self.device = device
        if not self.folder.is_dir():
            raise FileNotFoundError(f"no folder {self.folder} of runs trained elsewhere: launch the stage "
                                    "(python -m modclust.pipeline launch PRESET 01_train) or leave trained_dir empty")

    def train_round(self, k: int, configs: list[TrainConfig]) -> list[TrainResult]:
        return load_round(self.folder, k, configs, self.device)

