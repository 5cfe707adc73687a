"""Checkpoints: model weights, partitions, config and history in one file, written atomically.

A checkpoint carries a content checksum (sha256 over its tensors and its metadata, see
:func:`content_checksum`) that :func:`load` verifies: torch's zip reader does not check the
bytes it reads, so without it a damaged file could load and just give wrong numbers. Every
problem :func:`load` finds in a file that exists is a :class:`CheckpointError` that names the
file and says what is wrong with it.

Files of format 1 (before the checksum) still load, with a :class:`CheckpointWarning`: they
hold weights that may have taken hours to train, and nothing is known to be wrong with them;
only damage to them cannot be detected. Re-running the stage that wrote them (stage 1 of the
pipeline) replaces them with checked files.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from modclust.core.io import write_atomic
from modclust.core.model import MLP
from modclust.core.partition import Partition
from modclust.core.train import TrainConfig, TrainResult

FORMAT = "modclust-checkpoint-2"
OLD_FORMATS = ("modclust-checkpoint-1",)  # readable, but without a checksum
_RETRAIN = "delete it and train again (for a pipeline checkpoint: re-run stage 1, notebooks/01_train)"


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: damaged, changed, refused or not a checkpoint."""


class CheckpointWarning(UserWarning):
    """A checkpoint loaded, but without the checks a current one gets (an older format)."""


def _update(h: Any, data: bytes | memoryview) -> None:
    """Feed one length-prefixed piece into the hash, so that pieces cannot run into each other."""
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def content_checksum(payload: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` over a checkpoint payload's content, independent of how it was pickled.

    The metadata (every key but ``state_dict`` and ``checksum``: format, config, partitions,
    history) as canonical JSON (sorted keys, no spaces, floats written exactly), then each
    tensor in name order as its name, dtype, shape and raw bytes.
    """
    h = hashlib.sha256()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "checksum")}
    _update(h, json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=True).encode())
    state_dict = payload["state_dict"]
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state_dict[{name!r}] is a {type(t).__name__}, not a tensor")
        t = t.detach().cpu().contiguous().reshape(-1)
        _update(h, json.dumps([name, str(t.dtype), list(state_dict[name].shape)]).encode())
        _update(h, memoryview(t.view(torch.uint8).numpy()))
    return "sha256:" + h.hexdigest()


def save(result: TrainResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` to ``path`` (a temporary file moved into place: never half-written)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "config": result.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "partitions": {name: p.to_dict() for name, p in result.partitions.items()},
        "history": result.history,
    }
    payload["checksum"] = content_checksum(payload)
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def _reason(err: BaseException) -> str:
    """The informative line of an exception torch raised while reading a file."""
    lines = [ln.strip() for ln in str(err).splitlines()]
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [ln for ln in lines if ln and not ln.startswith(boilerplate)]
    text = lines[0] if lines else ""
    text = text.removeprefix("WeightsUnpickler error:").strip()
    text = text.split(". This is an internal miniz error")[0]  # torch's advice that follows is not ours
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(err).__name__}: {text}" if text else f"{type(err).__name__} (the file ends too early)"


def _read(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``, every failure a :class:`CheckpointError` naming ``path``."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
    except OSError as err:  # a directory, no permission...: the file itself may be fine
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err.strerror or err})") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):
            raise CheckpointError(
                f"{path} was refused by torch.load(weights_only=True): it holds a pickled object that a "
                f"modclust checkpoint never contains ({_reason(err)}), so it was not written by "
                "modclust.core.checkpoint.save or was changed since. Nothing in it was run. "
                f"{_RETRAIN[0].upper() + _RETRAIN[1:]}; load it with weights_only=False only if you "
                "trust where it came from."
            ) from err
        raise _damaged(path, size, err) from err
    except Exception as err:  # whatever torch's reader raises on bytes it cannot parse
        raise _damaged(path, size, err) from err


def _damaged(path: Path, size: int, err: BaseException) -> CheckpointError:
    n = f"{size} byte{'' if size == 1 else 's'}"
    return CheckpointError(f"{path} ({n}) is damaged (truncated or not a checkpoint: {_reason(err)}); {_RETRAIN}")


def _check_payload(path: Path, payload: Any) -> None:
    """Raise a :class:`CheckpointError` unless ``payload`` is an intact checkpoint of a known format."""
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt in OLD_FORMATS:
        warnings.warn(
            f"{path} was written by an older modclust (format {fmt!r}) and has no content checksum, "
            "so damage to it cannot be detected; loaded it unchecked. Re-run the stage that wrote it "
            "(stage 1 for a pipeline checkpoint) to replace it with a checked file.",
            CheckpointWarning,
            stacklevel=3,
        )
        return
    if isinstance(fmt, str) and fmt.startswith("modclust-checkpoint-") and fmt != FORMAT:
        raise CheckpointError(f"{path} has format {fmt!r}, which this modclust (format {FORMAT!r}) "
                              "cannot read: it was written by a newer (or unknown) modclust; update modclust")
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is not a modclust checkpoint (expected format {FORMAT!r})")
    stored = payload.get("checksum")
    for key, ok in (("state_dict", isinstance(payload.get("state_dict"), dict)), ("checksum", isinstance(stored, str))):
        if not ok:
            raise CheckpointError(f"{path} is damaged (its {key} is missing or malformed); {_RETRAIN}")
    try:
        actual = content_checksum(payload)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is damaged (its content cannot be checksummed: {err}); {_RETRAIN}") from err
    if actual != stored:
        raise CheckpointError(
            f"{path}: content checksum does not match: the file was changed or corrupted after it "
            f"was written (stored {stored}, content {actual}); {_RETRAIN}"
        )


def load(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TrainResult:
    """Read a checkpoint written by :func:`save`, verifying its content checksum.

    A missing file raises ``FileNotFoundError``; any other problem a :class:`CheckpointError`
    (a ``ValueError``) that names the file. A format-1 file (no checksum) loads with a
    :class:`CheckpointWarning`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: train one first (modclust.core.train, then checkpoint.save)")
    payload = _read(path)
    _check_payload(path, payload)
    try:
        config = TrainConfig.from_dict(payload["config"])
        model = MLP(config.widths)
        load_weights(model, payload["state_dict"], source=str(path))
        partitions = {name: Partition.from_dict(d) for name, d in payload["partitions"].items()}
        history = payload["history"]
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        # The content is as written (checksum) or unchecked (format 1): made by another modclust version
        msg = str(err) if str(path) in str(err) else (
            f"{path} holds a checkpoint this modclust cannot use ({type(err).__name__}: {err})")
        raise CheckpointError(msg) from err
    return TrainResult(config, model.to(device), partitions, history)


def load_weights(model: MLP, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load weights into ``model``, failing with one clear message if the architectures differ."""
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    if have != got:
        raise ValueError(
            f"{source} holds layers {got} but the model has {have}: build the model with the "
            "checkpoint's widths (modclust.core.checkpoint.load does this for you)"
        )
    model.load_state_dict(state_dict)
