"""The modular-addition stage (modclust.experiments.modular_addition, modclust.paper.modadd_numbers):
on a transformer whose MLP neurons are planted with known frequencies, clusters that follow the
frequencies give MI log2(k), ablations of specificity 1 and spectral clusters that find them,
while scrambled clusters and random neuron sets do not; the own-frequency and specificity rules
on hand-made values; a tiny study end to end (flagged runs that did not generalise, JSON-ready,
seeded); and the paper's macros: every macro the section uses is defined, and sentences follow
the data."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import matplotlib
import pytest
import torch

from modclust.analysis.fourier import ClusterAblation, NeuronFrequencies, neuron_activations, neuron_frequencies
from modclust.core.checks import SettingsError
from modclust.core.transformer import make_transformer, modular_addition_data
from modclust.experiments import modular_addition as ma
from modclust.experiments.study import StudyResult, Trained, load_trained, run_study, save_trained
from modclust.paper import modadd_figures
from modclust.paper import modadd_numbers as report

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent
P = 23
FREQS = (1, 3, 5, 7)  # planted key frequencies; their harmonics 2k (2, 6, 10, 9) are none of them
PER_FREQ = 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and a second one waiting on a busy CPU slows every step
    many times over (measured: this file 3 s on an idle 2-core CPU with two threads, 35 s beside another job)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted_model() -> torch.nn.Module:
    """A ModAddTransformer whose hidden neuron n computes ReLU(cos(w a - phi) + cos(w b - phi)) / 3 at
    frequency w = 2 pi FREQS[n // PER_FREQ] / p, writes it to its own residual dimension, which the
    unembedding reads as cos(w c - 2 phi) (so every neuron's cos(w (a + b - c)) component has the same
    phase): ablating the neurons of one frequency removes only it from the logits.

    Residual dims 0..7: cos/sin of each frequency (the embedding, "=" is 0); dims 8..23: one per neuron.
    Each neuron also reads the other frequencies' dimensions with small seeded weights (0.05 N(0, 1)),
    so the weights form one connected graph for spectral co-clustering.
    Attention is uniform (zero queries and keys), values and output the identity, so the last
    position's residual is (E[a] + E[b]) / 3.
    """
    k, d_mlp = len(FREQS), len(FREQS) * PER_FREQ
    d_model = 2 * k + d_mlp
    model = make_transformer(P, seed=0, d_model=d_model, n_heads=2, d_mlp=d_mlp)
    t = torch.arange(P, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for i, f in enumerate(FREQS):
            w = 2 * math.pi * f / P
            model.embed.weight[:P, 2 * i] = torch.cos(w * t)
            model.embed.weight[:P, 2 * i + 1] = torch.sin(w * t)
            for r in range(PER_FREQ):
                n, phi = i * PER_FREQ + r, math.pi / 4 + 2 * math.pi * r / PER_FREQ  # reads both cos and sin
                model.mlp_in.weight[n, 2 * i], model.mlp_in.weight[n, 2 * i + 1] = math.cos(phi), math.sin(phi)
                model.mlp_out.weight[2 * k + n, n] = 1.0
                model.unembed.weight[:, 2 * k + n] = torch.cos(w * t - 2 * phi)
        noise = torch.randn(d_mlp, 2 * k, generator=torch.Generator().manual_seed(0))
        model.mlp_in.weight[:, :2 * k] += 0.05 * noise  # a little of every frequency: one connected weight graph
        model.attn_v.weight.copy_(torch.eye(d_model))
        model.attn_o.weight.copy_(torch.eye(d_model))
    return model.eval()


@pytest.fixture(scope="module")
def planted() -> tuple[torch.nn.Module, NeuronFrequencies, torch.Tensor]:
    model = planted_model()
    nf = neuron_frequencies(neuron_activations(model))
    aligned = torch.arange(len(FREQS) * PER_FREQ) // PER_FREQ  # cluster i = the neurons of FREQS[i]
    return model, nf, aligned


def test_planted_neurons_are_found_at_their_frequencies(planted) -> None:
    model, nf, aligned = planted
    assert nf.key_frequencies == FREQS
    assert nf.dominant.tolist() == [FREQS[int(c)] for c in aligned]
    assert bool(nf.explained.all())
    untrained = make_transformer(P, seed=0, d_model=model.d_model, n_heads=2, d_mlp=model.d_mlp)
    assert ma.logit_key_share(model, FREQS) > 0.3 > 10 * ma.logit_key_share(untrained, FREQS)


def test_clusters_that_follow_the_frequencies_carry_log2_k_bits_and_scrambled_ones_none(planted) -> None:
    _, nf, aligned = planted
    mi = ma.mi_record(aligned, nf, n_draws=100, seed=0)
    assert mi["mi"] == pytest.approx(2.0) and mi["norm"] == pytest.approx(1.0) and mi["n_neurons"] == 16
    assert mi["null"] < 1.2 and mi["z"] > 4 and mi["excess"] == pytest.approx(mi["mi"] - mi["null"])
    scrambled = torch.arange(16) % 4  # every cluster holds one neuron of every frequency
    none = ma.mi_record(scrambled, nf, n_draws=100, seed=0)
    assert none["mi"] == pytest.approx(0.0, abs=1e-12) and none["z"] < 0
    outside = aligned.clone()
    outside[:PER_FREQ] = -1  # neurons in no cluster are left out
    assert ma.mi_record(outside, nf, n_draws=10, seed=0)["n_neurons"] == 12
    assert ma.frequency_counts(aligned, nf) == [[4 if i == j else 0 for j in range(4)] for i in range(4)]
    assert ma.frequency_counts(scrambled, nf) == [[1] * 4 for _ in range(4)]


def test_spectral_coclustering_finds_the_planted_groups(planted) -> None:
    model, nf, aligned = planted
    for weights in ma.SPECTRAL_WEIGHTS:
        found, c = ma.spectral_clusters(model, 4, weights, seed=0)
        assert c > 0.97  # each neuron reads (and writes) almost only its own frequency's dimensions
        assert ma.mi_record(found, nf, n_draws=20, seed=0)["mi"] == pytest.approx(2.0)
        assert sorted(torch.bincount(found).tolist()) == [4, 4, 4, 4]
    with pytest.raises(ValueError, match="spectral weights"):
        ma.spectral_clusters(model, 4, "fc2")


def test_ablating_a_frequency_cluster_is_specific_and_random_sets_are_not(planted) -> None:
    model, nf, aligned = planted
    data = modular_addition_data(P, 0.5, seed=0)
    res = ma.ablation_analysis(model, data, aligned, nf, control_draws=6, seed=0)
    assert [c["own_frequency"] for c in res["clusters"]] == list(FREQS)
    for c in res["clusters"]:
        i = FREQS.index(c["own_frequency"])
        assert c["purity"] == 1.0 and c["specificity"] == pytest.approx(1.0)
        assert c["logit_rms_after"][i] < 1e-6 < c["logit_rms_before"][i]  # its frequency is gone ...
        others = [j for j in range(4) if j != i]
        assert [c["logit_rms_after"][j] for j in others] == pytest.approx([c["logit_rms_before"][j] for j in others])
    assert len(res["controls"]) == 4 * 6 and all(c["n_neurons"] == PER_FREQ for c in res["controls"])
    assert res["abl_specificity"] == pytest.approx(1.0) and res["control_specificity"] < 0.6
    assert res["abl_power_specificity"] == pytest.approx(1.0) and res["control_power_specificity"] < 0.9
    assert res["control_purity"] < res["abl_purity"] == 1.0
    again = ma.ablation_analysis(model, data, aligned, nf, control_draws=6, seed=0)
    assert again["controls"] == res["controls"]  # seeded draws
    other = ma.ablation_analysis(model, data, aligned, nf, control_draws=6, seed=1)
    assert other["controls"] != res["controls"]


def _ablation(before, after, freqs=(2, 5, 7)) -> ClusterAblation:
    n = len(freqs)
    return ClusterAblation(0, 4, tuple(freqs), 1.0, 0.5, 1.0, 0.5, (0.0,) * n, (0.0,) * n, tuple(before), tuple(after))


def test_specificity_and_own_frequency_rules() -> None:
    assert ma.specificity(_ablation((2, 2, 2), (0, 2, 2)), 2) == pytest.approx(1.0)
    assert ma.specificity(_ablation((2, 2, 2), (1, 1, 1)), 5) == pytest.approx(1 / 3)  # every frequency thinned alike
    assert ma.specificity(_ablation((2, 2, 2), (0, 0, 3)), 2) == pytest.approx(0.5)  # a raised frequency counts 0
    assert ma.removed_power(_ablation((2, 2, 2), (0, 0, 3))) == pytest.approx([4, 4, -5])
    thinned = _ablation((2, 1, 1), (math.sqrt(3), math.sqrt(0.75), math.sqrt(0.75)))  # each loses 25 % of its power
    assert ma.specificity(thinned, 2) == pytest.approx(1 / 3)  # relative: as for random neurons, 1 / n_key
    assert ma.specificity(thinned, 2, relative=False) == pytest.approx(1 / 1.5)  # the plain share leans to power
    assert ma.specificity(_ablation((2, 2, 2), (0, 2, 2)), None) is None
    assert ma.specificity(_ablation((2, 2, 2), (0, 2, 2)), 11) is None  # not one of the ablation's frequencies
    assert ma.specificity(_ablation((2, 2, 2), (2, 2, 2)), 2) is None  # nothing removed
    assert ma.specificity(_ablation((2,), (0,), (2,)), 2) is None  # one frequency: 1 by construction
    dominant = torch.tensor([2, 2, 2, 5, 5, 7, 9, 0])
    share = torch.tensor([0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.9, 0.0])
    nf = NeuronFrequencies(torch.zeros(8, 11), dominant, share, (2, 5, 7), 0.5, 2)
    assert ma.own_frequency(torch.tensor([1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.bool), nf) == (2, 1.0)  # 2 unexplained
    assert ma.own_frequency(torch.tensor([1, 1, 0, 1, 1, 0, 0, 0], dtype=torch.bool), nf) == (2, 0.5)  # tie: smaller
    assert ma.own_frequency(torch.tensor([0, 0, 0, 1, 0, 1, 1, 1], dtype=torch.bool), nf) == (5, 0.5)  # 9 is no key
    assert ma.own_frequency(torch.tensor([0, 0, 1, 0, 0, 0, 1, 1], dtype=torch.bool), nf) == (None, None)


def test_config_and_lambdas_are_checked_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="must be odd.*use 57 or 59"):
        ma.ModAddSettings(p=58)
    with pytest.raises(ValueError, match="n_clusters"):
        ma.ModAddSettings(d_model=8, n_heads=2, n_clusters=16)
    with pytest.raises(ValueError, match="divisible"):
        ma.ModAddSettings(d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="spectral_weights"):
        ma.ModAddSettings(spectral_weights="W_in")
    with pytest.raises(ValueError, match="train_frac"):
        ma.ModAddSettings(train_frac=1.0)
    with pytest.raises(ValueError, match="seeds lists 0 more than once"):
        ma.ModAddSettings(seeds=(0, 0))
    with pytest.raises(ValueError, match="repeat p = 59"):
        ma.ModAddSettings(moduli=(41, 59))
    with pytest.raises(SettingsError) as info:  # every problem at once, each with its field
        ma.ModAddSettings(train_frac=1.5, seeds=(), spectral_weights="W_in")
    assert [fields for fields, _ in info.value.problems] == [("train_frac",), ("seeds",), ("spectral_weights",)]
    assert ma.ModAddSettings().lambdas == [0.0, 1.0]
    assert ma.ModularAddition(ma.ModAddSettings(main_lambda=2.0, seeds=(3, 1))).grid() == [
        (0.0, 3), (0.0, 1), (2.0, 3), (2.0, 1)]
    with pytest.raises(TypeError, match="ModAddSettings"):
        ma.ModularAddition({"p": 59})


TINY = ma.ModAddSettings(p=11, train_frac=0.6, d_model=16, n_heads=2, d_mlp=32, max_steps=100, eval_every=25,
                         n_clusters=4, steps_after=0, null_draws=20, control_draws=2, seeds=(0, 1), moduli=())


@pytest.fixture(scope="module")
def tiny_study() -> StudyResult:
    """Two seeds x (0, 1) on p = 11 for 100 steps: none reaches 0.99 (about 1 s)."""
    return run_study(ma.ModularAddition(TINY), None, progress=False)


def test_a_tiny_study_end_to_end(tiny_study) -> None:
    st = tiny_study
    grid = [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]
    for part in (st.records, st.runs, st.rows):
        assert [(r["lam"], r["seed"]) for r in part] == grid
    assert st.study == TINY.to_dict() and st.untrained == [] and st.context == {}
    text = json.dumps(st.to_dict())  # JSON-ready, read back whole
    assert json.dumps(StudyResult.from_dict(json.loads(text)).to_dict()) == text
    assert st.summary["generalised"]["0.0"] == {"n_runs": 2, "n_generalised": 0, "failed_seeds": [0, 1]}
    for rec, run, row in zip(st.records, st.runs, st.rows):
        assert not rec["generalised"] and rec["steps"] is None and rec["steps_trained"] == 100
        assert rec["history"]["step"][0] == 0 and rec["init_test_acc"] < 0.3
        assert set(row) == {"lam", "seed", *ma.SUMMARY_METRICS}  # the scalars, each once
        assert {k: row[k] for k in ma.TRAINING_METRICS} == {k: rec[k] for k in ma.TRAINING_METRICS}
        assert {k: row[k] for k in ma.ANALYSIS_METRICS} == {k: run[k] for k in ma.ANALYSIS_METRICS}
        assert "history" not in run and len(run["ablation"]["controls"]) == 2 * TINY.n_clusters
        assert 0 <= row["mi"] <= row["mi_max"] + 1e-9 and 0 <= row["c_in"] <= 1 and 0 <= row["spectral_c"] <= 1
    first = ma.summary_row(st, 0.0)
    assert first["n"] == 2 and first["steps"] is None and first["test_acc"]["n"] == 2
    clustered = ma.summary_row(st, 1.0)
    assert clustered["c_in"]["mean"] > first["c_in"]["mean"]  # the loss acts
    assert set(st.summary) == {"runs", "against_null", "generalised"}  # clustered against unclustered: the paper's
    with pytest.raises(ValueError, match="no runs at lambda=3"):
        ma.summary_row(st, 3.0)
    study = ma.ModularAddition(TINY)
    (again,) = study.train(None, None, [(1.0, 1)])  # seeded: the same numbers again, trained alone
    assert again.record["history"] == st.records[3]["history"]
    assert study.row(study.analyse(None, None, again)) == {k: st.rows[3][k] for k in ma.ANALYSIS_METRICS}
    with pytest.raises(TypeError, match="analyses the runs its train gives"):
        study.analyse(None, None, Trained(again.model, again.record))


def untimed(rows: list[dict]) -> list[dict]:
    """Rows without their wall-clock times (the one thing two trainings of a seed do not share)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "seconds_trained")} for r in rows]


