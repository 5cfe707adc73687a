"""Many seeds of any ``nn.Module`` at once: an ensemble trained as one vectorised model.

:func:`train_ensemble` builds one model per seed with ``make_model(seed)``, stacks their
parameters (``torch.func.stack_module_state``: every parameter gains a leading member dim M)
and trains them together: each step runs the model once per member through
``torch.func.vmap`` over ``torch.func.functional_call``, sums the members' losses, takes one
backward pass and one optimizer step on the stacked parameters. The members never mix: a
member's gradient is the gradient of its own loss (the sum's other terms do not depend on its
weights), and SGD and Adam act element by element, so a stacked step is each member's own
step. :func:`train_module` is the lone reference loop (a plain ``nn.Module``, autograd, a
torch optimizer); member i of ``train_ensemble(make_model, seeds, ...)`` is
``train_module(make_model, seeds[i], ...)``, up to the rounding of batched against unbatched
kernels (``tests/test_ensemble_generic.py``).

The loss of each member is ``cross_entropy(model(x), y) - lam * mean_W C(W)`` over the
clustered weights W (:class:`ModuleConfig.clustered`), as in :class:`modclust.core.train.TrainConfig`
(lam weighs the mean C). A weight of shape (out, in) counts by its squared entries, a
convolution's (out, in, kh, kw) by each (out, in) kernel's squared norm, the sum of w^2 over
the kernel (:func:`modclust.core.clusterability.layer_clusterability`).

A seed fixes a run: ``make_model(seed)`` its init (it may seed the global RNG, as
``torch.manual_seed(seed); return Net()`` does: models are built one after another, before
training), and a ``torch.Generator`` seeded with the seed its data order, one permutation of
the training set per epoch drawn on the CPU (:func:`modclust.core.train.epoch_order`), so the
lone run and the member read the same batches on any device.

Data are plain tensors ``(train_x, train_y, test_x, test_y)`` (or a
:class:`modclust.core.data.Dataset`, which has those fields): inputs of any shape (N, *in)
and any dtype the model takes (images (N, 1, 28, 28), token ids (N, T)), integer labels (N,)
in 0 .. n_outputs - 1. The model maps a batch (B, *in) to logits (B, n_outputs). Its forward
must not draw random numbers (dropout): a vectorised member could not draw what its lone run
draws, and ``vmap`` refuses it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from modclust.core.checks import check_choice, check_finite_numbers, check_float, check_int, check_ints
from modclust.core.clusterability import layer_clusterability
from modclust.core.model import SEED_MAX
from modclust.core.partition import Partition
from modclust.core.train import TrainingDivergedError, epoch_order, steps_per_epoch

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
"""The optimizers a :class:`ModuleConfig` names (torch's defaults besides the learning rate)."""


# --- clusterability of any weight --------------------------------------------------------------

# --- configuration -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModuleConfig:
    """How to train a generic module (every member of an ensemble alike). Checked on construction.

    ``clustered``: the weights whose C enters the loss, by parameter name (``model.named_parameters()``,
    e.g. ``"conv2.weight"``): a mapping ``{name: Partition}`` (the partition of the weight's
    (out, in)), or a sequence of names, each cut into ``n_clusters`` equal diagonal blocks (or of
    ``(name, Partition | None)`` pairs). Stored as a tuple of ``(name, Partition | None)`` pairs.
    """

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 64
    lam: float = 0.0  # loss = CE - lam * mean C over the clustered weights
    optimizer: str = "sgd"  # a key of OPTIMIZERS
    clustered: tuple[tuple[str, Partition | None], ...] = ()
    n_clusters: int = 4  # equal blocks for a clustered name given without a partition
    eval_batch_size: int = 1024  # test examples per forward pass when measuring accuracy

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        put("epochs", check_int("ModuleConfig.epochs", self.epochs, 0))
        put("lr", check_float("ModuleConfig.lr", self.lr, 0.0, strict_min=True, hint="the learning rate"))
        put("batch_size", check_int("ModuleConfig.batch_size", self.batch_size, 1))
        put("lam", check_float("ModuleConfig.lam", self.lam, 0.0, hint="the weight of clusterability in the loss"))
        check_choice("ModuleConfig.optimizer", self.optimizer, OPTIMIZERS)
        put("n_clusters", check_int("ModuleConfig.n_clusters", self.n_clusters, 1,
                                    hint="equal blocks per clustered weight given without a partition"))
        put("eval_batch_size", check_int("ModuleConfig.eval_batch_size", self.eval_batch_size, 1))
        put("clustered", _clustered_pairs(self.clustered))
        if self.lam > 0 and not self.clustered:
            raise ValueError(f"ModuleConfig.lam is {self.lam:g} but no weight is clustered: name the weights in "
                             "ModuleConfig.clustered (e.g. {'conv2.weight': Partition...}) or set lam=0")

    @property
    def clustered_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.clustered)


