"""UnitClusters: clusters of units for any model, and the weight partitions they imply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modclust.analysis.spectral import spectral_partition
from modclust.core.model import MLP, layer_shapes
from modclust.core.partition import Partition
from modclust.core.train import TrainConfig, TrainResult
from modclust.core.units import UnitClusters, trace_wiring


def _cnn() -> nn.Sequential:
    """[N, 4, 8, 8] -> conv "0" (8 ch) -> BN -> ReLU -> pool -> conv "4" (6 ch) -> ReLU -> flatten (6 x 4 x 4)
    -> linear "7" (12) -> ReLU -> linear "9" (10)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(96, 12), nn.ReLU(),
                         nn.Linear(12, 10))


class _Residual(nn.Module):
    def __init__(self, flip: bool = False) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 4)
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if self.flip:
            return self.c(self.b(h).flip(-1))
        return self.c(h + self.b(h))  # c reads a sum of a and b


@pytest.mark.parametrize("widths, k", [((784, 64, 64, 10), 4), ((30, 10, 7, 5), 3)])
@pytest.mark.parametrize("layers", [("fc2",), ("fc1", "fc2", "fc3"), ("fc1", "fc3"), ("fc2", "fc3")])
def test_equal_blocks_on_the_mlp_are_the_trainers_partitions(widths, k, layers) -> None:
    model = MLP(widths, seed=0)
    cfg = TrainConfig(widths=widths, n_clusters=k, clustered_layers=layers, epochs=0)
    run = TrainResult(cfg, model, cfg.partitions())
    ways = [UnitClusters.equal(model, layers, k),                                  # the MLP's known chain
            UnitClusters.equal(model, layers, k, torch.randn(2, widths[0])),       # traced (functional forward)
            UnitClusters.equal(model, layers, k, wiring=model.layer_names)]        # given
    for clusters in ways:
        assert clusters == ways[0]
        parts = clusters.partitions(model)
        assert parts == cfg.partitions()
        for name in layers:
            assert parts[name] == run.blocks(name) == cfg.blocks(name) == Partition.equal_blocks(
                layer_shapes(widths)[name], k)
    groups = ways[0].groups
    assert isinstance(groups, dict) and list(groups) == list(layers)
    assert all(isinstance(g, tuple) and all(isinstance(c, tuple) and all(type(u) is int for u in c) for c in g)
               for g in groups.values())
    if "fc2" in layers:
        assert ways[0].reads["fc2"] == ("fc1" if "fc1" in layers else None)


def test_trace_follows_convolutions_through_a_flatten_and_leaves_the_model_as_it_was() -> None:
    net = _cnn().train()
    bn = net[1]
    before = (bn.running_mean.clone(), int(bn.num_batches_tracked))
    x = torch.randn(2, 4, 8, 8)
    assert trace_wiring(net, x, ["0", "4", "7", "9"]) == {"0": None, "4": "0", "7": "4", "9": "7"}
    assert trace_wiring(net, x, ["4", "9"]) == {"4": None, "9": None}  # they read unclustered layers
    assert net.training and bn.training and torch.equal(bn.running_mean, before[0])
    assert int(bn.num_batches_tracked) == before[1]
    clusters = UnitClusters.equal(net, ["0", "4", "7", "9"], 4, x)
    parts = clusters.partitions(net)
    assert parts["0"] == Partition.equal_blocks((8, 4), 4)                    # out x in channels
    assert parts["4"] == Partition((6, 8), ((0, 1), (2, 3), (4,), (5,)), ((0, 1), (2, 3), (4, 5), (6, 7)))
    # each of fc "7"'s 96 inputs belongs to its channel's cluster: feature f -> channel f // 16
    assert parts["7"].cols == (tuple(range(0, 32)), tuple(range(32, 64)), tuple(range(64, 80)), tuple(range(80, 96)))
    assert parts["9"] == Partition.equal_blocks((10, 12), 4)
    weights = clusters.weight_partitions(net)
    assert weights[net[4].weight] == parts["4"] and len(weights) == 4


def test_trace_on_a_transformer_mlp() -> None:
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=12, dropout=0.0, batch_first=True)
    x = torch.randn(2, 3, 8)  # [batch, pos, d_model]
    clusters = UnitClusters.equal(block, ["linear1", "linear2"], 4, x)
    assert clusters.reads == {"linear1": None, "linear2": "linear1"}  # hidden neurons feed linear2
    parts = clusters.partitions(block)
    assert parts["linear1"] == Partition.equal_blocks((12, 8), 4)
    assert parts["linear2"] == Partition.equal_blocks((8, 12), 4)
    with pytest.raises(ValueError, match="reads a combination of .*the model's input"):  # the residual stream
        UnitClusters.equal(block, ["self_attn.out_proj", "linear1"], 2, x)


