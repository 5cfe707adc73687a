"""The study template: one model family trained over a grid of lambdas x seeds, then measured.

A model family is a :class:`Study` subclass. It provides

- its **settings**: a frozen dataclass, the only home of its defaults, checked on construction,
  with ``seeds``, ``lambdas`` (0, the unclustered control, among them) and ``main_lambda``;
- its **training**: the (lambda, seed) runs of :meth:`Study.grid` it is given, trained once
  (batched where the family can), each as a :class:`Trained` model with a JSON-ready training
  record; and the seed's untrained model (:meth:`Study.fresh`), into which a saved model loads;
- its **analyses** of one trained model (:meth:`Study.analyse`), and the scalars of them that are
  summarised over seeds (:meth:`Study.row`);
- optionally the **untrained** network of each seed, measured as the trivial baseline
  (:meth:`Study.untrained`), and **summaries** of its own (:meth:`Study.summarise`).

The template (:func:`run_study`) does the rest the same way for every family: it trains the grid,
analyses the unclustered and the main lambda's models of every seed, measures the untrained
networks, gathers one flat row of scalars per analysed model, summarises over seeds, and times
each part. The result is a :class:`StudyResult`, which writes and reads its JSON; the paper's
comparisons read its seeds' values (:meth:`StudyResult.values`), paired by seed.

Models trained elsewhere (a job array, :mod:`modclust.pipeline.launch`) are saved one file per
run (:func:`save_trained`: the model's ``state_dict`` and its record, with a content checksum)
and given to :func:`run_study` as ``trained``: the template loads them into the family's own
untrained models (:func:`load_trained`) and analyses them instead of training.

The CNN (:mod:`modclust.experiments.cnn_study`, through the image-classifier analyses of
:mod:`modclust.experiments.classifier`) and modular addition
(:mod:`modclust.experiments.modular_addition`) are studies. The MLP's four stages predate the
template and keep their own results.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from modclust.core.checkpoint import content_checksum
from modclust.core.io import write_atomic
from modclust.core.progress import track
from modclust.core.stats import direction, mean_ci
from modclust.experiments.grid import summary_table

S = TypeVar("S")
"""A study's settings dataclass."""

D = TypeVar("D")
"""What a study trains and measures on (a :class:`~modclust.core.data.Dataset`; None when the
family makes its own data per seed)."""

P = TypeVar("P")
"""What a study prepares once per data before training (:meth:`Study.prepare`), e.g. its clusters."""


@dataclass
class Trained:
    """One trained model of the grid and its JSON-ready training record (which holds ``lam`` and
    ``seed``)."""

    model: nn.Module
    record: dict[str, Any]

    @property
    def lam(self) -> float:
        return float(self.record["lam"])

    @property
    def seed(self) -> int:
        return int(self.record["seed"])


class Study(ABC, Generic[S, D, P]):
    """What a model family provides to :func:`run_study` (see the module doc).

    ``record_metrics``: the training record's scalars that are summarised by lambda over every
    trained run (the trade-off) and copied into each analysed model's row.
    """

    name: ClassVar[str]
    """The family's name in progress bars and messages."""

    record_metrics: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: S) -> None:
        self.settings = settings

    # --- what the family provides ----------------------------------------------------------------

    def prepare(self, data: D) -> P:
        """What the training and the analyses of ``data`` share, computed once (default: None)."""
        return None  # type: ignore[return-value]

    @abstractmethod
    def train(self, data: D, prepared: P, runs: Sequence[tuple[float, int]]) -> list[Trained]:
        """The (lambda, seed) ``runs`` (the whole :meth:`grid`, or a part of it: a chunk of a job
        array), each trained once, in the order given. A run trains the same whatever else is
        trained with it (up to float rounding where runs are batched)."""

    def fresh(self, data: D, prepared: P, seed: int) -> nn.Module:
        """The seed's untrained model, on the device the family trains on: a trained run's saved
        ``state_dict`` loads into it (:func:`load_trained`; default: the family cannot load models)."""
        raise NotImplementedError(f"{type(self).__name__} cannot load trained models: give it a fresh()")

    def restore(self, data: D, prepared: P, model: nn.Module, record: dict[str, Any]) -> Trained:
        """A loaded run as :meth:`train` gives it (default: the model and its record); a family whose
        analyses read more than the model rebuilds it here, from the record and the seed."""
        return Trained(model, record)

    @abstractmethod
    def analyse(self, data: D, prepared: P, run: Trained) -> dict[str, Any]:
        """Every analysis of one trained model: a JSON-ready dict (details and scalars)."""

    def row(self, analysis: Mapping[str, Any]) -> dict[str, Any]:
        """The scalars of one model's analyses that are summarised over seeds (default: none)."""
        return {}

    def untrained(self, data: D, prepared: P, seed: int) -> dict[str, Any] | None:
        """The untrained network of ``seed`` measured as the trivial baseline (default: not measured)."""
        return None

    def context(self, data: D, prepared: P) -> dict[str, Any]:
        """Facts about the data the paper states (its name, classes, majority accuracy; default none)."""
        return {}

    def summarise(self, result: StudyResult) -> dict[str, Any]:
        """Summaries over seeds (default: the trade-off table of :attr:`record_metrics` by lambda)."""
        return {"tradeoff": summary_table(result.records, metrics=list(self.record_metrics), by=("lam",))}

    # --- what the template derives from the settings ---------------------------------------------

    @property
    def lambdas(self) -> list[float]:
        """The grid's lambdas, ascending."""
        return sorted(float(v) for v in self.settings.lambdas)  # type: ignore[attr-defined]

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.settings.seeds]  # type: ignore[attr-defined]

    @property
    def analysed_lambdas(self) -> tuple[float, float]:
        """The lambdas whose models are analysed: the unclustered 0 and the main lambda."""
        return 0.0, float(self.settings.main_lambda)  # type: ignore[attr-defined]

    def grid(self) -> list[tuple[float, int]]:
        """Every (lambda, seed) trained, lambda-major."""
        return [(lam, seed) for lam in self.lambdas for seed in self.seeds]


