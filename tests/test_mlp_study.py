"""modclust.experiments.mlp_study: the MLP study's settings (notebooks 01-06), their defaults and
their checks, which name every problem of the values at once, each with the fields it concerns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from modclust.analysis.circuits import Faithfulness
from modclust.analysis.objectives import ABLATIONS, OBJECTIVES
from modclust.core.checks import SettingsError
from modclust.core.train import SETTINGS
from modclust.experiments.mlp_study import CONTROL_SETTINGS, FAITHFULNESS, FIELDS, MlpSettings


def problems(**kw) -> list[tuple[tuple[str, ...], str]]:
    """The problems MlpSettings(**kw) reports ([] when it constructs)."""
    try:
        MlpSettings(**kw)
    except SettingsError as err:
        return err.problems
    return []


def test_the_defaults_construct_and_round_trip_through_a_dict():
    s = MlpSettings()
    d = s.to_dict()
    assert list(d) == list(FIELDS) and "preset_section" not in d and MlpSettings.preset_section is None
    assert d["widths"] == [784, 64, 64, 10] and d["objectives"] == list(OBJECTIVES) and d["labels"] == []
    assert not any(isinstance(v, tuple) for v in d.values())  # lists, as a preset writes them
    assert MlpSettings(**d) == s
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 3  # type: ignore[misc]


def test_the_module_s_name_lists():
    assert FIELDS == tuple(f.name for f in dataclasses.fields(MlpSettings)) and len(FIELDS) == len(set(FIELDS))
    assert CONTROL_SETTINGS == SETTINGS
    # Faithfulness' scalar measures, in its order: not label, objective or the per-class list classwise_acc
    assert FAITHFULNESS == ("acc", "top1_agreement", "share_c", "full_share_c", "agreement", "agreement_c",
                            "agreement_rest", "balanced_agreement")
    assert set(FAITHFULNESS) < {f.name for f in dataclasses.fields(Faithfulness)}


def test_lists_become_tuples_of_their_checked_values():
    s = MlpSettings(widths=[784.0, np.int64(32), 16, 10], seeds=[3, 1], lambdas=[0, 15, 2], sweep_lambdas=[0, 1],
                    labels=[9, 0], layers=["fc2"], sweep_thresholds=[1, 0.5], objectives=["margin"],
                    control_ablations=["zero"], device="cuda:1")
    assert s.widths == (784, 32, 16, 10) and all(type(w) is int for w in s.widths)
    assert s.seeds == (3, 1) and s.labels == (9, 0) and s.layers == ("fc2",) and s.objectives == ("margin",)
    assert s.lambdas == (0.0, 15.0, 2.0) and all(type(v) is float for v in s.lambdas + s.sweep_lambdas)
    assert s.sweep_thresholds == (1.0, 0.5) and s.control_ablations == ("zero",)
    assert MlpSettings(layer_sets=["all"], device="auto").layer_sets == ("all",)


def test_every_problem_is_reported_at_once_each_with_its_fields():
    with pytest.raises(SettingsError) as info:
        MlpSettings(seeds=[0, 0], lr=0, dataset="cifar")
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, TypeError)
    assert err.problems == [
        (("dataset",), "MlpSettings.dataset must be one of ['mnist', 'fashion-mnist'], got 'cifar'"),
        (("seeds",), "MlpSettings.seeds lists 0 more than once, which would count a run twice: remove the repeats"),
        (("lr",), "MlpSettings.lr must be a finite number > 0, got 0"),
    ]
    assert str(err).splitlines() == [message for _, message in err.problems]


@pytest.mark.parametrize("kw, fields, message", [
    (dict(widths=[784, 10]), ("widths",), "MlpSettings.widths must have at least 3 entries, got (784, 10) "
                                          "(layer widths, input first, at least one hidden layer"),
    (dict(widths=[1, 2, 3]), ("widths",), "MlpSettings.widths must start with 784 (a 28 x 28 image) and end in at "
                                          "most 10 outputs (the classes), got [1, 2, 3]"),
    (dict(widths="784"), ("widths",), "MlpSettings.widths must be a list, got '784'"),
    (dict(lambdas=[1.0, 15.0]), ("lambdas", "main_lambda"),
     "MlpSettings.lambdas [1.0, 15.0] must hold 0 (the unclustered baseline) and main_lambda 15, which the later "
     "stages compare: add them"),
    (dict(lambdas=[]), ("lambdas",), "MlpSettings.lambdas is empty: give 0 (unclustered) and main_lambda at least"),
    (dict(lambdas=[-1.0, 0.0, 15.0]), ("lambdas",), "MlpSettings.lambdas item must be a finite number >= 0, got -1.0"),
    (dict(lambdas=[0, 15, 0.0]), ("lambdas",), "MlpSettings.lambdas lists 0.0 more than once"),
    (dict(main_lambda=0), ("main_lambda",), "MlpSettings.main_lambda must be a finite number > 0, got 0"),
    (dict(objectives=[]), ("objectives",), "MlpSettings.objectives is empty: give at least one of "
                                           "['seed', 'margin', 'kl']"),
    (dict(objectives=["kl"]), ("faithful_objective", "objectives"),
     "MlpSettings.faithful_objective 'margin' must be one of the objectives ['kl']: add it to them"),
    (dict(layers=["fc1", "fc1"]), ("layers", "widths"), "MlpSettings.layers lists 'fc1' more than once, which would "
                                                        "count an entry twice: remove the repeats"),
    (dict(layers=["fc3"]), ("layers", "widths"), "MlpSettings.layers item must be one of ['fc1', 'fc2'], got 'fc3'"),
    (dict(layers=[]), ("layers", "widths"), "MlpSettings.layers is empty: give at least one of ['fc1', 'fc2']"),
    (dict(circuit_layers=["fc4"]), ("circuit_layers", "widths"), "MlpSettings.circuit_layers item must be one of "
                                                                 "['fc1', 'fc2', 'fc3'], got 'fc4'"),
    (dict(clustered_layer="fc9"), ("clustered_layer", "widths"),
     "MlpSettings.clustered_layer must be one of ['fc1', 'fc2', 'fc3'], got 'fc9'"),
    (dict(control_settings=["nope"]), ("control_settings",), "MlpSettings.control_settings item must be one of"),
    (dict(control_ablations=["zero", "zero"]), ("control_ablations",), "MlpSettings.control_ablations lists 'zero'"),
    (dict(device="gpu"), ("device",), "MlpSettings.device must be 'cpu', 'cuda' (or 'cuda:N') or 'auto', got 'gpu'"),
    (dict(labels=[10]), ("labels",), "MlpSettings.labels[0] must be an int in [0, 9], got 10 "
                                     "(classes 0-9; [] means every class)"),
    (dict(labels=[1, 1]), ("labels",), "MlpSettings.labels lists 1 more than once, which would count a circuit twice"),
    (dict(seeds=[]), ("seeds",), "MlpSettings.seeds is empty: give at least one seed"),
    (dict(seeds="01"), ("seeds",), "MlpSettings.seeds must be a list, got '01'"),
    (dict(null_draws=1), ("null_draws",), "MlpSettings.null_draws must be an int >= 2, got 1 "
                                          "(at least 2 shuffled copies to estimate the null's spread)"),
    (dict(threads=-1), ("threads",), "MlpSettings.threads must be an int >= 0, got -1 "
                                     "(CPU threads for torch; 0 means torch's default)"),
    (dict(epochs=0.5), ("epochs",), "MlpSettings.epochs must be an int >= 1, got 0.5"),
    (dict(live_cutoff=1.0), ("live_cutoff",), "MlpSettings.live_cutoff must be a finite number in (0, 1), got 1.0"),
    (dict(match_level=0), ("match_level",), "MlpSettings.match_level must be a finite number in (0, 1], got 0"),
    (dict(match_on="accuracy"), ("match_on",), "MlpSettings.match_on must be one of ['acc', "),
    (dict(sweep_thresholds=[0.0]), ("sweep_thresholds",),
     "MlpSettings.sweep_thresholds item must be a finite number > 0, got 0.0"),
    (dict(pruner="slow"), ("pruner",), "MlpSettings.pruner must be one of ['fast', 'plain'], got 'slow'"),
    (dict(converged_lr=-0.1), ("converged_lr",), "MlpSettings.converged_lr must be a finite number >= 0, got -0.1 "
                                                 "(0 leaves the converged recipe out)"),
])
def test_a_bad_value_is_one_problem_naming_the_setting_and_what_it_must_be(kw, fields, message):
    found = problems(**kw)
    assert len(found) == 1, found
    assert found[0][0] == fields and found[0][1].startswith(message), found


def test_blocks_must_fit_every_layer_they_are_put_on():
    """n_clusters = 9 on widths 784-8-64-10: fc1 is 8 x 784 and fc2 64 x 8 (too few rows or columns),
    fc3 is 10 x 64 (fits); layer_sets' 'all' puts blocks on all three."""
    found = problems(widths=[784, 8, 64, 10], n_clusters=9)
    concerned = ("n_clusters", "widths", "clustered_layer", "layer_sets")
    assert found == [(concerned, "MlpSettings.n_clusters = 9 blocks do not fit fc1 (8 x 784): lower n_clusters or "
                                 "widen the layer"),
                     (concerned, "MlpSettings.n_clusters = 9 blocks do not fit fc2 (64 x 8): lower n_clusters or "
                                 "widen the layer")]
    assert problems(widths=[784, 8, 64, 10], n_clusters=9, clustered_layer="fc3", layer_sets=["fc3"]) == []
    assert problems(widths=[784, 8, 64, 10], n_clusters=8) == []  # 8 blocks of one row each fit fc1 and fc2


def test_a_rule_on_a_field_that_failed_its_own_check_is_not_reported_twice():
    """Layer names come from widths: bad widths are one problem, not one more per list of layers."""
    assert [f for f, _ in problems(widths=[784, 0, 10], layers=["fc7"])] == [("widths",)]
    assert [f for f, _ in problems(lambdas=[-1.0], main_lambda=7.0)] == [("lambdas",)]
    assert [f for f, _ in problems(n_clusters=1, widths=[784, 2, 10], layers=["fc1"], circuit_layers=["fc1"],
                                   layer_sets=["fc1"], clustered_layer="fc1")] == [("n_clusters",)]


def test_every_choice_list_takes_each_of_its_names():
    assert MlpSettings(control_settings=list(SETTINGS), control_mask_settings=list(SETTINGS),
                       control_ablations=list(ABLATIONS), objectives=list(OBJECTIVES)).control_settings == SETTINGS
    for choice in FAITHFULNESS:
        assert MlpSettings(match_on=choice).match_on == choice