def test_ambiguous_wiring_is_a_clear_error_and_can_be_given() -> None:
    x = torch.randn(3, 6)
    with pytest.raises(ValueError, match=r"'c' reads a combination of 'a', 'b'.*pass wiring="):
        UnitClusters.equal(_Residual(), ["a", "b", "c"], 2, x)
    with pytest.raises(ValueError, match=r"'c' reads 'b' through FlipBackward0.*pass wiring="):
        UnitClusters.equal(_Residual(flip=True), ["b", "c"], 2, x)
    given = UnitClusters.equal(_Residual(), ["a", "b", "c"], 2, wiring={"a": None, "b": "a", "c": "b"})
    assert given.reads == {"a": None, "b": "a", "c": "b"}
    with pytest.raises(ValueError, match=r"'c' reads a combination of 'a', 'b'"):  # b unclustered: still a mix
        UnitClusters.equal(_Residual(), ["a", "c"], 2, x)
    assert UnitClusters.equal(_Residual(), ["c"], 2, x).reads["c"] is None  # reads only unclustered layers


def test_explicit_clusters_are_checked() -> None:
    model = MLP((12, 8, 6, 4), seed=0)
    groups = {"fc1": [[0, 2, 4, 6], [1, 3, 5, 7]], "fc2": [[5, 0, 1], [2, 3, 4]]}
    clusters = UnitClusters.explicit(model, groups)
    assert clusters.groups["fc2"] == ((0, 1, 5), (2, 3, 4)) and clusters.k == 2
    parts = clusters.partitions(model)
    assert parts["fc2"] == Partition((6, 8), ((0, 1, 5), (2, 3, 4)), ((0, 2, 4, 6), (1, 3, 5, 7)))
    assert parts["fc1"].cols == (tuple(range(6)), tuple(range(6, 12)))  # equal blocks of the 12 inputs
    assert clusters.labels("fc1") == [0, 1] * 4
    assert UnitClusters.explicit(model, groups, inputs={"fc1": [range(0, 12, 2), range(1, 12, 2)]}) \
        .partitions(model)["fc1"].cols == (tuple(range(0, 12, 2)), tuple(range(1, 12, 2)))
    bad = {
        "in cluster 0 and cluster 1": {"fc1": [[0, 1, 2, 3], [3, 4, 5, 6, 7]]},
        "1 of its 8 units are in no cluster": {"fc1": [[0, 1, 2, 3], [4, 5, 6]]},
        "out of range": {"fc1": [[0, 1, 2, 3], [4, 5, 6, 7, 8]]},
        "has 3 clusters, but every layer needs the same k=2": {"fc1": [[0, 1, 2, 3], [4, 5, 6, 7]],
                                                               "fc2": [[0, 1], [2, 3], [4, 5]]},
        "cluster 1 is empty": {"fc1": [list(range(8)), []]},
    }
    for message, g in bad.items():
        with pytest.raises(ValueError, match=message):
            UnitClusters.explicit(model, g)


def test_clear_errors_for_names_kinds_and_sizes() -> None:
    model = MLP((12, 8, 6, 4), seed=0)
    with pytest.raises(ValueError, match=r"'fc9' is not a module of this model.*'fc1', 'fc2', 'fc3'"):
        UnitClusters.equal(model, ["fc9"], 2)
    with pytest.raises(ValueError, match=r"cannot cut the 4 output units of layer 'fc3' into k=5 clusters: lower k"):
        UnitClusters.equal(model, ["fc3"], 5)
    with pytest.raises(ValueError, match=r"cannot cut the 4 input units of layer '0' into k=5"):
        UnitClusters.equal(_cnn(), ["0"], 5, torch.randn(1, 4, 8, 8))
    with pytest.raises(TypeError, match=r"module '1' is a BatchNorm2d: clusters are sets of output units of nn.Linear"):
        UnitClusters.equal(_cnn(), ["1"], 2, torch.randn(1, 4, 8, 8))
    grouped = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 8, 1))
    with pytest.raises(TypeError, match=r"grouped convolution \(groups=2\), which is not supported"):
        UnitClusters.equal(grouped, ["0", "2"], 2, torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="pass example_input="):
        UnitClusters.equal(_cnn(), ["0"], 2)
    with pytest.raises(ValueError, match="not both"):
        UnitClusters.equal(model, ["fc1"], 2, torch.randn(1, 12), wiring=["fc1"])
    with pytest.raises(TypeError, match="the string 'fc1'"):
        UnitClusters.equal(model, "fc1", 2)
    with pytest.raises(ValueError, match="only the same units, or a Linear reading a Conv2d"):
        UnitClusters.equal(model, ["fc1", "fc3"], 2, wiring={"fc1": None, "fc3": "fc1"})  # 8 units read as 6
    with pytest.raises(ValueError, match="has a cycle"):
        UnitClusters.equal(MLP((8, 8, 8), seed=0), ["fc1", "fc2"], 2, wiring={"fc1": "fc2", "fc2": "fc1"})


