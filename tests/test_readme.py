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