@dataclass
class StudyResult:
    """One study's result on one data: JSON-ready throughout, written and read by
    :meth:`to_dict` / :meth:`from_dict`.

    ``records``: every trained run's training record (each with ``lam`` and ``seed``), in the
    grid's order. ``runs``: each analysed model's analyses (``lam``, ``seed`` and the study's
    :meth:`Study.analyse` dict). ``rows``: each analysed model's scalars (``lam``, ``seed``, the
    study's :meth:`Study.row` and the training record's :attr:`Study.record_metrics`).
    ``untrained``: the untrained network of each seed, when the study measures it. ``context``:
    facts about the data (:meth:`Study.context`), written at the JSON's top level.
    """

    study: dict[str, Any]
    records: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    untrained: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the context's keys, then one key per field (but ``context``)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "context"}
        clash = sorted(set(own) & set(self.context))
        if clash:
            raise ValueError(f"a study's context may not use the result's own keys {clash}")
        return {**self.context, **own}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyResult:
        """The result :meth:`to_dict` wrote (a key it does not know goes back into the context)."""
        names = [f.name for f in fields(cls) if f.name != "context"]
        missing = [n for n in ("study", "records", "runs", "rows") if n not in d]
        if missing:
            raise ValueError(f"not a study result: it lacks {missing}; write it with StudyResult.to_dict")
        return cls(**{n: d[n] for n in names if n in d}, context={k: v for k, v in d.items() if k not in names})

    def values(self, key: str, lam: float | None = None, of: str = "rows") -> dict[int, float]:
        """The seeds' values of ``key`` in ``of`` (``"rows"``, ``"records"`` or ``"untrained"``) at
        ``lam`` (every lambda when None), by seed; undefined ones (missing, None, nan) left out."""
        return seed_values(getattr(self, of), key, lam)


def seed_values(rows: Sequence[Mapping[str, Any]], key: str, lam: float | None = None) -> dict[int, float]:
    """``{seed: value of key}`` over the rows at ``lam`` (every row when None), in seed order;
    rows where the value is missing, None or nan are left out. A seed with two rows there is an
    error (give ``lam``), not a silent choice between them."""
    picked = sorted((r for r in rows if lam is None or float(r["lam"]) == float(lam)), key=lambda r: r["seed"])
    seeds = [int(r["seed"]) for r in picked]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {sorted({s for s in seeds if seeds.count(s) > 1})} have several rows"
                         + ("" if lam is not None else ": pick one lambda (lam=...)"))
    return {int(r["seed"]): float(r[key]) for r in picked if _defined(r.get(key))}


def seed_column(rows: Sequence[Mapping[str, Any]], key: str, lam: float | None = None) -> list[float]:
    """The values of :func:`seed_values`, in seed order."""
    return list(seed_values(rows, key, lam).values())


