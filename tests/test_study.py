"""The study template (modclust.experiments.study): what it does for any family, on a toy family
whose every number is known in advance."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

import pytest
import torch

from modclust.experiments.study import (Study, StudyResult, Trained, against, run_study, seed_column,
                                        seed_values)


@dataclass(frozen=True)
class ToySettings:
    lambdas: tuple[float, ...] = (0.0, 1.0, 2.0)
    main_lambda: float = 2.0
    seeds: tuple[int, ...] = (0, 1, 2)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple)
                else getattr(self, f.name) for f in fields(self)}


class Toy(Study[ToySettings, float, int]):
    """Each "model" is a 1 x 1 linear layer whose weight is lam + seed / 10 + data."""

    name = "toy"
    record_metrics = ("w",)

    def prepare(self, data: float) -> int:
        return 7  # handed to every later step

    def train(self, data: float, prepared: int) -> list[Trained]:
        assert prepared == 7
        out = []
        for lam, seed in self.grid():
            model = torch.nn.Linear(1, 1, bias=False)
            with torch.no_grad():
                model.weight.fill_(lam + seed / 10 + data)
            out.append(Trained(model, {"lam": lam, "seed": seed, "w": float(model.weight.detach()), "history": [0, 1]}))
        return out

    def analyse(self, data: float, prepared: int, run: Trained) -> dict[str, Any]:
        w = float(run.model.weight.detach())
        return {"detail": {"twice": 2 * w}, "square": w * w, "null": w - 1.0 if run.seed else None}

    def row(self, analysis: dict[str, Any]) -> dict[str, Any]:
        return {"square": analysis["square"], "null": analysis["null"]}

    def untrained(self, data: float, prepared: int, seed: int) -> dict[str, Any] | None:
        return None if seed == 2 else {"lam": 0.0, "seed": seed, "w": data}

    def context(self, data: float, prepared: int) -> dict[str, Any]:
        return {"dataset": "toy", "offset": data}


def test_the_template_trains_once_analyses_the_two_lambdas_and_summarises() -> None:
    res = run_study(Toy(ToySettings()), 0.5, progress=False)
    assert [(r["lam"], r["seed"]) for r in res.records] == [(lam, s) for lam in (0.0, 1.0, 2.0) for s in (0, 1, 2)]
    assert [(r["lam"], r["seed"]) for r in res.runs] == [(lam, s) for lam in (0.0, 2.0) for s in (0, 1, 2)]
    row = res.rows[4]  # lambda 2, seed 1: w = 2.6
    assert row == {"lam": 2.0, "seed": 1, "square": pytest.approx(2.6 ** 2), "null": pytest.approx(1.6),
                   "w": pytest.approx(2.6)}
    assert res.runs[4]["detail"] == {"twice": pytest.approx(5.2)}
    assert [u["seed"] for u in res.untrained] == [0, 1]  # seed 2's untrained network is not measured
    tradeoff = res.summary["tradeoff"]  # the default summary: record_metrics by lambda
    assert [(t["lam"], t["n"]) for t in tradeoff] == [(0.0, 3), (1.0, 3), (2.0, 3)]
    assert tradeoff[1]["w"]["mean"] == pytest.approx(1.6)
    assert res.context == {"dataset": "toy", "offset": 0.5} and set(res.seconds) == {"train", "analyses"}
    assert res.values("w", 2.0) == {0: pytest.approx(2.5), 1: pytest.approx(2.6), 2: pytest.approx(2.7)}
    assert res.values("null", 0.0) == {1: pytest.approx(-0.4), 2: pytest.approx(-0.3)}  # seed 0's None left out
    assert res.values("w", of="untrained") == {0: 0.5, 1: 0.5}


def test_a_result_writes_and_reads_its_json() -> None:
    res = run_study(Toy(ToySettings(seeds=(4, 3))), 0.0, progress=False)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["dataset"] == "toy" and d["study"]["seeds"] == [4, 3]  # the context at the top level
    back = StudyResult.from_dict(d)
    assert back == res
    with pytest.raises(ValueError, match="not a study result"):
        StudyResult.from_dict({"records": []})
    with pytest.raises(ValueError, match="may not use the result's own keys"):
        StudyResult(study={}, records=[], runs=[], rows=[], context={"rows": 1}).to_dict()


def test_a_family_that_trains_another_grid_is_stopped() -> None:
    class Short(Toy):
        def train(self, data: float, prepared: int) -> list[Trained]:
            return super().train(data, prepared)[:-1]

    with pytest.raises(RuntimeError, match="not the grid"):
        run_study(Short(ToySettings()), 0.0, progress=False)


def test_seed_values_and_against() -> None:
    rows = [{"lam": 1.0, "seed": 2, "a": 3.0, "b": 1.0}, {"lam": 1.0, "seed": 0, "a": 5.0, "b": 1.0},
            {"lam": 1.0, "seed": 1, "a": math.nan, "b": 0.0}, {"lam": 0.0, "seed": 0, "a": 9.0, "b": None}]
    assert seed_values(rows, "a", 1.0) == {0: 5.0, 2: 3.0} and list(seed_values(rows, "a", 1.0)) == [0, 2]
    assert seed_column(rows[:3], "a") == [5.0, 3.0]  # every lambda, in seed order
    assert seed_values(rows, "missing", 1.0) == {}
    with pytest.raises(ValueError, match=r"seeds \[0\] have several rows: pick one lambda"):
        seed_values(rows, "a")
    out = against(rows, {"a": "b"}, [0.0, 1.0])
    assert out["0.0"]["a"]["n"] == 0 and out["0.0"]["a"]["direction"] == "indistinguishable"
    one = out["1.0"]["a"]  # a - b over the runs where both are defined: 4 and 2 (seed 1's a is nan)
    assert one["null"] == "b" and one["n"] == 2 and one["difference"]["mean"] == 3.0
