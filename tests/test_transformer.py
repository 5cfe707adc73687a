"""The modular-addition data and one-layer transformer: the split, the shapes, the last-position
shortcut against a full causal transformer, the MLP partitions, and training (with and without C)."""

from __future__ import annotations

import math

import pytest
import torch

from modclust.core.transformer import (ModAddTransformer, all_pairs, make_transformer, mlp_clusterability,
                                       mlp_partitions, modular_addition_data, neuron_clusters, train_transformer)


def test_all_pairs_and_split() -> None:
    x, y = all_pairs(7)
    assert x.shape == (49, 3) and y.shape == (49,)
    assert x[3 * 7 + 5].tolist() == [3, 5, 7] and int(y[3 * 7 + 5]) == 1
    assert all_pairs(7, eq_token=False)[0].shape == (49, 2)
    data = modular_addition_data(11, 0.4, seed=3)
    assert len(data.train_idx) == round(0.4 * 121) and len(data.train_idx) + len(data.test_idx) == 121
    assert not set(data.train_idx.tolist()) & set(data.test_idx.tolist())
    assert torch.equal((data.train_x[:, 0] + data.train_x[:, 1]) % 11, data.train_y)
    same, other = modular_addition_data(11, 0.4, seed=3), modular_addition_data(11, 0.4, seed=4)
    assert torch.equal(same.train_idx, data.train_idx) and not torch.equal(other.train_idx, data.train_idx)
    assert data.eq_token and data.n_ctx == 3 and not modular_addition_data(11, eq_token=False).eq_token
    with pytest.raises(ValueError, match="at least one pair"):
        modular_addition_data(5, 0.0)


def test_shapes_and_seeded_init() -> None:
    model = make_transformer(13, seed=0, d_model=16, n_heads=2, d_mlp=24)
    assert tuple(model.mlp_in.weight.shape) == (24, 16) and tuple(model.mlp_out.weight.shape) == (16, 24)
    x, _ = all_pairs(13)
    out = model.run(x[:10])
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "attn_pattern": (10, 2, 3), "resid_mid": (10, 16), "hidden": (10, 24), "resid_post": (10, 16),
        "logits": (10, 13)}
    torch.testing.assert_close(out["attn_pattern"].sum(-1), torch.ones(10, 2))
    state = torch.get_rng_state()
    again = make_transformer(13, seed=0, d_model=16, n_heads=2, d_mlp=24)
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(make_transformer(13, seed=1, d_model=16, n_heads=2, d_mlp=24).embed.weight,
                           model.embed.weight)
    with pytest.raises(ValueError, match="divisible"):
        ModAddTransformer(13, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="tokens must be"):
        model(x[:, :2])


