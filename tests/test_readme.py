"""The README's quickstart must run as printed."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.mnist
def test_quickstart_runs(capsys):
    text = README.read_text()
    block = re.search(r"## Quickstart\s+```python\n(.*?)```", text, re.S)
    assert block, "README lost its quickstart block"
    ns: dict = {}
    exec(compile(block.group(1), "README quickstart", "exec"), ns)
    printed = capsys.readouterr().out.split()
    acc, c = float(printed[0]), float(printed[1])
    assert 0.88 < acc < 0.92 and c > 0.999  # the values the README quotes
    # the circuits example after it, in the same session: the seed's circuit is a constant classifier
    circuits = re.search(r"Circuits that do the task.*?```python\n(.*?)```", text, re.S)
    assert circuits, "README lost its circuits example"
    exec(compile(circuits.group(1), "README circuits example", "exec"), ns)
    lines = [ln.split() for ln in capsys.readouterr().out.strip().splitlines()]
    (_, seed_size, seed_share, _), (_, margin_size, margin_share, margin_agree) = lines
    assert float(seed_share) == 1.0
    assert float(margin_share) < 0.3 and float(margin_agree) > 0.9


@pytest.mark.mnist
def test_the_own_model_example_runs(capsys):
    """The README's CNN example: Modularity and the hook-based analyses on a model of one's own."""
    block = re.search(r"\*\*Your own model\.\*\*.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its own-model example"
    exec(compile(block.group(1), "README own-model example", "exec"), {})
    full, off = capsys.readouterr().out.splitlines()[0].split(" one fc1 cluster OFF ")
    full_acc = float(full.split()[1])
    off_acc = [float(v) for v in off.strip("[]").split(",")]
    assert full_acc > 0.8 and len(off_acc) == 2 and max(off_acc) < full_acc  # a cluster OFF costs accuracy