def test_models_trained_elsewhere_are_analysed_as_if_trained_here(tmp_path) -> None:
    """Saved models (a launch's) come back with their run's data and neuron blocks rebuilt from the
    seed: the same analyses as of the models in memory, in the main study and at the other moduli."""
    settings = replace(TINY, moduli=(7,))
    studies = ma.stage_studies(settings)
    assert list(studies) == [11, 7] and studies[7].settings.p == 7 and studies[7].settings.moduli == ()
    trained = {p: study.train(None, None, study.grid()) for p, study in studies.items()}
    for p, runs in trained.items():
        save_trained(runs[::-1], ma.modulus_folder(tmp_path, p))
    assert sorted(f.name for f in (tmp_path / "p11").iterdir()) == [
        "lam0_seed0.pt", "lam0_seed1.pt", "lam1_seed0.pt", "lam1_seed1.pt"]
    study = ma.ModularAddition(TINY)
    here = run_study(study, None, progress=False, trained=trained[11])
    there = run_study(study, None, progress=False, trained=ma.modulus_folder(tmp_path, 11))
    assert {**there.to_dict(), "seconds": None} == {**here.to_dict(), "seconds": None}
    run = load_trained(study, None, None, tmp_path / "p11", [(1.0, 1)])[0]
    assert isinstance(run, ma.TrainedRun) and not run.model.training and run.run.lam == 1.0
    assert torch.equal(run.run.data.train_idx, ma.seed_data(TINY, 1).train_idx)
    assert torch.equal(run.run.neuron_clusters, torch.arange(32) // 8)
    again, loaded = (ma.other_moduli(settings, progress=False, trained=t) for t in (None, tmp_path))
    assert list(loaded) == ["7"] and untimed(loaded["7"].rows) == untimed(again["7"].rows)
    assert untimed(loaded["7"].records) == untimed(again["7"].records)


def test_a_run_that_generalises_reports_its_steps() -> None:
    cfg = ma.ModAddSettings(p=11, train_frac=0.6, d_model=16, n_heads=2, d_mlp=32, max_steps=200, eval_every=25,
                            n_clusters=4, steps_after=0, stop_at=0.2, null_draws=5, control_draws=1)
    run = ma.train_run(cfg, 0.0, 0)
    rec = ma.training_record(run, cfg.stop_at)
    assert rec["generalised"] and rec["steps"] == rec["steps_trained"] and rec["steps"] % 25 == 0
    assert rec["test_acc"] >= 0.2 and rec["seconds"] == pytest.approx(rec["seconds_trained"])


def test_other_moduli_are_checked_and_summarised() -> None:
    cfg = ma.ModAddSettings(p=11, train_frac=0.6, d_model=16, n_heads=2, d_mlp=32, max_steps=50, eval_every=25,
                            n_clusters=4, steps_after=0, null_draws=5, control_draws=1, seeds=(0, 1), moduli=(13,))
    for bad in ((11,), (13, 13), (12,)):
        with pytest.raises(ValueError):
            replace(cfg, moduli=bad)
    studies = ma.other_moduli(cfg, progress=False)
    assert list(studies) == ["13"] and studies["13"].study["p"] == 13 and studies["13"].study["moduli"] == []
    row = ma.modulus_row(studies["13"])
    assert row["p"] == 13 and row["runs"] == 4 and row["seeds"] == [0, 1]
    assert len(row["mi_trained"]) == len(row["mi_spectral_unclustered"]) == 2
    assert set(row["n_key"]) == {"unclustered", "clustered"}
    table = report.moduli_table([row, row])
    assert "13" in table and "\\begin{tabular}" in table
    first, second = [line for line in table.splitlines() if line.startswith("13 &")]
    assert first.endswith("\\ClaimModaddMiCell \\\\")  # the section's modulus: the primary verdict
    assert not second.endswith("\\ClaimModaddMiCell \\\\")
    assert report.moduli_sentence([row]) == "This run studies one modulus only."


def test_summaries_test_against_nulls() -> None:
    """Made-up rows: clustered MI well above unclustered and above its null; unclustered at its null."""
    settings = ma.ModAddSettings(seeds=(0, 1, 2, 3, 4))
    base = {k: None for k in ma.SUMMARY_METRICS}
    rows, recs = [], []
    for lam, mi in ((0.0, [0.05, 0.06, 0.07, 0.05, 0.06]), (1.0, [0.9, 1.0, 0.8, 0.95, 0.85])):
        for s, v in enumerate(mi):
            steps = None if (s == 4 and lam) else 100 + s
            rows.append({**base, "lam": lam, "seed": s, "mi": v, "mi_null": [0.06, 0.05, 0.06, 0.06, 0.05][s],
                         "steps": steps})
            recs.append({"lam": lam, "seed": s, "generalised": steps is not None, "steps": steps})
    study = StudyResult(study=settings.to_dict(), records=recs, runs=[], rows=rows)
    out = ma.ModularAddition(settings).summarise(study)
    assert out["against_null"]["1.0"]["mi"]["direction"] == "higher"
    assert out["against_null"]["0.0"]["mi"]["direction"] == "indistinguishable"
    assert out["against_null"]["0.0"]["abl_specificity"]["difference"] is None
    assert out["generalised"]["1.0"]["failed_seeds"] == [4]
    assert [(r["lam"], r["n"], r["steps"]["n"]) for r in out["runs"]] == [(0.0, 5, 5), (1.0, 5, 4)]
    c = report.clustered_contrast(study, "mi")  # what the notebook prints: paired by seed
    assert c.rule == "paired" and c.diff.n == 5 and c.p < 0.001
    assert c.diff.mean == pytest.approx(sum(a - b for a, b in zip([0.9, 1.0, 0.8, 0.95, 0.85],
                                                               [0.05, 0.06, 0.07, 0.05, 0.06])) / 5)
    assert report.clustered_contrast(study, "mi", "mi_null").diff.n == 5
    assert report.clustered_contrast(study, "abl_specificity") is None  # undefined everywhere


# --- the paper layer -----------------------------------------------------------------------

def test_every_macro_the_section_uses_is_generated(tiny_study, tmp_path) -> None:
    macros = report.modadd_macros(tiny_study)
    assert all(name.startswith("ModAdd") for name in macros.items)
    used = {m for tex in ("modadd_section.tex", "main.tex")
            for m in re.findall(r"\\(ModAdd[A-Za-z]+)", (REPO / "paper" / tex).read_text())}
    assert used and used <= set(macros.items), sorted(used - set(macros.items))
    path = report.write_modadd_numbers(macros, tmp_path / "generated")
    text = path.read_text()
    assert path.name == "modadd.tex" and text.startswith("% Generated by the paper pipeline (notebooks/08_modadd")
    assert "\\newcommand{\\ModAddTable}{\\begin{tabular}" in text
    failed = "4 of the 4 runs did not reach test accuracy 0.99 within 100 steps"
    assert failed in macros.items["ModAddGeneralisedSentence"]
    assert macros.items["ModAddStepsClustered"] == "n/a" and macros.items["ModAddP"] == "11"
    assert "cannot be compared" in macros.items["ModAddStepsSentence"]


def test_sentences_follow_the_data(tiny_study) -> None:
    st = StudyResult.from_dict(json.loads(json.dumps(tiny_study.to_dict())))  # as read back from modadd.json
    assert report.modadd_macros(st).items == report.modadd_macros(tiny_study).items
    study = ma.ModularAddition(TINY)
    for rec, r in zip(st.records, st.rows):
        steps = 100 + r["seed"] if r["lam"] else 500 + 7 * r["seed"]
        rec.update(generalised=True, steps=steps, seconds=1.0 + r["seed"])
        r.update(steps=steps, seconds=1.0 + r["seed"])
        r["mi"] = 1.5 + 0.1 * r["seed"] if r["lam"] else 0.02 * r["seed"]
        r["mi_null"] = 0.05 + 0.01 * r["seed"]
    st.summary = study.summarise(st)
    m = report.modadd_macros(st).items
    assert m["ModAddGeneralisedSentence"] == "All 4 runs reached test accuracy 0.99 within 100 steps."
    assert m["ModAddStepsSentence"].startswith("The clustered models need fewer steps than the unclustered ones")
    assert m["ModAddMiSentence"].startswith("The trained clusters of the clustered models say more about")
    assert m["ModAddMiNullSentenceClustered"].startswith("above its shuffled null")
    assert m["ModAddMiNullSentenceUnclustered"].startswith("not distinguishable from its shuffled null")
    for r in st.rows:  # swap the roles: now the unclustered models' clusters carry the bits
        r["mi"] = 0.02 * r["seed"] if r["lam"] else 1.5 + 0.1 * r["seed"]
    st.summary = study.summarise(st)
    assert report.modadd_macros(st).items["ModAddMiSentence"].startswith(
        "The trained clusters of the clustered models say less about")
    with pytest.raises(ValueError, match="one main_lambda"):
        report.modadd_macros(replace(st, records=[*st.records, {**st.records[0], "lam": 2.0}]))


def test_figures_draw_from_the_study(tiny_study) -> None:
    for fig in (modadd_figures.training_figure(tiny_study), modadd_figures.summary_figure(tiny_study),
                modadd_figures.ablation_figure(tiny_study)):
        assert len(fig.axes) >= 2
        matplotlib.pyplot.close(fig)
    counts, left, keys = modadd_figures.ablation_tables(tiny_study.runs[0])
    assert counts.shape == left.shape == (TINY.n_clusters, len(keys))
    for fig in (modadd_figures.plotly_training(tiny_study), modadd_figures.plotly_summary(tiny_study),
                modadd_figures.plotly_ablation(tiny_study)):
        assert len(fig.data) >= 2