def full_causal_logits(model: ModAddTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The same transformer run at every position with a causal mask (the textbook way); last position's logits."""
    n, t = tokens.shape
    h, dh = model.n_heads, model.d_head
    x = model.embed(tokens) + model.pos_embed[:t]
    q = model.attn_q(x).view(n, t, h, dh).transpose(1, 2)
    k = model.attn_k(x).view(n, t, h, dh).transpose(1, 2)
    v = model.attn_v(x).view(n, t, h, dh).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
    scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    z = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(n, t, model.d_model)
    resid = x + model.attn_o(z)
    resid = resid + model.mlp_out(torch.relu(model.mlp_in(resid)))
    return model.unembed(resid)[:, -1]


@pytest.mark.parametrize("eq_token", [True, False])
def test_last_position_shortcut_equals_the_full_transformer(eq_token: bool) -> None:
    model = make_transformer(11, seed=2, d_model=12, n_heads=3, d_mlp=20, eq_token=eq_token)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # non-zero biases too
    x, _ = all_pairs(11, eq_token)
    torch.testing.assert_close(model(x), full_causal_logits(model, x))


def test_neuron_mask() -> None:
    model = make_transformer(7, seed=0, d_model=8, n_heads=2, d_mlp=10)
    x, _ = all_pairs(7)
    mask = torch.ones(10)
    mask[3] = 0
    out = model.run(x, mask)
    assert torch.all(out["hidden"][:, 3] == 0)
    full = model.run(x)
    expected = full["resid_post"] - full["hidden"][:, 3:4] * model.mlp_out.weight[:, 3]
    torch.testing.assert_close(out["resid_post"], expected)


def test_mlp_partitions_put_each_neuron_in_one_cluster_of_both_matrices() -> None:
    model = make_transformer(7, d_model=8, n_heads=2, d_mlp=12)
    parts = mlp_partitions(model, 3)
    assert parts["mlp_in"].shape == (12, 8) and parts["mlp_out"].shape == (8, 12)
    assert parts["mlp_in"].rows == parts["mlp_out"].cols == ((0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11))
    assert neuron_clusters(parts).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    labels = [2, 0, 1] * 4
    custom = mlp_partitions(model, 3, labels)
    assert neuron_clusters(custom).tolist() == labels
    masks = {k: p.mask() for k, p in parts.items()}
    with torch.no_grad():
        c = mlp_clusterability(model, masks)
    assert 0.15 < float(c["mlp_in"]) < 0.55 and 0.15 < float(c["mlp_out"]) < 0.55
    with pytest.raises(ValueError, match="one label per hidden neuron"):
        mlp_partitions(model, 3, [0, 1])


def test_training_memorises_and_logs() -> None:
    data = modular_addition_data(13, 0.5, seed=0)
    model = make_transformer(13, seed=0, d_model=32, n_heads=4, d_mlp=64)
    run = train_transformer(model, data, steps=300, lr=3e-3, weight_decay=0.1, eval_every=50)
    assert run.history["step"] == [0, 50, 100, 150, 200, 250, 300]
    assert run.train_acc == 1.0 and run.history["train_loss"][-1] < 0.1 * run.history["train_loss"][0]
    assert run.history["seconds"] == sorted(run.history["seconds"])
    assert run.first(0.0) == (0, 0.0) and run.first(1.01) is None


def test_clusterability_loss_clusters_the_mlp() -> None:
    data = modular_addition_data(13, 0.5, seed=0)
    model = make_transformer(13, seed=0, d_model=32, n_heads=4, d_mlp=64)
    run = train_transformer(model, data, steps=200, lr=3e-3, weight_decay=0.1, lam=2.0, n_clusters=4, eval_every=100)
    assert run.history["c_in"][0] < 0.4 and run.history["c_out"][0] < 0.4
    assert run.history["c_in"][-1] > 0.9 and run.history["c_out"][-1] > 0.9
    assert run.neuron_clusters.tolist() == [j for j in range(4) for _ in range(16)]


def test_stop_at_and_checks() -> None:
    data = modular_addition_data(7, 0.5, seed=0)
    model = make_transformer(7, seed=0, d_model=16, n_heads=2, d_mlp=16)
    run = train_transformer(model, data, steps=2000, lr=1e-2, weight_decay=0.0, eval_every=10, stop_at=0.0)
    assert run.history["step"][-1] < 2000  # stopped once the training set was learnt (test acc >= 0)
    first = run.history["step"][-1]
    on = train_transformer(make_transformer(7, seed=0, d_model=16, n_heads=2, d_mlp=16), data, steps=2000, lr=1e-2,
                           weight_decay=0.0, eval_every=10, stop_at=0.0, steps_after=35)
    assert on.history["step"][-1] == first + 35  # trained on past generalising, the last step evaluated
    assert on.history["test_acc"][:len(run.history["step"])] == run.history["test_acc"]  # the same run until then
    capped = train_transformer(make_transformer(7, seed=0, d_model=16, n_heads=2, d_mlp=16), data, steps=first + 5,
                               lr=1e-2, weight_decay=0.0, eval_every=10, stop_at=0.0, steps_after=35)
    assert capped.history["step"][-1] == first + 5  # never beyond steps
    with pytest.raises(ValueError, match="does not fit"):
        train_transformer(make_transformer(11, d_model=8, n_heads=2, d_mlp=8), data, steps=1)
