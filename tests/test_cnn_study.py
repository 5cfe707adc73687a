"""Stage 7 (modclust.experiments.cnn_study, modclust.paper.classifier_numbers) on tiny synthetic images: the
CNN's cut views give the whole network's numbers, the study trains and measures what it says, its
results are JSON-ready, and the paper's macros, tables and figures follow from them."""

from __future__ import annotations

import json
import math
import re
from functools import partial

import matplotlib.pyplot as plt
import pytest
import torch

from modclust.analysis import any_model as am
from modclust.analysis.circuits import Circuit
from modclust.core import paths
from modclust.core.checks import SettingsError
from modclust.core.cnn import VIEW_LAYERS, cnn_as_sequential, make_cnn
from modclust.core.data import Dataset
from modclust.experiments import classifier as cl
from modclust.experiments import cnn_study as cs
from modclust.experiments.study import load_trained, run_study, save_trained
from modclust.pipeline.presets import settings_from_parameters
from modclust.experiments.grid import paired_difference
from modclust.paper import classifier_figures
from modclust.paper import classifier_numbers as cn

SMALL = dict(channels=(4, 8), hidden=16, n_clusters=2)


def blob_images(n_train: int = 400, n_test: int = 200, seed: int = 0) -> Dataset:
    """Flat 28 x 28 images whose label (0-9) is which of ten 7 x 7 squares holds a bright blob, plus noise."""
    g = torch.Generator().manual_seed(seed)
    corners = [(r, c) for r in range(0, 28, 7) for c in range(0, 28, 7)][:10]

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 10
        y = y[torch.randperm(n, generator=g)]
        x = 0.3 * torch.randn(n, 28, 28, generator=g)
        for i, label in enumerate(y.tolist()):
            r, c = corners[label]
            x[i, r:r + 7, c:c + 7] += 1.5
        return x.flatten(1), y

    (tx, ty), (vx, vy) = split(n_train), split(n_test)
    return Dataset("mnist", tx, ty, vx, vy)


def tiny_study(**kw: object) -> cs.CnnSettings:
    base = dict(lambdas=(0.0, 5.0), main_lambda=5.0, seeds=(0, 1), epochs=2, lr=1e-2, batch_size=32, top_k=5,
                null_draws=2, search_per_class=5, mask_steps=5, batch_size_eval=64, **SMALL)
    base.update(kw)
    return cs.CnnSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return blob_images()


FAMILY = cs.Cnn(tiny_study())
SOURCE = "notebooks/07_cnn.ipynb"


def cnn_macros(result: dict) -> dict[str, str]:
    return cn.classifier_macros(result, FAMILY, SOURCE).items


@pytest.fixture(scope="module")
def result(data: Dataset) -> dict:
    return cl.run_datasets(FAMILY, [data], progress=False)


def test_the_view_and_its_cuts_compute_the_cnn(data: Dataset) -> None:
    model = make_cnn(3, (4, 8), 16)
    x = data.test_x[:50]
    view = cnn_as_sequential(model)
    assert list(view._modules) == list(VIEW_LAYERS)
    torch.testing.assert_close(view(x), model(x), rtol=0, atol=0)
    assert dict(view.named_parameters()).keys() == dict(model.named_parameters()).keys()
    assert view.fc1.weight is model.fc1.weight  # its own modules, not copies
    before, rest = cl.split_at(view, "conv2")
    torch.testing.assert_close(rest(before(x)), model(x), rtol=0, atol=0)
    assert "fc2.weight" in dict(rest.named_parameters()) and "conv1.weight" not in dict(rest.named_parameters())
    at = cl.cuts(view, x, ["fc1", "conv2", "images"], batch_size=7)
    assert list(at) == ["images", "conv2", "fc1"]
    for layer, (tail, inputs) in at.items():
        torch.testing.assert_close(tail(inputs), model(x), msg=layer)
    assert at["conv2"][1].shape == (50, 4, 14, 14) and at["fc1"][1].shape == (50, 8 * 49)
    with pytest.raises(ValueError, match="cannot cut"):
        cl.split_at(view, "fc3")
    with pytest.raises(ValueError, match="cannot cut the model"):
        cl.cuts(view, x, ["relu9"])
    with pytest.raises(TypeError, match="takes a modclust.core.cnn.CNN"):
        cnn_as_sequential(torch.nn.Linear(2, 2))


