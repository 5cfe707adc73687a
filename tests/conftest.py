"""Shared fixtures: tiny synthetic data for unit tests, real MNIST for integration tests.

Real MNIST never skips: if it cannot be loaded the test fails with the loader's message
(set MODCLUST_DATA_MIRROR, as the Makefile does on the project's machines).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import torch

import modclust
from modclust.core.data import Dataset
from modclust.core.model import MLP

os.environ.setdefault("TQDM_DISABLE", "1")
_shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "MODCLUST_DATA_MIRROR" not in os.environ and (_shared / "MNIST" / "raw").is_dir():
    os.environ["MODCLUST_DATA_MIRROR"] = str(_shared)


def make_tiny(n_train: int = 200, n_test: int = 100, n_in: int = 784, seed: int = 0) -> Dataset:
    """Random inputs whose label depends on them, so a model can learn something."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(n_in, 10, generator=g)
    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, n_in, generator=g)
        return x, (x @ proj).argmax(1)
    (tx, ty), (vx, vy) = split(n_train), split(n_test)
    return Dataset("mnist", tx, ty, vx, vy)


@pytest.fixture
def tiny() -> Dataset:
    return make_tiny()


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    return modclust.load("mnist")


@pytest.fixture(scope="module")
def circuit_setup() -> tuple[MLP, torch.Tensor, torch.Tensor]:
    """A small MLP, 60 inputs and labels 0-2 only (so labels 3-9 have no examples): for the circuit
    functions' checks of their arguments."""
    g = torch.Generator().manual_seed(0)
    model = MLP((20, 6, 5, 10), seed=0)
    x = torch.randn(60, 20, generator=g)
    y = torch.arange(60) % 3  # labels 0, 1, 2 only
    return model, x, y


def write_notebook(path: Path, params: str, code: str) -> None:
    """A two-cell notebook at ``path``: a parameters cell (tagged for papermill) and one code cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(code)]
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i}"
    nbformat.write(nb, path)
