"""Every location the project reads or writes, in one place.

Two environment variables move the data:
``MODCLUST_DATA`` is the data root (default ``data/`` in the checkout) and
``MODCLUST_DATA_MIRROR`` a folder laid out like ``../shared/data`` whose ``.gz`` files are
copied into the root when missing there (for machines without internet).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The checkout (when modclust is installed from one, as ``pip install -e .`` does)."""



def data_root() -> Path:
    """Where datasets live: ``$MODCLUST_DATA``, else ``data/`` in the checkout."""
    env = os.environ.get("MODCLUST_DATA")
    return Path(env) if env else REPO / "data"


def data_mirror() -> Path | None:
    """A read-only folder of dataset ``.gz`` files to copy from, or None (then download)."""
    env = os.environ.get("MODCLUST_DATA_MIRROR")
    return Path(env) if env else None
