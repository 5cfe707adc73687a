"""Fourier analysis on tables built to be known: a pure-frequency neuron is found at its frequency
with share 1, noise and an untrained network have no dominant frequency, MI is 0 for independent
labels and log2(k) for coinciding ones, logits cos(w(a + b - c)) sit at their frequency, and a
cluster ablation zeroes its neurons and nothing else."""

from __future__ import annotations

import math

import pytest
import torch

from modclust.analysis.fourier import (ablate_cluster, cluster_frequency_ablations, cluster_frequency_mi,
                                       fourier_2d, fourier_basis, frequency_shares, key_frequencies,
                                       logit_frequency_shares, logit_profile, logit_table, mutual_information_bits,
                                       n_frequencies, neuron_activations, neuron_frequencies)
from modclust.core.transformer import all_pairs, make_transformer, modular_addition_data, train_transformer

P = 23
A = torch.arange(P, dtype=torch.float64).view(P, 1)
B = torch.arange(P, dtype=torch.float64).view(1, P)


def wave(k: int, phase: float = 0.0, p: int = P) -> torch.Tensor:
    """cos(2 pi k (a + b) / p + phase) as a (p, p) table."""
    a = torch.arange(p, dtype=torch.float64).view(p, 1)
    return torch.cos(2 * math.pi * k * (a + a.T) / p + phase)


def test_basis_is_orthonormal_and_parseval_holds() -> None:
    basis, names = fourier_basis(P)
    torch.testing.assert_close(basis @ basis.T, torch.eye(P, dtype=torch.float64))
    assert names[:3] == ["const", "cos 1", "sin 1"] and len(names) == P and n_frequencies(P) == 11
    table = torch.randn(4, P, P, dtype=torch.float64)
    torch.testing.assert_close(fourier_2d(table).square().sum((-2, -1)), table.square().sum((-2, -1)))
    with pytest.raises(ValueError, match="odd"):
        fourier_basis(10)


@pytest.mark.parametrize("k", [1, 5, 11])
def test_a_pure_frequency_neuron_is_found_with_share_one(k: int) -> None:
    tables = torch.stack([
        wave(k),                                              # cos(w(a + b))
        wave(k, 0.7),                                         # a phase shift
        3 + 2 * torch.cos(2 * math.pi * k * A / P).expand(P, P),  # a function of a alone, plus a constant
        torch.relu(wave(k)),                                  # ReLU adds harmonics of k; k still dominates
    ])
    nf = neuron_frequencies(tables)
    assert nf.dominant.tolist() == [k] * 4
    assert nf.share[:3].tolist() == pytest.approx([1.0] * 3, abs=1e-9)
    assert 0.5 < float(nf.share[3]) < 1.0
    assert nf.shares.shape == (4, 11) and torch.all(nf.shares.sum(1) <= 1 + 1e-9)


