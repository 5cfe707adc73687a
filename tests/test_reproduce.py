import json

import pytest

from modclust.seed import reproduce

pytestmark = pytest.mark.mnist


def test_cli_prints_the_table_and_ends_with_the_json(capsys):
    reproduce.main(["--seeds", "2", "--epochs", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("quantity") and "seed notebook" in out[0]
    summary = json.loads(out[-1])
    keys = {"clustered_acc", "clustered_C", "unclustered_acc", "cluster_off_acc", "cluster_on_acc",
            "semanticity_clustered", "semanticity_unclustered", "search_space_pruned"}
    assert keys <= set(summary)
    assert len(summary["cluster_off_acc"]) == 4 and len(summary["cluster_on_acc"]) == 4
    assert summary["search_space_pruned"] == pytest.approx(0.7640, abs=1e-4)
    assert 0.3 < summary["clustered_acc"] < 1 and summary["clustered_C"] > 0.8


def test_at_least_one_seed():
    with pytest.raises(SystemExit):
        reproduce.main(["--seeds", "0"])
