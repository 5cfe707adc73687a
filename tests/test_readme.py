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
    exec(compile(block.group(1), "README quickstart", "exec"), {})
    printed = capsys.readouterr().out.split()
    acc, c = float(printed[0]), float(printed[1])
    assert 0.88 < acc < 0.92 and c > 0.999  # the values the README quotes