def test_noise_and_an_untrained_network_have_no_dominant_frequency() -> None:
    noise = frequency_shares(torch.randn(200, P, P, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    uniform = 8 / (P * P - 1)  # each frequency holds 8 of the p^2 - 1 non-constant coefficients
    assert float(noise.mean()) == pytest.approx(uniform, rel=0.05)
    assert float(noise.max()) < 4 * uniform
    model = make_transformer(P, seed=0, d_model=32, n_heads=4, d_mlp=64)
    nf = neuron_frequencies(neuron_activations(model))
    normalised = nf.shares / nf.shares.sum(1, keepdim=True)  # each neuron's single-frequency power over k
    mean_profile = normalised[nf.dominant > 0].mean(0)
    assert float(mean_profile.max()) < 2.0 / 11 and float(mean_profile.min()) > 0.5 / 11  # near uniform over k
    assert float(nf.share.max()) < 0.5 and nf.key_frequencies == ()
    assert len(set(nf.dominant.tolist())) >= 6  # dominant frequencies spread over many k


def test_neuron_activations_are_the_hidden_neurons_on_the_grid() -> None:
    model = make_transformer(7, seed=1, d_model=8, n_heads=2, d_mlp=5)
    acts = neuron_activations(model)
    assert acts.shape == (5, 7, 7)
    x, _ = all_pairs(7)
    hidden = model.hidden(x).detach()
    assert torch.equal(acts[:, 3, 5], hidden[3 * 7 + 5])


def test_dead_neurons_and_key_frequencies() -> None:
    tables = torch.stack([wave(2), wave(2, 1.0), wave(5), torch.zeros(P, P, dtype=torch.float64),
                          torch.full((P, P), 4.0, dtype=torch.float64)])
    nf = neuron_frequencies(tables, min_share=0.9, min_neurons=2)
    assert nf.dominant.tolist() == [2, 2, 5, 0, 0] and nf.share[3:].tolist() == [0.0, 0.0]
    assert nf.key_frequencies == (2,)
    assert key_frequencies(nf.dominant, nf.share, 0.9, 1) == (2, 5)
    assert nf.explained.tolist() == [True, True, True, False, False]


def test_mutual_information_extremes() -> None:
    freqs = torch.tensor([f for f in (3, 7, 9, 11) for _ in range(8)])
    same = torch.tensor([c for c in range(4) for _ in range(8)])
    assert mutual_information_bits(same, freqs) == pytest.approx(2.0)  # log2(k), k = 4
    independent = torch.tensor([c for _ in range(4) for c in range(4) for _ in range(2)])  # every pair equally
    assert mutual_information_bits(independent, freqs) == pytest.approx(0.0, abs=1e-12)
    res = cluster_frequency_mi(same, freqs, n_draws=100, seed=0)
    assert res.mi == pytest.approx(2.0) and res.max_mi == pytest.approx(2.0) and res.n_neurons == 32
    assert res.null_mean < 0.6 and res.null_sd > 0 and len(res.null) == 100 and res.z > 5
    assert cluster_frequency_mi(same, freqs, n_draws=100, seed=0).null == res.null  # seeded
    ind = cluster_frequency_mi(independent, freqs, n_draws=50)
    assert ind.mi == pytest.approx(0.0, abs=1e-12) and ind.z < 0
    kept = cluster_frequency_mi(same, freqs, keep=freqs != 3, n_draws=10)
    assert kept.n_neurons == 24 and kept.mi == pytest.approx(math.log2(3))


def test_logit_frequency_shares() -> None:
    a = torch.arange(P, dtype=torch.float64)
    s = a.view(P, 1, 1) + a.view(1, P, 1) - a.view(1, 1, P)
    one = torch.cos(2 * math.pi * 4 * s / P)
    shares = logit_frequency_shares(one)
    assert shares.shape == (11,) and float(shares[3]) == pytest.approx(1.0)
    assert float(shares.sum()) == pytest.approx(1.0)
    two = 3 * torch.cos(2 * math.pi * 2 * s / P + 0.4) + torch.sin(2 * math.pi * 9 * s / P) + 5.0  # c-constant shift
    shares = logit_frequency_shares(two)
    assert float(shares[1]) == pytest.approx(0.9) and float(shares[8]) == pytest.approx(0.1)
    noise = logit_frequency_shares(torch.randn(P, P, P, dtype=torch.float64))
    assert float(noise.sum()) < 0.05


def test_ablating_a_cluster() -> None:
    data = modular_addition_data(11, 0.5, seed=0)
    model = make_transformer(11, seed=0, d_model=16, n_heads=2, d_mlp=12)
    clusters = torch.tensor([0, 1, 2] * 4)
    res = ablate_cluster(model, data, clusters, 1, frequencies=[1, 3])
    assert res.n_neurons == 4 and res.frequencies == (1, 3) and len(res.logit_share_after) == 2
    mask = (clusters != 1).float()
    full, ablated = logit_table(model), logit_table(model, mask)
    assert res.acc_before == pytest.approx(float((full.reshape(121, 11).argmax(1) == data.all_y).float().mean()))
    assert res.acc_after == pytest.approx(float((ablated.reshape(121, 11).argmax(1) == data.all_y).float().mean()))
    assert res.logit_share_before == pytest.approx(tuple(float(v) for v in logit_frequency_shares(full)[[0, 2]]))
    nothing = ablate_cluster(model, data, clusters, 5, frequencies=[2])  # no neuron has label 5
    assert nothing.n_neurons == 0 and nothing.acc_after == nothing.acc_before
    assert nothing.logit_rms_after == nothing.logit_rms_before
    every = cluster_frequency_ablations(model, data, clusters, frequencies=[2])
    assert [r.cluster for r in every] == [0, 1, 2] and isinstance(every[0].to_dict()["frequencies"], list)
    assert every[1] == ablate_cluster(model, data, clusters, 1, frequencies=[2])  # the full model profiled once
    before = logit_profile(model, data, [1, 3])
    assert ablate_cluster(model, data, clusters, 1, [1, 3], before) == res
    assert before.test_acc == pytest.approx(float((full.reshape(121, 11).argmax(1)[data.test_idx]
                                                   == data.test_y).float().mean()))
    with pytest.raises(ValueError, match="profiled at frequencies"):
        ablate_cluster(model, data, clusters, 1, [2], before)


def test_a_trained_model_computes_with_a_few_key_frequencies() -> None:
    """End to end: a tiny transformer that generalises (about 2 s on one CPU core) uses a few key
    frequencies, its neurons are mostly single-frequency, and its logits sit at those frequencies."""
    data = modular_addition_data(31, 0.6, seed=2)
    model = make_transformer(31, seed=2, d_model=32, n_heads=4, d_mlp=128)
    run = train_transformer(model, data, steps=2500, lr=3e-3, weight_decay=1.0, eval_every=100, stop_at=0.95)
    assert run.train_acc == 1.0 and run.test_acc >= 0.95
    nf = neuron_frequencies(neuron_activations(model))
    assert 1 <= len(nf.key_frequencies) <= 6
    assert float(nf.share.mean()) > 0.5 and int(nf.explained.sum()) > 64  # untrained: mean share < 0.2
    shares = logit_frequency_shares(logit_table(model))
    assert float(shares[[k - 1 for k in nf.key_frequencies]].sum()) > 0.6
    off = ablate_cluster(model, data, torch.zeros(128, dtype=torch.long), 0)  # every neuron in one cluster
    assert off.acc_before > 0.95 and off.acc_after < 0.3
    assert all(after < 0.2 * before for before, after in zip(off.logit_rms_before, off.logit_rms_after))
