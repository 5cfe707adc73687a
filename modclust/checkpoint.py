"""Checkpoints: model weights, partitions, config and history in one file, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from modclust.io import write_atomic
from modclust.model import MLP
from modclust.partition import Partition
from modclust.train import TrainConfig, TrainResult

FORMAT = "modclust-checkpoint-1"


def save(result: TrainResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` to ``path`` (a temporary file moved into place: never half-written)."""
    payload = {
        "format": FORMAT,
        "config": result.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "partitions": {name: p.to_dict() for name, p in result.partitions.items()},
        "history": result.history,
    }
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TrainResult:
    """Read a checkpoint written by :func:`save`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: train one first (modclust.train, then checkpoint.save)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a modclust checkpoint (expected format {FORMAT!r})")
    config = TrainConfig.from_dict(payload["config"])
    model = MLP(config.widths)
    load_weights(model, payload["state_dict"], source=str(path))
    partitions = {name: Partition.from_dict(d) for name, d in payload["partitions"].items()}
    return TrainResult(config, model.to(device), partitions, payload["history"])


def load_weights(model: MLP, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load weights into ``model``, failing with one clear message if the architectures differ."""
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    if have != got:
        raise ValueError(
            f"{source} holds layers {got} but the model has {have}: build the model with the "
            "checkpoint's widths (modclust.checkpoint.load does this for you)"
        )
    model.load_state_dict(state_dict)