def test_from_partitions_aligns_labels_and_fills_on_request() -> None:
    model = MLP((12, 8, 6, 4), seed=0)
    fc1 = Partition.from_labels([0, 1] * 4, [0] * 6 + [1] * 6)
    # fc2's own clusters, labelled the other way round: its cluster 0 reads fc1's cluster 1 (odd units)
    fc2 = Partition.from_labels([0, 0, 0, 1, 1, 1], [1, 0] * 4)
    clusters = UnitClusters.from_partitions(model, {"fc1": fc1, "fc2": fc2})
    parts = clusters.partitions(model)
    assert parts["fc1"] == fc1
    assert parts["fc2"].rows == ((3, 4, 5), (0, 1, 2)) and parts["fc2"].cols == fc1.rows  # relabelled, same blocks
    assert parts["fc2"].mask().equal(fc2.mask())
    plain = UnitClusters.from_partitions(model, {"fc1": fc1, "fc2": fc2}, align=False).partitions(model)
    assert plain["fc2"].rows == fc2.rows and not plain["fc2"].mask().equal(fc2.mask())
    partial = Partition.from_labels([0, 1, 0, 1, 0, 1, 0, -1], [0] * 6 + [1] * 5 + [-1])
    with pytest.raises(ValueError, match="1 of its 8 units are in no cluster.*unassigned='smallest'"):
        UnitClusters.from_partitions(model, {"fc1": partial})
    filled = UnitClusters.from_partitions(model, {"fc1": partial}, unassigned="smallest")
    assert filled.groups["fc1"] == ((0, 2, 4, 6), (1, 3, 5, 7)) and filled.inputs["fc1"][1] == tuple(range(6, 12))
    with pytest.raises(ValueError, match="different numbers of clusters"):
        UnitClusters.from_partitions(model, {"fc1": fc1, "fc2": Partition.equal_blocks((6, 8), 3)})
    with pytest.raises(ValueError, match=r"partitions\['fc2'\] has shape \(8, 6\)"):
        UnitClusters.from_partitions(model, {"fc2": Partition.equal_blocks((8, 6), 2)})


def test_from_a_spectral_partition_of_planted_blocks() -> None:
    model = MLP((12, 8, 6, 4), seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # plant 2 blocks on fc1 and fc2 whose units are interleaved
        for name, rows, cols in (("fc1", [0, 1] * 4, [0] * 6 + [1] * 6), ("fc2", [1, 0] * 3, [0, 1] * 4)):
            w = getattr(model, name).weight
            same = torch.tensor(rows).unsqueeze(1) == torch.tensor(cols).unsqueeze(0)
            w.copy_(torch.rand(w.shape, generator=g) * (same + 0.01))
    found = {name: spectral_partition(getattr(model, name).weight, 2) for name in ("fc1", "fc2")}
    clusters = UnitClusters.from_partitions(model, found)
    parts = clusters.partitions(model)
    for name in ("fc1", "fc2"):
        assert parts[name].mask().equal(found[name].mask())  # the same blocks, consistent through the network


def test_round_trip_and_raw_construction_checks() -> None:
    model = MLP((12, 8, 6, 4), seed=0)
    clusters = UnitClusters.equal(model, ["fc1", "fc2"], 2)
    assert UnitClusters.from_dict(clusters.to_dict()) == clusters
    with pytest.raises(ValueError, match="reads needs one entry per clustered layer"):
        UnitClusters(clusters.groups, {}, clusters.inputs)
    with pytest.raises(ValueError, match="same number of clusters k"):
        UnitClusters(clusters.groups, clusters.reads, {"fc1": ((0,), (1,), tuple(range(2, 12)))})