def test_the_clusters_line_up_through_the_flatten(data: Dataset) -> None:
    model = make_cnn(0, (4, 8), 16)
    clusters = cs.Cnn(tiny_study()).unit_clusters(model, data.train_x)
    parts = clusters.partitions(model)
    assert parts["conv2"].shape == (8, 4) and parts["fc1"].shape == (16, 8 * 49)
    assert parts["fc1"].cols[1] == tuple(range(4 * 49, 8 * 49))  # conv2's channels 4-7, flattened
    cs_ = cl.layer_cs(model, clusters)
    assert set(cs_) == {"C_conv2", "C_fc1"} and all(0.3 < v < 0.7 for v in cs_.values())  # about 1/k at init


def test_analyses_on_cuts_equal_the_whole_network(data: Dataset) -> None:
    """The stage measures on the cut views; every number equals the hook analyses on the whole CNN."""
    model = make_cnn(1, (4, 8), 16)
    clusters = cs.Cnn(tiny_study()).unit_clusters(model, data.train_x)
    study = tiny_study()
    x, y = data.test_x, data.test_y
    view = cnn_as_sequential(model)
    at = cl.cuts(view, x, cs.Cnn.clustered_layers)
    abl = cl.ablation_analysis(at, clusters, y, study, 10)
    for layer in cs.Cnn.clustered_layers:
        whole = am.ablate(view, clusters.groups[layer], layer, x, y, 10)
        assert abl[layer]["off_acc"] == whole.off_acc and abl[layer]["on_classwise"] == whole.on_classwise
        assert abl[layer]["order"] == sorted(range(2), key=lambda c: whole.off_acc[c])
    sem = cl.semanticity_analysis(at, clusters, y, study, 10)
    for layer in cs.Cnn.clustered_layers:
        whole = am.label_semanticity(view, layer, x, y, k=5, post=torch.relu)
        assert sem[layer]["semanticity"] == pytest.approx(whole.score, abs=1e-12)
        assert sem[layer]["reduce"] == ("mean" if layer == "conv2" else "none") and sem[layer]["post"] == "relu"
        sel = am.unit_selectivity(view, layer, x, y, post=torch.relu)
        assert sem[layer]["mean_mi"] == pytest.approx(sel.mean_mi, abs=1e-6)
    # a circuit judged on the cut is judged the same on the whole network
    circ = cl.circuit_analysis(view, data.train_x[:60], data.train_y[:60], x, y, study, 10, seed=1)
    assert circ["params"] == ["fc1.weight", "fc2.weight"] and circ["n_entries"] == 16 * 392 + 10 * 16
    assert [lab["label"] for lab in circ["labels"]] == list(range(10))
    labels = [0, 7]  # the whole network recomputes the convolutions at every mask step: two labels suffice
    found = am.mask_circuits(view, ["fc1.weight", "fc2.weight"], data.train_x[:60], data.train_y[:60],
                             labels=labels, objective="margin", sparsity=study.mask_sparsity,
                             steps=study.mask_steps, lr=study.mask_lr)
    for c in found:
        lab = circ["labels"][c.label]
        assert lab["size"] == c.size
        whole = am.faithfulness(view, c, x, y).to_dict()
        assert lab["faithfulness"]["balanced_agreement"] == pytest.approx(whole["balanced_agreement"], nan_ok=True)


def test_random_circuits_match_the_size_and_follow_their_seed() -> None:
    model = make_cnn(0, (4, 8), 16)
    params = dict(model.named_parameters())
    kept = {"fc1.weight": torch.rand(16, 392) < 0.1, "fc2.weight": torch.rand(10, 16) < 0.5}
    like = Circuit(label=3, baseline="mask", threshold=0.5, layers=list(kept), kept=kept, full_loss=0.0,
                      final_loss=0.0, objective="margin")
    a, b, c = (cl.random_circuit(like, params, s) for s in (7, 7, 8))
    assert a.size_per_layer == like.size_per_layer and a.label == 3 and a.objective == "margin"
    assert all(torch.equal(a.kept[n], b.kept[n]) for n in kept)
    assert not torch.equal(a.kept["fc1.weight"], c.kept["fc1.weight"])
    assert a.kept["fc1.weight"].shape == (16, 392)


def test_small_helpers() -> None:
    assert cl.majority_accuracy(torch.tensor([0, 1, 1, 2]), 3) == 0.5
    full = [1.0, 1.0, 1.0]
    assert cl.class_spread(full, [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]) == 0.0  # an even loss has no spread
    assert cl.class_spread(full, [[0.0, 1.0, 1.0]]) == pytest.approx(torch.tensor([1.0, 0, 0]).std(unbiased=False))


