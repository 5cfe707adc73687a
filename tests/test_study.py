"""The study template (modclust.experiments.study): what it does for any family, on a toy family
whose every number is known in advance."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

import pytest
import torch

from modclust.experiments.study import (Study, StudyResult, Trained, against, load_trained, run_study,
                                        save_trained, seed_column, seed_values, trained_path)


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

    def train(self, data: float, prepared: int, runs) -> list[Trained]:
        assert prepared == 7
        out = []
        for lam, seed in runs:
            model = torch.nn.Linear(1, 1, bias=False)
            with torch.no_grad():
                model.weight.fill_(lam + seed / 10 + data)
            out.append(Trained(model, {"lam": lam, "seed": seed, "w": float(model.weight.detach()), "history": [0, 1]}))
        return out

    def fresh(self, data: float, prepared: int, seed: int) -> torch.nn.Module:
        return torch.nn.Linear(1, 1, bias=False)

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
        def train(self, data: float, prepared: int, runs) -> list[Trained]:
            return super().train(data, prepared, runs)[:-1]

    with pytest.raises(RuntimeError, match="not the grid"):
        run_study(Short(ToySettings()), 0.0, progress=False)


def test_models_trained_elsewhere_are_saved_loaded_and_analysed_instead_of_trained(tmp_path) -> None:
    study = Toy(ToySettings(seeds=(0, 1)))
    runs = study.train(0.5, 7, study.grid()[::-1])  # any part of the grid, in the order given
    assert [(t.lam, t.seed) for t in runs] == study.grid()[::-1]
    files = save_trained(runs, tmp_path)
    assert files[0] == trained_path(tmp_path, 2.0, 1) == tmp_path / "lam2_seed1.pt"

    class Untrainable(Toy):
        def train(self, data: float, prepared: int, runs) -> list[Trained]:
            raise AssertionError("the template trained a study whose models were given")

    here = run_study(study, 0.5, progress=False)
    for trained in (tmp_path, str(tmp_path), load_trained(study, 0.5, 7, tmp_path)):
        there = run_study(Untrainable(study.settings), 0.5, progress=False, trained=trained)
        assert {**there.to_dict(), "seconds": None} == {**here.to_dict(), "seconds": None}
    loaded = load_trained(study, 0.5, 7, tmp_path, [(1.0, 0)])[0]
    assert loaded.record == runs[3].record and torch.equal(loaded.model.weight, runs[3].model.weight)
    with pytest.raises(RuntimeError, match="not the grid"):
        run_study(study, 0.5, progress=False, trained=runs)  # reversed: not the grid's order
    trained_path(tmp_path, 0.0, 1).unlink()
    with pytest.raises(FileNotFoundError, match=r"lambda=0, seed=1 at .*lam0_seed1\.pt: train it there"):
        run_study(study, 0.5, progress=False, trained=tmp_path)
    (tmp_path / "lam0_seed1.pt").write_bytes(trained_path(tmp_path, 0.0, 0).read_bytes())  # another run's file
    with pytest.raises(ValueError, match="holds run lambda=0.0, seed=0, not lambda=0, seed=1"):
        load_trained(study, 0.5, 7, tmp_path)
    payload = torch.load(trained_path(tmp_path, 1.0, 1), weights_only=True)
    payload["state_dict"]["weight"] += 1.0  # changed after it was written
    torch.save(payload, trained_path(tmp_path, 1.0, 1))
    with pytest.raises(ValueError, match="checksum does not match"):
        load_trained(study, 0.5, 7, tmp_path, [(1.0, 1)])
    trained_path(tmp_path, 2.0, 0).write_text("not a model")
    with pytest.raises(ValueError, match="not a readable trained model"):
        load_trained(study, 0.5, 7, tmp_path, [(2.0, 0)])

    class Frozen(Toy):
        fresh = Study.fresh

    with pytest.raises(NotImplementedError, match="Frozen cannot load trained models"):
        load_trained(Frozen(study.settings), 0.5, 7, tmp_path, [(2.0, 1)])


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
