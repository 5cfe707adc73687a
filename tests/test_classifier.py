"""The image classifiers' study (modclust.experiments.classifier): a new model family added in a
few lines gets every shared step. The CNN's own tests are in test_cnn_study.py."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from modclust.analysis import any_model as am
from modclust.core.checks import Problems, check_int
from modclust.experiments import classifier as cl
from modclust.experiments.study import StudyResult, run_study
from test_cnn_study import blob_images


@dataclass(frozen=True)
class BiasMlpSettings(cl.ClassifierSettings):
    """A family's settings: the shared ones, its width, and which parameters circuits may mask."""

    preset_section: ClassVar[str | None] = "bias_mlp"
    circuit_params: tuple[str, ...] = ("fc2.weight",)
    hidden: int = 16

    def check(self, problems: Problems) -> None:
        super().check(problems)
        with problems.about("hidden"):
            self.put("hidden", check_int("BiasMlpSettings.hidden", self.hidden, 1))

    def maskable_params(self) -> list[str]:
        return [f"fc{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]


class BiasMlp(cl.ClassifierStudy[BiasMlpSettings]):
    """A new family, whole: an MLP with biases, its two hidden layers clustered."""

    name = "MLP with biases"
    clustered_layers = ("fc1", "fc2")

    def build(self, seed: int, n_classes: int) -> nn.Module:
        torch.manual_seed(seed)
        h = self.settings.hidden
        return nn.Sequential(OrderedDict(fc1=nn.Linear(784, h), relu1=nn.ReLU(), fc2=nn.Linear(h, h),
                                         relu2=nn.ReLU(), fc3=nn.Linear(h, n_classes)))

    def view(self, model: nn.Module) -> nn.Sequential:
        return model  # type: ignore[return-value]  (already a Sequential of named modules)


def settings(**kw: object) -> BiasMlpSettings:
    base = dict(datasets=("mnist",), lambdas=(0.0, 5.0), main_lambda=5.0, seeds=(0, 1), n_clusters=2, epochs=2,
                lr=1e-2, batch_size=32, top_k=5, null_draws=2, search_per_class=5, mask_steps=5, batch_size_eval=64)
    base.update(kw)
    return BiasMlpSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def result() -> StudyResult:
    return run_study(BiasMlp(settings()), blob_images(), progress=False)


def test_a_new_family_gets_every_shared_step(result: StudyResult) -> None:
    assert [(r["lam"], r["seed"]) for r in result.records] == [(0.0, 0), (0.0, 1), (5.0, 0), (5.0, 1)]
    for seed in (0, 1):
        clustered, plain = result.records[2 + seed], result.records[seed]
        assert clustered["C_fc1"] > 0.9 and clustered["C_fc2"] > 0.9 > plain["C_fc2"]  # the loss acts on both
        assert plain["test_acc"] > 0.5 > result.untrained[seed]["test_acc"]  # it learned the blobs
    assert result.context["dataset"] == "mnist" and result.context["majority_acc"] == pytest.approx(0.1, abs=0.05)
    row = result.rows[0]
    for key in ("off_mean_fc1", "on_mean_fc2", "sem_fc1", "mi_fc2", "circuit_size", "circuit_balanced_agreement",
                "random_balanced_agreement", "spectral_c_fc2", "test_acc", "C_fc1"):
        assert key in row and row[key] == row[key], key
    assert result.runs[0]["circuits"]["n_entries"] == 16 * 16  # fc2.weight only
    assert set(result.summary) == {"tradeoff", "paired_accuracy", "untrained", "ablation", "circuits"}
    assert set(result.summary["ablation"]["5"]) == {"fc1", "fc2"}
    assert result.records[0]["layers"] == "fc1+fc2"


def test_the_shared_analyses_equal_the_hook_analyses_on_the_whole_model(result: StudyResult) -> None:
    """The cut views give the numbers of the whole network (biases included)."""
    study = BiasMlp(settings())
    data = blob_images()
    prepared = study.prepare(data)
    model = study.build(3, 10)
    x, y = data.test_x, data.test_y
    at = cl.cuts(model, x, study.clustered_layers)
    abl = cl.ablation_analysis(at, prepared.clusters, y, study.settings, 10)
    for layer in study.clustered_layers:
        whole = am.ablate(model, prepared.clusters.groups[layer], layer, x, y, 10)
        assert abl[layer]["off_acc"] == whole.off_acc and abl[layer]["on_acc"] == whole.on_acc


def test_a_family_says_what_circuits_may_mask() -> None:
    with pytest.raises(ValueError, match="must name distinct parameters of the model"):
        settings(circuit_params=("fc4.weight",))
    with pytest.raises(NotImplementedError, match="must say which parameters"):
        cl.ClassifierSettings(circuit_params=("fc1.weight",))
    with pytest.raises(ValueError, match="flat images"):
        run_study(BiasMlp(settings()), blob_images().__class__("mnist", torch.zeros(4, 1, 28, 28),
                                                                torch.zeros(4, dtype=torch.long),
                                                                torch.zeros(4, 1, 28, 28),
                                                                torch.zeros(4, dtype=torch.long)))