def test_user_mistakes_get_one_clear_message() -> None:
    with pytest.raises(ValueError, match="must hold 0"):
        cs.CnnSettings(lambdas=(1.0, 5.0), main_lambda=5.0)
    with pytest.raises(ValueError, match="must hold 0"):
        cs.CnnSettings(lambdas=(0.0, 1.0), main_lambda=5.0)
    with pytest.raises(ValueError, match="two ints"):
        cs.CnnSettings(channels=(4, 8, 16))
    with pytest.raises(ValueError, match="does not fit"):
        cs.CnnSettings(channels=(4, 8), n_clusters=6)
    with pytest.raises(ValueError, match="circuit_params must name"):
        cs.CnnSettings(circuit_params=("fc3.weight",))
    with pytest.raises(ValueError, match="at least 2 shuffled"):
        cs.CnnSettings(null_draws=1)
    study = settings_from_parameters(cs.CnnSettings, {"cnn_lambdas": [5.0, 0.0], "cnn_main_lambda": 5,
                                                      "cnn_seeds": [1, 2]})
    assert study.lambdas == (0.0, 5.0) and study.seeds == (1, 2) and study.main_lambda == 5.0
    with pytest.raises(ValueError, match="seeds lists 1 more than once, which would count a run twice"):
        cs.CnnSettings(seeds=(1, 1, 2))
    with pytest.raises(ValueError, match="lambdas lists 5.0 more than once"):
        cs.CnnSettings(lambdas=(5.0, 0.0, 5.0))
    with pytest.raises(ValueError, match=r"datasets item must be one of \['mnist', 'fashion-mnist'\], got 'cifar'"):
        cs.CnnSettings(datasets=("cifar",))
    with pytest.raises(SettingsError) as info:  # every problem at once, each with its field
        cs.CnnSettings(channels=(0, 16), null_draws=1, seeds=())
    assert [fields for fields, _ in info.value.problems] == [("seeds",), ("null_draws",), ("channels",)]
    with pytest.raises(ValueError, match="flat images"):
        run_study(cs.Cnn(tiny_study()), Dataset("mnist", torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long),
                                                torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="at least one dataset"):
        cl.run_datasets(cs.Cnn(tiny_study()), [])
    with pytest.raises(TypeError, match="takes CnnSettings"):
        cs.Cnn(tiny_study().to_dict())  # type: ignore[arg-type]


def test_the_study_trains_and_measures(result: dict) -> None:
    res = result["results"]["mnist"]
    assert result["datasets"] == ["mnist"] and res["n_train"] == 400 and res["n_test"] == 200
    recs = res["records"]
    assert sorted((r["lam"], r["seed"]) for r in recs) == [(0.0, 0), (0.0, 1), (5.0, 0), (5.0, 1)]
    by = {(r["lam"], r["seed"]): r for r in recs}
    for seed in (0, 1):
        assert by[(5.0, seed)]["C_fc1"] > 0.9 > by[(0.0, seed)]["C_fc1"]  # the loss clusters fc1
        assert by[(5.0, seed)]["C_conv2"] > by[(0.0, seed)]["C_conv2"]
        assert by[(0.0, seed)]["test_acc"] > 0.5 > max(u["test_acc"] for u in res["untrained"])  # it learned
    assert all(abs(u["C_fc1"] - 0.5) < 0.05 for u in res["untrained"])  # the untrained baseline: about 1/k
    assert len(res["runs"]) == 4 and len(res["rows"]) == 4 and len(res["untrained"]) == 2
    row = res["rows"][0]
    for key, *_ in cn.measures(cs.Cnn.layer_words):  # every row of the paper's measure table
        assert key in row, key
    assert row["circuit_size"] <= res["runs"][0]["circuits"]["n_entries"]
    assert 0 <= row["circuit_constant_labels"] <= 10
    summary = res["summary"]
    assert [r["lam"] for r in summary["tradeoff"]] == [0.0, 5.0]
    assert summary["paired_accuracy"][0]["lam"] == 5.0 and summary["paired_accuracy"][0]["n"] == 2
    assert set(summary["untrained"]) == {"test_acc", "C_conv2", "C_fc1", *(f"{key}_{layer}" for layer in ("conv2", "fc1") for key in cl.UNTRAINED_KEYS)}
    ranked = summary["ablation"]["5"]["fc1"]
    for off in ranked["off_acc"]:
        assert off == sorted(off)  # ranked by importance: lowest OFF accuracy first
    assert len(summary["circuits"]["0"]["balanced_agreement"]) == 2
    assert res["study"]["channels"] == [4, 8]
    json.loads(json.dumps(result))  # JSON-ready


