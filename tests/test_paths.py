"""modclust.core.paths: the checkout, and the data root and mirror the environment may move."""

from __future__ import annotations

from pathlib import Path

import modclust
from modclust.core import paths


def test_repo_is_the_checkout_that_holds_the_package():
    assert paths.REPO.is_absolute()
    assert paths.REPO / "modclust" == Path(modclust.__file__).resolve().parent
    assert (paths.REPO / "pyproject.toml").is_file() and (paths.REPO / "notebooks").is_dir()


def test_the_data_root_is_the_environment_s_or_data_in_the_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("MODCLUST_DATA", raising=False)
    assert paths.data_root() == paths.REPO / "data"
    monkeypatch.setenv("MODCLUST_DATA", "")  # set but empty: the default
    assert paths.data_root() == paths.REPO / "data"
    monkeypatch.setenv("MODCLUST_DATA", str(tmp_path))
    assert paths.data_root() == tmp_path
    monkeypatch.setenv("MODCLUST_DATA", "relative/root")  # read at each call, taken as given
    assert paths.data_root() == Path("relative/root")


def test_the_mirror_is_the_environment_s_or_none(monkeypatch, tmp_path):
    monkeypatch.delenv("MODCLUST_DATA_MIRROR", raising=False)
    assert paths.data_mirror() is None
    monkeypatch.setenv("MODCLUST_DATA_MIRROR", "")
    assert paths.data_mirror() is None
    monkeypatch.setenv("MODCLUST_DATA_MIRROR", str(tmp_path))
    assert paths.data_mirror() == tmp_path
