"""Stages 1-6's settings: the MLP study's one home for its defaults, and their checks.

A preset's top-level keys are the fields of :class:`MlpSettings` (its ``cnn:`` and ``modadd:``
sections are :class:`modclust.experiments.cnn_study.CnnSettings` and
:class:`modclust.experiments.modular_addition.ModAddSettings`). Each of notebooks 01-06 declares
the fields it reads as parameters of the same names and defaults (a test keeps them equal).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from modclust.analysis.circuits import Faithfulness
from modclust.analysis.objectives import ABLATIONS, OBJECTIVES
from modclust.core.checks import (Problems, check_choice, check_distinct, check_float, check_int, check_ints,
                                  check_list, check_open_unit, check_seeds)
from modclust.core.data import DATASETS
from modclust.core.model import SEED_MAX, layer_names
from modclust.core.train import SETTINGS

CONTROL_SETTINGS = SETTINGS
"""The controls of a modularity claim (:data:`modclust.core.train.SETTINGS`)."""

FAITHFULNESS = tuple(f.name for f in fields(Faithfulness) if f.type in ("float", float))
"""The scalar measures of :class:`modclust.analysis.circuits.Faithfulness` sizes can be matched on."""


@dataclass(frozen=True)
class MlpSettings:
    """The MLP study's settings (notebooks 01-06), defaults the paper preset's values, checked
    on construction: every problem of the values in one :class:`~modclust.core.checks.SettingsError`.

    Training (stage 1): the bias-free MLP ``widths`` on ``dataset`` (its first ``n_train``
    images, 0: all), k = ``n_clusters`` blocks on ``clustered_layer``, every lambda of
    ``lambdas`` (0 and ``main_lambda`` among them) x ``seeds``, ``epochs`` of SGD at ``lr`` in
    batches of ``batch_size``; the controls ``control_settings`` at ``lr`` and
    ``converged_lr`` (0 leaves that recipe out), L1 matched to the blocks' live density
    (``live_cutoff``, ``l1_tolerance``); the sweep ``sweep_lambdas`` x ``layer_sets``.
    Analyses: ``layers`` and ``top_k``, ``grid_images`` (stage 3); circuits in
    ``circuit_layers`` for ``labels`` ([]: every class) at ``threshold`` against ``baseline``,
    by ``objectives`` (``faithful_objective`` the headline) under ``ablation``, searched on
    ``search_per_class`` images per class drawn by ``search_seed``, ``sweep_thresholds``, sizes
    matched at ``match_on`` = ``match_level``, the controls under ``control_ablations`` and
    ``control_mask_settings`` by learned masks, ``pruner`` (stage 4); ``null_draws``,
    ``mask_sparsity``, ``mask_steps``, ``selectivity_bins`` (stage 6). The machine, which every
    stage reads (the CNN's and modular addition's too): ``device`` and ``threads``.
    """

    preset_section: ClassVar[str | None] = None
    """The preset section that sets these settings (None: the top level)."""

    dataset: str = "mnist"
    widths: tuple[int, ...] = (784, 64, 64, 10)
    n_clusters: int = 4
    clustered_layer: str = "fc2"
    lambdas: tuple[float, ...] = (0.0, 1.0, 5.0, 15.0, 30.0)
    main_lambda: float = 15.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    epochs: int = 10
    lr: float = 0.001
    converged_lr: float = 0.05
    control_settings: tuple[str, ...] = CONTROL_SETTINGS
    live_cutoff: float = 0.01
    l1_tolerance: float = 0.02
    batch_size: int = 64
    n_train: int = 0
    device: str = "cpu"
    threads: int = 0
    layers: tuple[str, ...] = ("fc1", "fc2")
    top_k: int = 50
    grid_images: int = 8
    circuit_layers: tuple[str, ...] = ("fc2", "fc3")
    labels: tuple[int, ...] = ()
    threshold: float = 0.0001
    baseline: str = "current"
    objectives: tuple[str, ...] = OBJECTIVES
    faithful_objective: str = "margin"
    ablation: str = "zero"
    search_per_class: int = 50
    search_seed: int = 0
    sweep_thresholds: tuple[float, ...] = (0.001, 0.01)
    match_on: str = "balanced_agreement"
    match_level: float = 0.97
    control_ablations: tuple[str, ...] = ABLATIONS
    control_mask_settings: tuple[str, ...] = ("blocks", "random_init", "shuffled_labels")
    pruner: str = "fast"
    sweep_lambdas: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0, 15.0, 30.0, 100.0)
    layer_sets: tuple[str, ...] = ("fc2", "all")
    null_draws: int = 20
    mask_sparsity: float = 0.0001
    mask_steps: int = 300
    selectivity_bins: int = 10

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        problems = Problems()

        def names(name: str, choices: Any = None, empty: bool = True, *reads: str) -> None:
            """A list of distinct names (each one of ``choices`` when given, which may come from the
            fields ``reads``), stored as a tuple."""
            with problems.about(name, *reads):
                values = check_list(f"MlpSettings.{name}", getattr(self, name))
                for v in values:
                    if choices is None:
                        if not isinstance(v, str):
                            raise TypeError(f"MlpSettings.{name} must be a list of names, got {v!r} in it")
                    else:
                        check_choice(f"MlpSettings.{name} item", v, choices)
                if not values and not empty:
                    raise ValueError(f"MlpSettings.{name} is empty: give at least one"
                                     + (f" of {list(choices)}" if choices is not None else ""))
                check_distinct(f"MlpSettings.{name}", values, "an entry")
                put(name, tuple(values))

        def lambda_list(name: str) -> None:
            with problems.about(name):
                lams = tuple(check_float(f"MlpSettings.{name} item", v, 0.0, hint="lambdas are >= 0 (0 = unclustered)")
                             for v in check_list(f"MlpSettings.{name}", getattr(self, name)))
                if not lams:
                    raise ValueError(f"MlpSettings.{name} is empty: give 0 (unclustered) and main_lambda at least")
                check_distinct(f"MlpSettings.{name}", lams)
                put(name, lams)

        with problems.about("dataset"):
            check_choice("MlpSettings.dataset", self.dataset, DATASETS)
        with problems.about("widths"):
            widths = check_ints("MlpSettings.widths", check_list("MlpSettings.widths", self.widths), 1, min_length=3,
                                hint="layer widths, input first, at least one hidden layer, e.g. [784, 64, 64, 10]")
            if widths[0] != 784 or widths[-1] > 10:
                raise ValueError(f"MlpSettings.widths must start with 784 (a 28 x 28 image) and end in at most 10 "
                                 f"outputs (the classes), got {list(widths)}")
            put("widths", widths)
        fc = layer_names(self.widths) if problems.ok("widths") else None
        with problems.about("n_clusters"):
            check_int("MlpSettings.n_clusters", self.n_clusters, 2, hint="k, the blocks of a clustered layer")
        with problems.about("clustered_layer", "widths"):
            if fc is not None:
                check_choice("MlpSettings.clustered_layer", self.clustered_layer, fc)
        lambda_list("lambdas")
        with problems.about("main_lambda"):
            check_float("MlpSettings.main_lambda", self.main_lambda, 0.0, strict_min=True,
                        hint="the clustered runs' lambda, > 0")
        if problems.ok("lambdas", "main_lambda") and (0.0 not in self.lambdas or self.main_lambda not in self.lambdas):
            problems.add(f"MlpSettings.lambdas {list(self.lambdas)} must hold 0 (the unclustered baseline) and "
                         f"main_lambda {self.main_lambda:g}, which the later stages compare: add them",
                         "lambdas", "main_lambda")
        with problems.about("seeds"):
            put("seeds", check_seeds("MlpSettings.seeds", check_list("MlpSettings.seeds", self.seeds), SEED_MAX))
        for name in ("epochs", "batch_size", "top_k", "grid_images", "search_per_class"):
            with problems.about(name):
                check_int(f"MlpSettings.{name}", getattr(self, name), 1)
        for name, hint in (("n_train", "the first n training images; 0 means all"), ("search_seed", ""),
                           ("mask_steps", ""), ("threads", "CPU threads for torch; 0 means torch's default")):
            with problems.about(name):
                check_int(f"MlpSettings.{name}", getattr(self, name), 0, hint=hint)
        with problems.about("null_draws"):
            check_int("MlpSettings.null_draws", self.null_draws, 2,
                      hint="at least 2 shuffled copies to estimate the null's spread")
        with problems.about("selectivity_bins"):
            check_int("MlpSettings.selectivity_bins", self.selectivity_bins, 2)
        with problems.about("lr"):
            check_float("MlpSettings.lr", self.lr, 0.0, strict_min=True)
        with problems.about("converged_lr"):
            check_float("MlpSettings.converged_lr", self.converged_lr, 0.0, hint="0 leaves the converged recipe out")
        with problems.about("live_cutoff"):
            check_open_unit("MlpSettings.live_cutoff", self.live_cutoff)
        with problems.about("l1_tolerance"):
            check_float("MlpSettings.l1_tolerance", self.l1_tolerance, 0.0, strict_min=True)
        with problems.about("threshold"):
            check_float("MlpSettings.threshold", self.threshold, 0.0)
        with problems.about("mask_sparsity"):
            check_float("MlpSettings.mask_sparsity", self.mask_sparsity, 0.0)
        with problems.about("match_level"):
            check_float("MlpSettings.match_level", self.match_level, 0.0, 1.0, strict_min=True)
        with problems.about("device"):
            device = self.device
            if not isinstance(device, str) or not (device in ("cpu", "auto") or device.startswith("cuda")):
                raise ValueError(f"MlpSettings.device must be 'cpu', 'cuda' (or 'cuda:N') or 'auto', got {device!r}")
        for name, choices in (("baseline", ("current", "full")), ("faithful_objective", OBJECTIVES),
                              ("ablation", ABLATIONS), ("match_on", FAITHFULNESS), ("pruner", ("fast", "plain"))):
            with problems.about(name):
                check_choice(f"MlpSettings.{name}", getattr(self, name), choices)
        names("control_settings", CONTROL_SETTINGS)
        names("control_ablations", ABLATIONS)
        names("control_mask_settings", CONTROL_SETTINGS)
        names("objectives", OBJECTIVES, empty=False)
        if problems.ok("objectives", "faithful_objective") and self.faithful_objective not in self.objectives:
            problems.add(f"MlpSettings.faithful_objective {self.faithful_objective!r} must be one of the objectives "
                         f"{list(self.objectives)}: add it to them", "faithful_objective", "objectives")
        if fc is not None:
            names("layers", fc[:-1], False, "widths")
            names("circuit_layers", fc, False, "widths")
            names("layer_sets", fc + ["all"], False, "widths")
        lambda_list("sweep_lambdas")
        with problems.about("sweep_thresholds"):
            values = tuple(check_float("MlpSettings.sweep_thresholds item", v, 0.0, strict_min=True)
                           for v in check_list("MlpSettings.sweep_thresholds", self.sweep_thresholds))
            check_distinct("MlpSettings.sweep_thresholds", values, "a threshold")
            put("sweep_thresholds", values)
        with problems.about("labels"):
            labels = check_ints("MlpSettings.labels", check_list("MlpSettings.labels", self.labels), 0, 9,
                                hint="classes 0-9; [] means every class")
            check_distinct("MlpSettings.labels", labels, "a circuit")
            put("labels", labels)
        if fc is not None and problems.ok("n_clusters", "clustered_layer", "layer_sets"):
            shapes = dict(zip(fc, zip(self.widths[1:], self.widths[:-1])))
            clustered = {self.clustered_layer, *(fc if "all" in self.layer_sets else self.layer_sets)}
            for layer in sorted(clustered):
                if self.n_clusters > min(shapes[layer]):
                    problems.add(f"MlpSettings.n_clusters = {self.n_clusters} blocks do not fit {layer} "
                                 f"({shapes[layer][0]} x {shapes[layer][1]}): lower n_clusters or widen the layer",
                                 "n_clusters", "widths", "clustered_layer", "layer_sets")
        problems.raise_any()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}



FIELDS = tuple(f.name for f in fields(MlpSettings))
"""The MLP study's settings: a preset's top-level keys."""