def _clustered_pairs(value: Any) -> tuple[tuple[str, Partition | None], ...]:
    """``ModuleConfig.clustered`` in its stored form, checked: names unique strings, partitions or None."""
    what = "ModuleConfig.clustered"
    hint = "a mapping {param_name: Partition} or a sequence of parameter names"
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be {hint}, got the string {value!r} (write ({value!r},))")
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence):
        items = [(v, None) if isinstance(v, str) else v for v in value]
    else:
        raise TypeError(f"{what} must be {hint}, got {value!r}")
    out: list[tuple[str, Partition | None]] = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and (item[1] is None or isinstance(item[1], Partition))):
            raise TypeError(f"{what} must be {hint}; got the entry {item!r}")
        if any(item[0] == name for name, _ in out):
            raise ValueError(f"{what} names {item[0]!r} twice")
        out.append(item)
    return tuple(out)


@dataclass
class ModuleRun:
    """One trained member: its module and what happened to it.

    ``history``: ``"loss"``, ``"ce"`` and ``"clusterability"`` (the mean C of the clustered
    weights; empty when none is clustered) per step, each measured before that step's update;
    ``"test_acc"`` after every epoch (with no epochs: one entry, the init's).
    """

    seed: int
    lam: float
    config: ModuleConfig
    model: nn.Module
    partitions: dict[str, Partition]
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def test_acc(self) -> float:
        return self.history["test_acc"][-1]

    @property
    def final_clusterability(self) -> float:
        """Mean C of the clustered weights as trained (nan when none is clustered)."""
        if not self.partitions:
            return float("nan")
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            cs = [layer_clusterability(params[n], p.mask(params[n].device, params[n].dtype))
                  for n, p in self.partitions.items()]
        return float(torch.stack(cs).mean())


# --- checks ------------------------------------------------------------------------------------

def _unpack_data(data: Any) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train_x (N, *in), train_y (N,) int64, test_x (N', *in), test_y (N',) int64), checked."""
    if all(hasattr(data, a) for a in ("train_x", "train_y", "test_x", "test_y")):
        parts = (data.train_x, data.train_y, data.test_x, data.test_y)
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and len(data) == 4:
        parts = tuple(data)
    else:
        raise TypeError("data must be four tensors (train_x, train_y, test_x, test_y) or a Dataset with those "
                        f"fields, got {type(data).__name__}")
    names = ("train_x", "train_y", "test_x", "test_y")
    for name, t in zip(names, parts):
        if not isinstance(t, Tensor):
            raise TypeError(f"data's {name} must be a tensor, got {type(t).__name__}")
    tx, ty, vx, vy = parts
    for split, x, y in (("train", tx, ty), ("test", vx, vy)):
        if x.ndim < 1 or len(x) == 0 or y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"data's {split} split needs at least one example and one label per example: "
                             f"{split}_x of shape {tuple(x.shape)} and {split}_y of shape (N,), got "
                             f"{split}_y of shape {tuple(y.shape)}")
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise TypeError(f"data's {split}_y must hold integer class labels, got dtype {y.dtype}")
    if tx.shape[1:] != vx.shape[1:]:
        raise ValueError(f"train_x and test_x must have the same example shape, got {tuple(tx.shape[1:])} and "
                         f"{tuple(vx.shape[1:])}")
    if len({t.device for t in parts}) != 1:
        raise ValueError(f"data's tensors must be on one device, got {[str(t.device) for t in parts]}")
    return tx, ty.long(), vx, vy.long()


def _build(make_model: Callable[[int], nn.Module], seed: int, device: torch.device) -> nn.Module:
    if not callable(make_model):
        raise TypeError(f"make_model must be a function seed -> nn.Module, got {make_model!r}")
    model = make_model(seed)
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_model({seed}) must return an nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"make_model({seed}) builds a model without trainable parameters: nothing to train")
    return model.to(device)


def _check_fits(model: nn.Module, seed: int, train_x: Tensor, labels: Sequence[Tensor]) -> None:
    """Raise unless the model maps a batch (B, *in) to logits (B, n) with every label below n."""
    was_training = model.training
    model.eval()  # one probe example, without touching running statistics or drawing dropout
    try:
        with torch.no_grad():
            out = model(train_x[:1])
    except Exception as err:
        raise ValueError(f"make_model({seed}) does not take data of example shape {tuple(train_x.shape[1:])} "
                         f"({type(err).__name__}: {err})") from err
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"make_model({seed})'s model must map a batch (B, *in) to logits (B, n_classes), got "
                         f"{shape} for a batch of 1")
    n = out.shape[1]
    lo = min(int(y.min()) for y in labels)
    hi = max(int(y.max()) for y in labels)
    if lo < 0 or hi >= n:
        raise ValueError(f"the data's labels run from {lo} to {hi} but make_model({seed})'s model has {n} outputs: "
                         f"labels must lie in 0 .. {n - 1}")


def _partitions(model: nn.Module, cfg: ModuleConfig) -> dict[str, Partition]:
    """Each clustered weight's partition of its (out, in), checked against the model."""
    params = dict(model.named_parameters())
    out = {}
    for name, part in cfg.clustered:
        if name not in params:
            raise ValueError(f"ModuleConfig.clustered names {name!r}, which is not a parameter of the "
                             f"{type(model).__name__} (its parameters: {list(params)})")
        w = params[name]
        if w.ndim < 2:
            raise ValueError(f"ModuleConfig.clustered names {name!r} of shape {tuple(w.shape)}: only weights with "
                             "at least 2 dims (out, in, *kernel) can be clustered")
        shape = (int(w.shape[0]), int(w.shape[1]))
        if part is None:
            if cfg.n_clusters > min(shape):
                raise ValueError(f"cannot cut {name!r} ((out, in) = {shape}) into ModuleConfig.n_clusters="
                                 f"{cfg.n_clusters} blocks: lower n_clusters or give its Partition")
            part = Partition.equal_blocks(shape, cfg.n_clusters)
        elif part.shape != shape:
            raise ValueError(f"the partition of {name!r} has shape {part.shape} but the weight's (out, in) is "
                             f"{shape}: build the partition for this weight")
        out[name] = part
    return out