def test_models_trained_elsewhere_are_analysed_as_if_trained_here(result: dict, data: Dataset, tmp_path) -> None:
    """The grid's models saved (as a launch's jobs save them) and given to the stage: the same result."""
    prepared = FAMILY.prepare(data)
    save_trained(FAMILY.train(data, prepared, FAMILY.grid()), cl.dataset_folder(tmp_path, "mnist"))
    again = cl.run_datasets(FAMILY, [data], progress=False, trained=tmp_path)
    for name in ("mnist",):
        assert {**again["results"][name], "seconds": None} == {**result["results"][name], "seconds": None}
    model = load_trained(FAMILY, data, prepared, tmp_path / "mnist", [(5.0, 1)])[0].model
    assert isinstance(model, type(make_cnn(0))) and model.conv2.weight.shape == (8, 4, 3, 3)
    with pytest.raises(FileNotFoundError, match="no trained model of CNN run lambda=0, seed=0"):
        cl.run_datasets(FAMILY, [data], progress=False, trained=tmp_path / "elsewhere")


def test_the_study_is_deterministic() -> None:
    data = blob_images(120, 60, seed=1)
    study = tiny_study(seeds=(3,), search_per_class=3, mask_steps=2)
    a, b = (run_study(cs.Cnn(study), data, progress=False) for _ in range(2))
    assert a.records == b.records and a.rows == b.rows and a.untrained == b.untrained


def test_macros_tables_and_sentences_follow_the_data(result: dict, tmp_path) -> None:
    macros = cnn_macros(result)
    assert all(name.startswith("Cnn") and name.isalpha() for name in macros)
    assert macros["CnnSeeds"] == "2" and macros["CnnMainLambda"] == "5" and macros["CnnDatasets"] == "MNIST"
    res = result["results"]["mnist"]
    c = [r["C_fc1"] for r in res["records"] if r["lam"] == 5.0]
    assert macros["CnnMnistCFcMain"].startswith(f"{sum(c) / 2:.3f}")
    assert "\\begin{tabular}" in macros["CnnTradeoffTable"] and "MNIST" in macros["CnnMeasureTable"]
    # accuracy and circuit size are primary: their sentences are written at compile time
    assert macros["CnnAccSentences"].startswith("\\ClaimCnnAccMnistSentence{}")
    assert "\\ClaimCnnCircuitMnistSentence{}" in macros["CnnCircuitsSentences"]
    records = {r["key"]: r for r in cn.primary_records(result, FAMILY)}
    assert records["CnnAccFashion"]["missing"] == "this preset does not run Fashion-MNIST"
    acc = {lam: {r["seed"]: r["test_acc"] for r in res["records"] if r["lam"] == lam} for lam in (5.0, 0.0)}
    assert records["CnnAccMnist"]["a"] == [acc[5.0][s] for s in sorted(acc[5.0])]
    assert records["CnnAccMnist"]["b"] == [acc[0.0][s] for s in sorted(acc[0.0])]
    assert "constant classifier" in macros["CnnCircuitsSentences"]
    path = cn.classifier_macros(result, FAMILY, SOURCE).write(tmp_path / "cnn.tex")
    text = path.read_text()
    assert text.startswith("% Generated by the paper pipeline (notebooks/07_cnn.ipynb)")
    assert text.count("\\newcommand") == len(macros)


def test_the_section_needs_the_study_that_made_the_result(result: dict) -> None:
    with pytest.raises(ValueError, match="other settings than the CNN study given"):
        cn.classifier_macros(result, cs.Cnn(tiny_study(mask_steps=6)), SOURCE)


def test_a_flipped_result_flips_the_sentence(result: dict) -> None:
    """The direction words come from the data: make the clustered models clearly less accurate."""
    flipped = json.loads(json.dumps(result))
    res = flipped["results"]["mnist"]
    for r in res["records"]:
        if r["lam"] == 5.0:
            r["test_acc"] = 0.1 + 0.01 * r["seed"]
        else:
            r["test_acc"] = 0.9 + 0.01 * r["seed"]
    for r in res["rows"]:
        r["test_acc"] = next(x["test_acc"] for x in res["records"] if (x["lam"], x["seed"]) == (r["lam"], r["seed"]))
    res["summary"]["paired_accuracy"] = paired_difference(res["records"], "test_acc")
    rec = next(r for r in cn.primary_records(flipped, FAMILY) if r["key"] == "CnnAccMnist")
    assert all(a < b for a, b in zip(rec["a"], rec["b"]))
    verdicts = cn.classifier_verdicts(res, FAMILY)
    assert verdicts["test_acc"].direction == "lower"
    # a table cell is the verdict the sentences read: the primary one's macro (written after the
    # Holm correction, as its sentence is), an exploratory one's own verdict
    table = cn.measure_table(flipped, FAMILY).splitlines()
    row = next(line for line in table if line.startswith("test accuracy"))
    assert row.endswith("\\ClaimCnnAccMnistCell \\\\")
    row = next(line for line in table if line.startswith("acc., one conv2 cluster OFF"))
    assert row.endswith(verdicts["off_mean_conv2"].cell() + " \\\\")
    word = {"higher": "more accurate than", "lower": "less accurate than",
            "inconclusive": "not distinguishable in accuracy from"}[verdicts["off_mean_conv2"].direction]
    assert f"cluster OFF the clustered models are {word}" in cnn_macros(flipped)["CnnAblationSentences"]