def against(rows: Sequence[Mapping[str, Any]], pairs: Mapping[str, str], lambdas: Sequence[float]
            ) -> dict[str, dict[str, Any]]:
    """Each measure against its null, control or baseline, per run: for every lambda and every
    ``measure: null`` of ``pairs``, the 95 % interval of ``row[measure] - row[null]`` over the
    runs where both are defined (not None, not nan), and its :func:`~modclust.core.stats.direction`.
    ``{str(lam): {measure: {"null", "n", "difference", "direction"}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for lam in lambdas:
        at = sorted((r for r in rows if float(r["lam"]) == float(lam)), key=lambda r: r["seed"])
        res = {}
        for key, base in pairs.items():
            diffs = [float(r[key]) - float(r[base]) for r in at if _defined(r.get(key)) and _defined(r.get(base))]
            iv = mean_ci(diffs) if diffs else None
            res[key] = {"null": base, "n": len(diffs), "difference": None if iv is None else iv.to_dict(),
                        "direction": "indistinguishable" if iv is None else direction(iv)}
        out[str(lam)] = res
    return out


def _defined(v: Any) -> bool:
    return v is not None and v == v


TRAINED_FORMAT = "modclust-trained-1"
"""The format of a saved :class:`Trained` (:func:`save_trained`)."""


def trained_path(folder: str | os.PathLike[str], lam: float, seed: int) -> Path:
    """Where run (lam, seed) of a study is saved in ``folder``: ``lam<lam>_seed<seed>.pt``."""
    return Path(folder) / f"lam{float(lam):g}_seed{int(seed)}.pt"


def save_trained(runs: Sequence[Trained], folder: str | os.PathLike[str]) -> list[Path]:
    """Each run in ``folder`` (:func:`trained_path`), written atomically: its model's ``state_dict``
    (on the CPU) and its JSON-ready record, with a content checksum that :func:`load_trained`
    verifies. Returns the files."""
    out = []
    for run in runs:
        payload: dict[str, Any] = {"format": TRAINED_FORMAT, "record": run.record,
                                   "state_dict": {k: v.detach().cpu() for k, v in run.model.state_dict().items()}}
        payload["checksum"] = content_checksum(payload)
        out.append(write_atomic(trained_path(folder, run.lam, run.seed), lambda tmp, p=payload: torch.save(p, tmp)))
    return out


def load_trained(study: Study[Any, D, P], data: D, prepared: P, folder: str | os.PathLike[str],
                 runs: Sequence[tuple[float, int]] | None = None) -> list[Trained]:
    """The ``runs`` (default: the study's whole grid) saved in ``folder`` by :func:`save_trained`,
    each loaded into the family's untrained model of its seed (:meth:`Study.fresh`) and
    restored (:meth:`Study.restore`). A missing, damaged or changed file, or one of another run,
    is an error that names it."""
    out = []
    for lam, seed in study.grid() if runs is None else runs:
        path = trained_path(folder, lam, seed)
        if not path.exists():
            raise FileNotFoundError(f"no trained model of {study.name} run lambda={lam:g}, seed={seed} at {path}: "
                                    "train it there (python -m modclust.pipeline launch) or leave trained out")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # whatever torch's reader raises on a file it cannot parse
            raise ValueError(f"{path} is not a readable trained model ({type(err).__name__}: {err})") from err
        if not isinstance(payload, dict) or payload.get("format") != TRAINED_FORMAT:
            raise ValueError(f"{path} is not a trained model of format {TRAINED_FORMAT!r} (write it with save_trained)")
        if payload.get("checksum") != content_checksum(payload):
            raise ValueError(f"{path}: content checksum does not match: the file was changed or corrupted "
                             "after it was written; train it again")
        record = payload["record"]
        if (float(record["lam"]), int(record["seed"])) != (float(lam), int(seed)):
            raise ValueError(f"{path} holds run lambda={record['lam']}, seed={record['seed']}, not "
                             f"lambda={lam:g}, seed={seed}")
        model = study.fresh(data, prepared, seed)
        model.load_state_dict(payload["state_dict"])
        out.append(study.restore(data, prepared, model, record))
    return out


def run_study(study: Study[Any, D, Any], data: D, progress: bool = True,
              trained: Sequence[Trained] | str | os.PathLike[str] | None = None) -> StudyResult:
    """Train the study's grid on ``data``, analyse its models and summarise (see the module doc).

    ``trained``: the grid's models trained elsewhere, as :class:`Trained` runs in the grid's
    order or a folder they were saved in (:func:`save_trained`); they are analysed instead of
    training (``seconds["train"]`` is then the time to load them).
    """
    t0 = time.perf_counter()
    prepared = study.prepare(data)
    if trained is None:
        trained = study.train(data, prepared, study.grid())
    elif isinstance(trained, (str, os.PathLike)):
        trained = load_trained(study, data, prepared, trained)
    got = [(t.lam, t.seed) for t in trained]
    if got != study.grid():
        raise RuntimeError(f"{type(study).__name__}: the trained runs are {got}, not the grid {study.grid()}")
    t_train = time.perf_counter() - t0
    records = [t.record for t in trained]
    runs, rows = [], []
    picked = [t for t in trained if t.lam in study.analysed_lambdas]
    for t in track(picked, desc=f"{study.name}: analyses", disable=not progress):
        analysis = study.analyse(data, prepared, t)
        runs.append({"lam": t.lam, "seed": t.seed, **analysis})
        rows.append({"lam": t.lam, "seed": t.seed, **study.row(analysis),
                     **{k: t.record[k] for k in study.record_metrics if k in t.record}})
    untrained = []
    for seed in track(study.seeds, desc=f"{study.name}: untrained networks", disable=not progress):
        u = study.untrained(data, prepared, seed)
        if u is not None:
            untrained.append(u)
    result = StudyResult(study=study.settings.to_dict(), records=records, runs=runs, rows=rows,  # type: ignore[attr-defined]
                         untrained=untrained, context=study.context(data, prepared))
    result.seconds = {"train": t_train, "analyses": time.perf_counter() - t0 - t_train}
    result.summary = study.summarise(result)
    return result