def _diverged(seed: int, lam: float, epoch: int, step: int, steps: int, where: str) -> TrainingDivergedError:
    return TrainingDivergedError(f"training diverged: the loss is not finite at epoch {epoch + 1}, step {step + 1} "
                                 f"of {steps} of seed {seed} (lam {lam:g}{where}). Lower ModuleConfig.lr (or lam), "
                                 "or check the data for nan or inf")


def _first_bad(losses: Tensor) -> int:
    """Index of the first non-finite entry of a 1-D history (-1 if none)."""
    bad = ~torch.isfinite(losses)
    return int(bad.to(torch.uint8).argmax()) if bool(bad.any()) else -1


# --- the lone reference ------------------------------------------------------------------------

def _mean_c(weights: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
    """Mean C over the clustered weights (a 0-d tensor, differentiable)."""
    return torch.stack([layer_clusterability(w, m) for w, m in zip(weights, masks)]).mean()


def train_module(make_model: Callable[[int], nn.Module], seed: int, data: Any, cfg: ModuleConfig) -> ModuleRun:
    """Train ``make_model(seed)`` alone: the reference loop member ``seed`` of an ensemble equals.

    Plain autograd on ``CE - cfg.lam * mean C`` (C of the weights of ``cfg.clustered``) with
    ``torch.optim.SGD`` or ``Adam`` (``cfg.optimizer``, lr ``cfg.lr``). Every epoch visits the
    training set in the order of one ``torch.randperm`` drawn from a ``torch.Generator``
    seeded with ``seed``, in batches of ``cfg.batch_size`` (the last one may be short), and
    measures test accuracy after it.

    ``data``: ``(train_x (N, *in), train_y (N,), test_x (N', *in), test_y (N',))``; the model
    maps (B, *in) to logits (B, n_classes). Returns the trained module (on the data's device)
    with its history.
    """
    if not isinstance(cfg, ModuleConfig):
        raise TypeError(f"cfg must be a ModuleConfig, got {type(cfg).__name__}")
    seed = check_int("seed", seed, 0, SEED_MAX)
    tx, ty, vx, vy = _unpack_data(data)
    model = _build(make_model, seed, tx.device)
    _check_fits(model, seed, tx, (ty, vy))
    parts = _partitions(model, cfg)
    params = dict(model.named_parameters())
    clustered = [params[n] for n in parts]
    masks = [p.mask(params[n].device, params[n].dtype) for n, p in parts.items()]
    opt = OPTIMIZERS[cfg.optimizer]([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(tx), cfg.batch_size
    steps = steps_per_epoch(n, bs)
    hist: dict[str, list[Tensor]] = {"loss": [], "ce": [], "clusterability": []}
    accs: list[float] = []
    model.train()
    for epoch in range(cfg.epochs):
        order = epoch_order(gen, n, tx.device)
        for b in range(steps):
            idx = order[b * bs:(b + 1) * bs]
            ce = F.cross_entropy(model(tx[idx]), ty[idx])
            if clustered:
                c = _mean_c(clustered, masks)
                loss = ce - cfg.lam * c
                hist["clusterability"].append(c.detach())
            else:
                loss = ce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hist["loss"].append(loss.detach())
            hist["ce"].append(ce.detach())
        bad = _first_bad(torch.stack(hist["loss"][-steps:]))
        if bad >= 0:
            raise _diverged(seed, cfg.lam, epoch, bad, steps, "")
        accs.append(_accuracy(model, vx, vy, cfg.eval_batch_size))
    if not accs:
        accs.append(_accuracy(model, vx, vy, cfg.eval_batch_size))
    history = {k: torch.stack(v).tolist() if v else [] for k, v in hist.items()}
    history["test_acc"] = accs
    return ModuleRun(seed, cfg.lam, cfg, model, parts, history)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, chunk: int) -> float:
    """Test accuracy of one module in eval mode, ``chunk`` examples per forward pass."""
    model.eval()
    correct = sum(int((model(x[a:a + chunk]).argmax(-1) == y[a:a + chunk]).sum()) for a in range(0, len(x), chunk))
    model.train()
    return correct / len(x)


# --- the vectorised ensemble -------------------------------------------------------------------

def train_ensemble(make_model: Callable[[int], nn.Module], seeds: Sequence[int], data: Any, cfg: ModuleConfig,
                   lams: Sequence[float] | None = None) -> list[ModuleRun]:
    """Train one member per seed as one vectorised model; member i is ``train_module(make_model, seeds[i], ...)``.

    ``seeds``: M ints (repeats allowed, e.g. one seed at several lambdas). ``lams``: None (every
    member uses ``cfg.lam``) or M lambdas, member i then equals the lone run with
    ``dataclasses.replace(cfg, lam=lams[i])``. Every ``make_model(seed)`` must build the same
    architecture (parameter names, shapes, dtypes); the members' parameters are stacked to
    (M, *shape), each step's batches to (M, B, *in), and the logits come out (M, B, n_classes).

    Returns M :class:`ModuleRun`, in the order of ``seeds``, each holding its own ordinary
    ``nn.Module`` (the one ``make_model`` built, with the trained weights and buffers).
    """
    if not isinstance(cfg, ModuleConfig):
        raise TypeError(f"cfg must be a ModuleConfig, got {type(cfg).__name__}")
    seeds = check_ints("seeds", seeds, 0, SEED_MAX, min_length=1, hint="one seed per member")
    m = len(seeds)
    if lams is None:
        lam_list = [cfg.lam] * m
    else:
        lam_list = check_finite_numbers("lams", lams, hint="one lambda per seed")
        if len(lam_list) != m:
            raise ValueError(f"lams must hold one lambda per seed: {m} seeds, got {len(lam_list)} lambdas")
        lam_list = [check_float(f"lams[{i}]", v, 0.0) for i, v in enumerate(lam_list)]
    if any(v > 0 for v in lam_list) and not cfg.clustered:
        raise ValueError("lams ask for clusterability but no weight is clustered: name the weights in "
                         "ModuleConfig.clustered or give lambdas of 0")
    tx, ty, vx, vy = _unpack_data(data)
    device = tx.device
    models = [_build(make_model, s, device) for s in seeds]
    _check_fits(models[0], seeds[0], tx, (ty, vy))
    _check_same_architecture(models, seeds)
    parts = _partitions(models[0], cfg)
    for i in range(m):
        models[i].train()

    params, buffers = stack_module_state(models)  # {name: (M, *shape)}, fresh leaf tensors
    base = copy.deepcopy(models[0]).to("meta")  # the architecture alone, for functional_call
    names = list(parts)
    masks = [p.mask(device, params[nm].dtype) for nm, p in parts.items()]
    dtype = next(iter(params.values())).dtype if params else torch.float32
    lam_t = torch.tensor(lam_list, dtype=dtype, device=device)

    def member_loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor, y: Tensor,
                    lam: Tensor) -> tuple[Tensor, ...]:
        """One member's loss, CE and mean C (0-d each) on its batch x (B, *in), y (B,)."""
        ce = F.cross_entropy(functional_call(base, (p, b), (x,)), y)
        if not names:
            return ce, ce
        c = _mean_c([p[nm] for nm in names], masks)
        return ce - lam * c, ce, c

    def member_logits(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(base, (p, b), (x,))

    step_fn = vmap(member_loss, in_dims=(0, 0, 0, 0, 0), randomness="error")
    eval_fn = vmap(member_logits, in_dims=(0, 0, None), randomness="error")
    trainable = [t for t in params.values() if t.requires_grad]
    opt = OPTIMIZERS[cfg.optimizer](trainable, lr=cfg.lr)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    n, bs = len(tx), cfg.batch_size
    steps = steps_per_epoch(n, bs)
    in_shape = tuple(tx.shape[1:])
    rows: list[tuple[Tensor, ...]] = []  # per step: (M,) loss, ce[, c]
    acc_rows: list[Tensor] = []  # per epoch: (M,) correct test answers

    def evaluate() -> Tensor:
        base.eval()
        with torch.no_grad():
            correct = sum((eval_fn(params, buffers, vx[a:a + cfg.eval_batch_size]).argmax(-1)
                           == vy[a:a + cfg.eval_batch_size]).sum(-1) for a in range(0, len(vx), cfg.eval_batch_size))
        base.train()
        return correct  # (M,) counts of correct test answers

    base.train()
    for epoch in range(cfg.epochs):
        orders = torch.stack([epoch_order(g, n, device) for g in gens])  # (M, N)
        for b in range(steps):
            idx = orders[:, b * bs:(b + 1) * bs]  # (M, B)
            x = tx.index_select(0, idx.reshape(-1)).view(m, -1, *in_shape)
            y = ty.index_select(0, idx.reshape(-1)).view(m, -1)
            try:
                out = step_fn(params, buffers, x, y, lam_t)
            except RuntimeError as err:
                if "randomness" in str(err):
                    raise ValueError("the model's forward draws random numbers (dropout?): a vectorised member "
                                     "cannot draw what its lone run draws; train without it") from err
                raise
            opt.zero_grad(set_to_none=True)
            out[0].sum().backward()
            opt.step()
            rows.append(tuple(t.detach() for t in out))
        epoch_loss = torch.stack([r[0] for r in rows[-steps:]], 1)  # (M, steps)
        if not bool(torch.isfinite(epoch_loss).all()):
            i = int((~torch.isfinite(epoch_loss)).any(1).to(torch.uint8).argmax())
            raise _diverged(seeds[i], lam_list[i], epoch, _first_bad(epoch_loss[i]), steps,
                            f", member {i} of {m} trained together")
        acc_rows.append(evaluate())
    if not acc_rows:
        acc_rows.append(evaluate())

    keys = ("loss", "ce", "clusterability") if names else ("loss", "ce")
    cols = [torch.stack(col, 1).tolist() for col in zip(*rows)] if rows else [[[] for _ in range(m)] for _ in keys]
    accs = [[c / len(vx) for c in row] for row in torch.stack(acc_rows, 1).tolist()]  # (M, epochs), as train_module
    runs = []
    with torch.no_grad():
        for i, (seed, lam, model) in enumerate(zip(seeds, lam_list, models)):
            for nm, t in model.named_parameters():
                t.copy_(params[nm][i])
            for nm, t in model.named_buffers():
                t.copy_(buffers[nm][i])
            history = {k: col[i] for k, col in zip(keys, cols)}
            history.setdefault("clusterability", [])
            history["test_acc"] = accs[i]
            runs.append(ModuleRun(seed, lam, dataclasses.replace(cfg, lam=lam), model, dict(parts), history))
    return runs


def _check_same_architecture(models: Sequence[nn.Module], seeds: Sequence[int]) -> None:
    """Raise unless every member has the first one's type, parameters and buffers (names, shapes, dtypes)."""
    def layout(model: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype, bool]]:
        return [(n, tuple(t.shape), t.dtype, t.requires_grad) for n, t in model.named_parameters()] + \
            [(n, tuple(t.shape), t.dtype, False) for n, t in model.named_buffers()]
    first = layout(models[0])
    for seed, model in zip(seeds[1:], models[1:]):
        if type(model) is not type(models[0]) or layout(model) != first:
            diff = sorted(set(layout(model)) ^ set(first), key=str)[:3]
            raise ValueError(f"make_model({seed}) builds a different architecture from make_model({seeds[0]}) "
                             f"({type(model).__name__} vs {type(models[0]).__name__}; differing parameters or "
                             f"buffers (name, shape, dtype, trainable): {diff}): members of one ensemble must "
                             "share one architecture")