def test_dataset_words() -> None:
    assert cn.dataset_word("fashion-mnist") == ("Fashion", "Fashion-MNIST")
    assert cn.dataset_word("mnist") == ("Mnist", "MNIST")
    assert cn.dataset_word("k-mnist2") == ("KMnistTwo", "k-mnist2")


def two_datasets(result: dict) -> dict:
    """The tiny result as if it had been run on both datasets (the second a copy, renamed)."""
    second = json.loads(json.dumps(result["results"]["mnist"]))
    second["dataset"] = "fashion-mnist"
    return {**result, "datasets": ["mnist", "fashion-mnist"], "results": {**result["results"], "fashion-mnist": second}}


def test_figures_draw(result: dict) -> None:
    for fn, n_axes in ((partial(classifier_figures.tradeoff_figure, family=FAMILY), 2),
                       (partial(classifier_figures.ablation_figure, family=FAMILY), 4),
                       (classifier_figures.circuit_figure, 1)):
        for res, rows in ((result, 1), (two_datasets(result), 2)):
            fig = fn(res)
            assert len(fig.axes) == n_axes * rows
            plt.close(fig)


def test_every_dataset_gets_its_macros_and_its_sentences(result: dict) -> None:
    macros = cnn_macros(two_datasets(result))
    assert macros["CnnDatasets"] == "MNIST and Fashion-MNIST"
    assert macros["CnnFashionCFcMain"] == macros["CnnMnistCFcMain"]
    for topic in ("Ablation", "Semanticity", "Spectral"):
        text = macros[f"Cnn{topic}Sentences"]
        assert "On MNIST" in text and "On Fashion-MNIST" in text, topic
    for topic, claim in (("Acc", "CnnAcc"), ("Circuits", "CnnCircuit")):
        text = macros[f"Cnn{topic}Sentences"]
        assert f"\\Claim{claim}MnistSentence" in text and f"\\Claim{claim}FashionSentence" in text
    assert macros["CnnMeasureTable"].count("\\multicolumn") == 2


def test_the_section_uses_only_macros_the_stage_writes(result: dict) -> None:
    text = (paths.REPO / "paper" / "cnn_section.tex").read_text()
    text = re.sub(r"(?<!\\)%.*", "", text)  # comments name macros in prose
    used = set(re.findall(r"\\(Cnn[A-Za-z]+)", text))
    main = re.sub(r"(?<!\\)%.*", "", (paths.REPO / "paper" / "main.tex").read_text())
    in_main = set(re.findall(r"\\(Cnn[A-Za-z]+)", main))
    missing = (used | in_main) - set(cnn_macros(result))
    assert used and not missing, f"paper/cnn_section.tex or main.tex use macros stage 7 does not write: {sorted(missing)}"
    assert "\\label{sec:cnn}" in text
    others = set(re.findall(r"\\([A-Z][A-Za-z]+)", text)) - used - {"Alpha"}  # the level, from claims.tex
    assert not others, f"the section should use its own Cnn macros only, found {sorted(others)}"
    notebook = (paths.REPO / "notebooks" / "07_cnn.ipynb").read_text()
    saved = set(re.findall(r"(cnn_[a-z]+\.pdf)", notebook))
    figures = re.findall(r"\\includegraphics(?:\[[^]]*\])?\{([^}]+)\}", text)
    assert figures and set(figures) <= saved, f"the section shows figures the notebook does not save: {figures}"


def test_nan_free_headline_numbers(result: dict) -> None:
    rows = result["results"]["mnist"]["rows"]
    for key in ("test_acc", "C_conv2", "C_fc1", "sem_conv2", "sem_fc1", "circuit_size", "z_c_fc1"):
        assert all(math.isfinite(r[key]) for r in rows), key
