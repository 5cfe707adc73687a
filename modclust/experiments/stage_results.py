"""The results of stages 1-4 and 6, one class each: the only statement of each result's shape.

Each stage writes one JSON file of nested string-keyed values, and later stages read it:

================  ======================  =======================================
stage             file                    class
================  ======================  =======================================
``01_train``      ``train.json``          :class:`TrainingResults`
``02_ablate``     ``ablate.json``         :class:`AblationResults`
``03_interpret``  ``interpret.json``      :class:`InterpretResults`
``04_circuits``   ``circuits.json``       :class:`CircuitResults`
``06_beyond``     ``beyond.json``         :class:`BeyondResults`
================  ======================  =======================================

A class's fields are the file's top-level keys, in the order they are written; what lies below
them (the rows: one JSON object per run, the nested summaries) stays plain lists and dicts,
described in the class's docstring. A notebook builds its result with the class and writes it
(:meth:`~StageResults.write`); a later stage reads it (:meth:`~StageResults.read`) and takes
the fields as attributes. A file that lacks a field, or holds one the class does not know, was
written by other code: reading it raises one :class:`ValueError` naming the file, the fields
and the stage to rerun.

(Stage 1's result :class:`TrainingResults` is the stage's file, every run together; one trained
run is a :class:`modclust.core.train.TrainResult`.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from modclust.core import paths
from modclust.core.io import read_json, write_json

R = TypeVar("R", bound="StageResults")


def _shown(path: Path) -> str:
    """A path as a message shows it: relative to the checkout when inside it."""
    try:
        return str(path.resolve().relative_to(paths.REPO))
    except ValueError:
        return str(path)


class StageResults:
    """What every stage's result class shares: conversion to and from the JSON's dict, and the
    file's writing and reading. Subclasses are frozen dataclasses whose fields are the file's
    top-level keys; ``STAGE`` is the stage (notebook) that writes it, ``FILE`` the file's name
    in the stage's folder."""

    STAGE: ClassVar[str]
    FILE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON's dict: the fields in order (the values themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any], source: str | os.PathLike[str] | None = None) -> R:
        """The result from the JSON's dict; ``source`` (the file) names it in the error.

        Raises ValueError, saying which stage to rerun, when ``d`` lacks a field or has a key
        that is no field.
        """
        where = _shown(Path(source)) if source is not None else f"{cls.FILE} (stage {cls.STAGE})"
        rerun = f"rerun stage {cls.STAGE} (make paper reruns it)"
        if not isinstance(d, Mapping):
            raise ValueError(f"{where} is not a JSON object but {type(d).__name__}: it was written by other code; "
                             f"{rerun}")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        missing = [n for n in names if n not in d]
        unknown = [k for k in d if k not in names]
        if missing or unknown:
            parts = []
            if missing:
                parts.append("lacks " + ", ".join(repr(n) for n in missing))
            if unknown:
                parts.append(f"has unknown field{'s' if len(unknown) > 1 else ''} "
                             + ", ".join(repr(k) for k in unknown))
            by = "older" if not unknown else "other"
            raise ValueError(f"{where} {' and '.join(parts)}: it was written by {by} code; {rerun}")
        return cls(**{n: d[n] for n in names})

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the result as indented JSON to ``path``, atomically (:func:`modclust.core.io.write_json`)."""
        return write_json(path, self.to_dict())

    @classmethod
    def read(cls: type[R], path: str | os.PathLike[str]) -> R:
        """The result written to ``path`` (:meth:`from_dict`'s errors name the file)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no {path}: run notebooks/{cls.STAGE}.ipynb (make paper runs it) first")
        return cls.from_dict(read_json(path), source=path)


@dataclass(frozen=True)
class TrainingResults(StageResults):
    """Stage 1's result, ``01_train/train.json`` (:func:`modclust.experiments.grid.save_runs`
    builds it; the runs' checkpoints lie beside it in ``checkpoints/<name>.pt``).

    - ``main_lambda``: the clustered lambda later stages compare with lambda 0.
    - ``runs``: the lambda x seed grid, one row per run: ``name``, ``setting``, ``recipe``
      ("seed"), ``lam``, ``seed``, ``config`` (:meth:`modclust.core.train.TrainConfig.to_dict`),
      ``test_acc``, ``clusterability`` (the clustered layer's final C), ``test_acc_per_epoch``,
      ``ce_curve`` and ``c_curve`` (downsampled training curves), ``steps``.
    - ``sweep``: the layer set x lambda x seed sweep (stage 6 reads it), one row per run: its
      ``name`` and :func:`modclust.experiments.grid.run_record` (``dataset``, ``lam``, ``seed``,
      ``n_clusters``, ``layers``, ``clustered_layers``, ``epochs``, ``test_acc``, ``C_<layer>``
      of every layer, ``C_clustered``).
    - ``controls``: the controls' records (:mod:`modclust.experiments.controls`): ``name``,
      ``setting``, ``recipe``, ``seed``, ``lam``, ``lr``, ``l1``, ``mask``, ``epochs``,
      ``test_acc``, ``live_density``, ``C_blocks``, ``C_loss_mask``; empty without controls.
    - ``recipes``: each recipe's learning rate (``{"seed": lr, "converged": converged_lr}``).
    - ``live_cutoff``: a weight is live when |w| exceeds this share of its layer's largest |w|.
    - ``l1_search``: each recipe's L1 strength search (``strength``, ``density``, ``target``,
      ``tolerance``, ``probes``: [strength, density] pairs, ``within``); empty without controls.
    """

    STAGE: ClassVar[str] = "01_train"
    FILE: ClassVar[str] = "train.json"

    main_lambda: float
    runs: list[dict[str, Any]]
    sweep: list[dict[str, Any]]
    controls: list[dict[str, Any]]
    recipes: dict[str, float]
    live_cutoff: float
    l1_search: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class AblationResults(StageResults):
    """Stage 2's result, ``02_ablate/ablate.json``: each cluster of the clustered layer OFF and ON.

    - ``layer``: the clustered layer whose clusters are ablated.
    - ``rows``: one per run of stage 1's grid: ``name``, ``lam``, ``seed`` and
      :meth:`modclust.analysis.any_model.ablate`'s result (``layer``, ``full_acc``,
      ``full_classwise``: per class; ``off_acc`` and ``on_acc``: per cluster; ``off_classwise``
      and ``on_classwise``: per cluster, per class).
    """

    STAGE: ClassVar[str] = "02_ablate"
    FILE: ClassVar[str] = "ablate.json"

    layer: str
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class InterpretResults(StageResults):
    """Stage 3's result, ``03_interpret/interpret.json``: label semanticity and the images that
    excite each cluster most.

    - ``layers``: the hidden layers scored; ``top_k``: the top images per unit.
    - ``rows``: one per run of stage 1's grid: ``name``, ``lam``, ``seed``, ``semanticity``:
      per layer, :func:`modclust.analysis.any_model.label_semanticity`'s result (``score``,
      ``reverse_cumulative``: units with at least u distinct labels, u = 1..classes, and more).
    - ``cluster_grid``: one main-lambda run's most exciting test images per cluster of the
      clustered layer: ``run``, ``layer``, ``indices`` and their ``labels`` (per cluster).
    """

    STAGE: ClassVar[str] = "03_interpret"
    FILE: ClassVar[str] = "interpret.json"

    layers: list[str]
    top_k: int
    rows: list[dict[str, Any]]
    cluster_grid: dict[str, Any]


@dataclass(frozen=True)
class CircuitResults(StageResults):
    """Stage 4's result, ``04_circuits/circuits.json``: greedy circuits per run, label, objective
    and threshold, and the controls' (the circuits' masks lie beside it in ``circuits.pt``).

    - The search: ``layers`` pruned, ``labels``, ``threshold``, ``baseline`` ("current" or
      "full"), ``ablation`` ("zero" or "mean"), ``objectives``, ``faithful_objective`` (the
      headline), ``sweep_thresholds`` (every threshold of the faithful objective, sorted),
      ``match_on`` and ``match_level`` (sizes are compared at this faithfulness), ``search``
      (``split``, ``per_class``, ``seed``, ``n``: the training images searched on),
      ``judged_on`` ("test"), ``search_space`` (``layer``, ``per_cluster``: the share of the
      search space the blocks prune, per cluster).
    - ``seed_cell``: the seed notebook's pruning cell rerun
      (:func:`modclust.seed.pruning_cell.seed_cell_record`).
    - ``rows``: one per run, objective and threshold (:func:`modclust.experiments.grid.circuit_rows`):
      ``name``, ``lam``, ``seed``, ``objective``, ``method``, ``threshold``, ``circuits``: per
      label, the circuit's ``label``, ``size`` (and more) and its ``faithfulness``.
    - ``controls``: ``rows`` (the controls' circuit rows, each also with ``setting``,
      ``recipe``, ``ablation`` and the live-weight measures) and ``summary``
      (:func:`modclust.experiments.controls.summarise_controls`; None without controls).
    """

    STAGE: ClassVar[str] = "04_circuits"
    FILE: ClassVar[str] = "circuits.json"

    layers: list[str]
    labels: list[int]
    threshold: float
    baseline: str
    ablation: str
    objectives: list[str]
    faithful_objective: str
    sweep_thresholds: list[float]
    match_on: str
    match_level: float
    search: dict[str, Any]
    judged_on: str
    search_space: dict[str, Any]
    seed_cell: dict[str, Any]
    rows: list[dict[str, Any]]
    controls: dict[str, Any]


@dataclass(frozen=True)
class BeyondResults(StageResults):
    """Stage 6's result, ``06_beyond/beyond.json`` (:func:`modclust.experiments.per_run.run_beyond`
    builds it): stage 1's sweep, and spectral clusters, circuits and selectivity of the analysed
    layer set at lambda 0 and the main lambda.

    - The sweep: ``dataset``, ``main_lambda``, ``lambdas``, ``seeds``, ``layer_sets``,
      ``config`` (the sweep's base :class:`~modclust.core.train.TrainConfig` as a dict),
      ``records`` (stage 1's ``sweep`` rows without their names), ``summary``
      (:func:`modclust.experiments.grid.summary_table` of accuracy and C per layer set and
      lambda), ``paired_accuracy`` (:func:`modclust.experiments.grid.paired_difference` of
      accuracy against lambda 0).
    - ``spectral``: ``layer``, ``null_draws``, ``rows`` (one per run,
      :func:`~modclust.experiments.per_run.spectral_row`) and ``runs`` (the full
      :func:`~modclust.experiments.per_run.spectral_baseline` of each run).
    - ``circuits``: the faithful objective's circuits: the search's settings (``layers``,
      ``labels``, ``threshold``, ``baseline``, ``mask_sparsity``, ``mask_steps``,
      ``objective``, ``ablation``, ``search``), ``rows``
      (:func:`~modclust.experiments.per_run.circuit_row`) and ``runs``
      (:func:`~modclust.experiments.per_run.circuit_analysis`).
    - ``seed_circuits``: the same by the seed's objective: ``objective``, ``rows``, ``runs``.
    - ``selectivity``: ``layers``, ``cluster_layer``, ``bins``, ``rows``
      (:func:`~modclust.experiments.per_run.selectivity_row`) and ``runs``
      (:func:`~modclust.experiments.per_run.selectivity_analysis`).

    Every row and run above starts with the run's ``lam``, ``seed`` and ``layers``.
    """

    STAGE: ClassVar[str] = "06_beyond"
    FILE: ClassVar[str] = "beyond.json"

    dataset: str
    main_lambda: float
    lambdas: list[float]
    seeds: list[int]
    layer_sets: list[str]
    config: dict[str, Any]
    records: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    paired_accuracy: list[dict[str, Any]]
    spectral: dict[str, Any]
    circuits: dict[str, Any]
    seed_circuits: dict[str, Any]
    selectivity: dict[str, Any]


STAGE_RESULTS: tuple[type[StageResults], ...] = (TrainingResults, AblationResults, InterpretResults, CircuitResults,
                                                 BeyondResults)
"""Every stage's result class, in stage order."""
