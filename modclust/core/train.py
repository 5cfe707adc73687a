"""Training: the seed's recipe (SGD, batch 64, CE - lambda * C) done reproducibly and fast.

Two paths compute the same thing:

- ``method="fast"`` (default): a hand-written forward/backward for the bias-free ReLU MLP with
  the closed-form clusterability gradient, on resident tensors. It trains M configurations at
  once as one batched model (weights stacked as (M, out, in)); each member draws its init and
  its data order from its own seed, exactly as if it were trained alone.
- ``method="autograd"``: an ``nn.Module`` trained by autograd on ``CE - lambda * C`` (the
  seed's way), the reference the fast path is tested against.

A seed fixes everything: one ``torch.Generator`` per member first draws the weights, then one
permutation of the training set per epoch. Both are drawn on the CPU, so the same seed gives
the same init and data order on any device.

The parts every training loop shares (this module's two and the data-parallel one of
:mod:`modclust.core.distributed`) are public here: :func:`check_data_fits`,
:func:`seeded_model`, :func:`epoch_order`, :func:`steps_per_epoch`, :func:`eval_accuracy` and
:func:`eval_accuracies`, :func:`batch_key` (which configs can be trained as one batched model)
and :func:`run_name`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from modclust.core.checks import check_choice, check_float, check_int
from modclust.core.clusterability import clusterability
from modclust.core.data import DATASETS, Dataset
from modclust.core.model import (MLP, SEED_MAX, SEED_WIDTHS, check_widths, forward, init_weights, layer_names,
                                 layer_shapes, layers_label)
from modclust.core.partition import Partition
from modclust.core.progress import bar as progress_bar


DEFAULT_CLUSTERED = ("fc2",)
"""Where the seed puts the loss; runs elsewhere say so in their name."""

SEED_LR = 1e-3
"""The seed's learning rate; runs with another say so in their name."""

MASKS = ("blocks", "random")
"""What the clusterability loss is measured on: k diagonal blocks, or a random mask of their density."""

SETTINGS = ("blocks", "random_mask", "l1", "none", "random_init", "shuffled_labels")
"""What a run is, for the controls of a modularity claim (:func:`setting_of`)."""

_MASK_STREAM = 0x5EED_0A5C  # offsets a run's seed for its random mask, apart from its init and data order
_LABEL_STREAM = 0x5EED_1ABE  # ... and for its label permutation


def _side_generator(seed: int, stream: int, index: int = 0) -> torch.Generator:
    """A generator for a run's extra random choices, on a stream apart from its init and data
    order (which one generator seeded with ``seed`` draws), so a control shares those with its
    model."""
    return torch.Generator().manual_seed((seed * 1_000_003 + stream + 7919 * index) % (2**63 - 1))


def random_mask(like: Tensor, seed: int, index: int = 0) -> Tensor:
    """A 0/1 mask of ``like``'s shape with exactly as many ones as ``like``, at places drawn from ``seed``.

    The same seed (and ``index``, e.g. the layer's position) gives the same mask on any device.
    """
    flat = like.detach().flatten().cpu()
    perm = torch.randperm(flat.numel(), generator=_side_generator(seed, _MASK_STREAM, index))
    return flat[perm].view(like.shape).to(like.device)


def label_permutation(n: int, seed: int) -> Tensor:
    """The fixed permutation of ``n`` training labels a ``shuffle_labels`` run of ``seed`` trains on."""
    return torch.randperm(n, generator=_side_generator(seed, _LABEL_STREAM))


def setting_of(config: TrainConfig) -> str:
    """Which of :data:`SETTINGS` a run is: untrained, trained on shuffled labels, with L1, with the
    loss on random masks or on blocks, or plain (lam = 0)."""
    if config.epochs == 0:
        return "random_init"
    if config.shuffle_labels:
        return "shuffled_labels"
    if config.l1 > 0:
        return "l1"
    if config.lam > 0:
        return "random_mask" if config.mask == "random" else "blocks"
    return "none"


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the seed's clustered configuration.

    Every field is checked on construction (also by ``from_dict`` and ``dataclasses.replace``):
    a wrong kind of value raises TypeError, an out-of-range one ValueError, naming the field.
    The last width is the number of classes; it may not exceed the dataset's, and training
    checks it against the labels of the data it is given (as it checks widths[0] against the
    number of features).
    """

    dataset: str = "mnist"  # "mnist" or "fashion-mnist" (a key of modclust.core.data.DATASETS)
    widths: tuple[int, ...] = SEED_WIDTHS  # layer widths, input first, outputs (classes) last
    n_clusters: int = 4  # k equal diagonal blocks per clustered layer
    clustered_layers: tuple[str, ...] = DEFAULT_CLUSTERED  # layers whose C enters the loss
    lam: float = 15.0  # lambda: loss = CE - lam * mean C over clustered layers
    lr: float = SEED_LR  # SGD learning rate
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    # Controls (what a claim about modularity must be compared with; see loss_masks):
    mask: str = "blocks"  # what C is measured on in the loss: "blocks" or "random" (the blocks' density, no blocks)
    l1: float = 0.0  # L1 strength on the clustered layers, as a proximal step (soft threshold lr * l1 per step)
    shuffle_labels: bool = False  # train on a fixed random permutation of the training labels (nothing to learn)

    def __post_init__(self) -> None:
        """Check every field where it enters: a bad value fails here, not deep inside training."""
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        check_choice("TrainConfig.dataset", self.dataset, DATASETS)
        put("widths", check_widths(self.widths, "TrainConfig.widths"))
        if isinstance(self.clustered_layers, str):
            raise TypeError(f"TrainConfig.clustered_layers must be a sequence of layer names, got the string "
                            f"{self.clustered_layers!r} (write ({self.clustered_layers!r},))")
        put("clustered_layers", tuple(self.clustered_layers))
        names = layer_names(self.widths)
        unknown = [n for n in self.clustered_layers if n not in names]
        if unknown:
            raise ValueError(f"clustered_layers {unknown} are not layers of this MLP ({names})")
        put("n_clusters", check_int("TrainConfig.n_clusters", self.n_clusters, 1))
        shapes = layer_shapes(self.widths)
        for name in self.clustered_layers:
            out, inp = shapes[name]
            if self.n_clusters > min(out, inp):
                raise ValueError(
                    f"TrainConfig.n_clusters must be an int in [1, {min(out, inp)}] to cut clustered layer "
                    f"{name} ({out} x {inp}) into equal blocks, got {self.n_clusters}: lower n_clusters or "
                    "widen the layer")
        put("lam", check_float("TrainConfig.lam", self.lam, 0.0, hint="the weight of clusterability in the loss"))
        put("lr", check_float("TrainConfig.lr", self.lr, 0.0, strict_min=True, hint="the SGD learning rate"))
        put("batch_size", check_int("TrainConfig.batch_size", self.batch_size, 1))
        put("epochs", check_int("TrainConfig.epochs", self.epochs, 0))
        put("seed", check_int("TrainConfig.seed", self.seed, 0, SEED_MAX))
        check_choice("TrainConfig.mask", self.mask, MASKS)
        put("l1", check_float("TrainConfig.l1", self.l1, 0.0, hint="the L1 strength on the clustered layers"))
        if not isinstance(self.shuffle_labels, bool):
            raise TypeError(f"TrainConfig.shuffle_labels must be True or False, got {self.shuffle_labels!r}")
        if (self.mask != "blocks" or self.l1 > 0) and not self.clustered_layers:
            raise ValueError(f"TrainConfig.mask={self.mask!r} and l1={self.l1} act on the clustered layers, but "
                             "clustered_layers is empty: name the layers they apply to")
        n_classes = len(DATASETS[self.dataset].classes)
        if self.widths[-1] > n_classes:
            raise ValueError(f"TrainConfig.widths must end in at most {n_classes} outputs (the classes of "
                             f"{self.dataset!r}), got {self.widths[-1]} in {self.widths}")

    def partitions(self) -> dict[str, Partition]:
        """Equal diagonal blocks on each clustered layer.

        Contiguous equal blocks of the same unit count line up through the network: fc1's
        output clusters are fc2's input clusters, and so on.
        """
        return {name: self.blocks(name) for name in self.clustered_layers}

    def blocks(self, layer: str) -> Partition:
        """Equal diagonal blocks on ``layer`` with this config's k, clamped to the layer's size.

        A clustered layer's partition (k fits it, as checked on construction); for a layer that
        is not clustered, the blocks its C is measured on (about 1/k for random weights).
        """
        shapes = layer_shapes(self.widths)
        if layer not in shapes:
            raise ValueError(f"unknown layer {layer!r}: this MLP has {list(shapes)}")
        return Partition.equal_blocks(shapes[layer], min(self.n_clusters, *shapes[layer]))

    def loss_masks(self, device: str | torch.device = "cpu") -> dict[str, Tensor]:
        """The 0/1 mask each clustered layer's C is taken on in the loss (float32, on ``device``).

        ``mask="blocks"``: the layer's equal diagonal blocks. ``mask="random"``: the same number
        of ones at random places (:func:`random_mask`): the loss then makes the layer exactly as
        sparse as the blocks do, with no modular structure.
        """
        out = {}
        for i, name in enumerate(self.clustered_layers):
            blocks = self.blocks(name).mask(device)
            out[name] = blocks if self.mask == "blocks" else random_mask(blocks, self.seed, i)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"], d["clustered_layers"] = list(self.widths), list(self.clustered_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{**d, "widths": tuple(d.get("widths", SEED_WIDTHS)),
                      "clustered_layers": tuple(d.get("clustered_layers", DEFAULT_CLUSTERED))})


@dataclass
class TrainResult:
    """A trained model with its partitions, config and training history."""

    config: TrainConfig
    model: MLP
    partitions: dict[str, Partition]
    history: dict[str, list[float]] = field(default_factory=dict)
    # history: "ce" and "clusterability" per step (C is the mean over clustered layers, or
    # fc2's C under equal blocks when no layer is clustered), "test_acc" per epoch (index 0 =
    # before training)

    @property
    def test_acc(self) -> float:
        return self.history["test_acc"][-1]

    @property
    def final_clusterability(self) -> float:
        return self.history["clusterability"][-1]

    def blocks(self, layer: str) -> Partition:
        """The run's partition of ``layer``, or, when the layer was not clustered, equal blocks with
        the run's k clamped to the layer (:meth:`TrainConfig.blocks`): the one fallback every
        analysis of an unclustered layer uses."""
        part = self.partitions.get(layer)
        return part if part is not None else self.config.blocks(layer)


def run_name(config: TrainConfig) -> str:
    """A run's name: its checkpoint's file name and its key in results.

    ``lam<lambda>_seed<seed>``, then ``_<layers>`` (:func:`modclust.core.model.layers_label`,
    e.g. ``_all``) when the loss is not on the seed's layer fc2 alone, then what else sets the
    run apart: ``_randmask``, ``_l1-<strength>``, ``_shuffled``, ``_init`` (no training) and
    ``_lr<lr>`` (a learning rate other than the seed's), e.g. ``lam15_seed0_randmask_lr0.05``.
    """
    name = f"lam{config.lam:g}_seed{config.seed}"
    if tuple(config.clustered_layers) != DEFAULT_CLUSTERED:
        name += f"_{layers_label(config.clustered_layers, config.widths)}"
    if config.mask != "blocks":
        name += "_randmask"
    if config.l1 > 0:
        name += f"_l1-{config.l1:g}"
    if config.shuffle_labels:
        name += "_shuffled"
    if config.epochs == 0:
        name += "_init"
    if config.lr != SEED_LR:
        name += f"_lr{config.lr:g}"
    return name


BATCHED_FIELDS = ("dataset", "widths", "batch_size", "epochs", "clustered_layers")
"""The TrainConfig fields that configs trained together by :func:`train_many` must share."""


def batch_key(config: TrainConfig) -> tuple:
    """The values of :data:`BATCHED_FIELDS`: configs with equal keys can be trained as one batched model."""
    return tuple(getattr(config, f) for f in BATCHED_FIELDS)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """SGD steps in one epoch over ``n`` examples: every full batch and a last, short one if any."""
    return math.ceil(n / batch_size)


def seeded_model(config: TrainConfig, device: str | torch.device) -> tuple[MLP, torch.Generator]:
    """The config's initial model on ``device`` and the generator that drew it, seeded with ``config.seed``.

    The generator (on the CPU) goes on to draw the data order, one :func:`epoch_order` per
    epoch, so every trainer gives a seed the same init and data order.
    """
    gen = torch.Generator().manual_seed(config.seed)
    model = MLP(config.widths).to(device)
    model.set_weights(init_weights(config.widths, gen))
    return model, gen


def epoch_order(generator: torch.Generator, n: int, device: str | torch.device) -> Tensor:
    """One epoch's order of the ``n`` training examples: a permutation drawn on the CPU, moved to ``device``."""
    return torch.randperm(n, generator=generator).to(device)


def _tracked_masks(config: TrainConfig, device: torch.device) -> dict[str, Tensor]:
    """Masks whose C is logged: the clustered layers' loss masks, else fc2 (or fc1) under equal blocks.

    Logging C of an unclustered model shows how far it sits from the 1/k of random weights.
    """
    if config.clustered_layers:
        return config.loss_masks(device)
    name = "fc2" if len(config.widths) > 2 else "fc1"
    return {name: config.blocks(name).mask(device)}


def _check_batchable(configs: Sequence[TrainConfig]) -> None:
    first = configs[0]
    for c in configs[1:]:
        for f in BATCHED_FIELDS:
            if getattr(c, f) != getattr(first, f):
                raise ValueError(
                    f"configs trained together must share {f} ({getattr(first, f)!r} vs "
                    f"{getattr(c, f)!r}): train them in separate calls"
                )


def train(config: TrainConfig, data: Dataset, method: str = "fast", progress: bool = True,
          cuda_graph: bool | None = None, test_every_epoch: bool = True) -> TrainResult:
    """Train one configuration on ``data`` (on the data's device); ``cuda_graph`` and
    ``test_every_epoch`` as in ``train_many``."""
    if method == "fast":
        return train_many([config], data, progress=progress, cuda_graph=cuda_graph,
                          test_every_epoch=test_every_epoch)[0]
    if method == "autograd":
        return _train_autograd(config, data, progress=progress)
    raise ValueError(f"method must be 'fast' or 'autograd', got {method!r}")


@torch.no_grad()
def train_many(configs: Sequence[TrainConfig], data: Dataset, progress: bool = True,
               cuda_graph: bool | None = None, test_every_epoch: bool = True) -> list[TrainResult]:
    """Train several configurations as one batched model; member i equals ``train(configs[i])``.

    Configs may differ in seed, lam, lr and n_clusters; they must share the dataset,
    architecture, batch size, epochs and clustered layers.

    ``cuda_graph``: None (default) captures the training step as a CUDA graph on CUDA and runs
    it eagerly on the CPU; True on the CPU runs the same static-buffer step without capture
    (the numbers are identical either way, except that a lone member's eager CPU step rounds
    its scalars in double precision); False runs every step eagerly.

    ``test_every_epoch``: True (default) logs test accuracy before training and after every
    epoch; False measures it once, after training (``history["test_acc"]`` then has one
    entry). One pass over MNIST's test set costs about 5 % of a training epoch.
    """
    if not configs:
        return []
    _check_batchable(configs)
    cfg0 = configs[0]
    check_data_fits(cfg0, data)
    device = data.device
    m = len(configs)
    n_train = len(data.train_x)
    bs = cfg0.batch_size
    steps = steps_per_epoch(n_train, bs)
    total_steps = steps * cfg0.epochs

    gens = [torch.Generator().manual_seed(c.seed) for c in configs]
    inits = [init_weights(c.widths, g) for c, g in zip(configs, gens)]
    weights = [torch.stack([w[l] for w in inits]).to(device) for l in range(len(cfg0.widths) - 1)]
    layer_index = {name: i for i, name in enumerate(layer_names(cfg0.widths))}

    y_rows = _label_rows(configs, data)  # (M, N) each member's training labels
    masks_per_member = [_tracked_masks(c, device) for c in configs]
    masks = {layer_index[name]: torch.stack([mm[name] for mm in masks_per_member])
             for name in masks_per_member[0]}
    n_full = n_train // bs
    static = (device.type == "cuda") if cuda_graph is None else bool(cuda_graph)
    static = static and n_full > 0 and total_steps > 0
    # a lone member on the CPU keeps its step's scalars as Python floats: reading one back
    # costs nothing there, and it saves the tiny tensor ops around them
    sgd_step = _BatchedSGD(weights, configs, masks, host_scalars=m == 1 and device.type == "cpu" and not static)

    lp_hist = torch.empty(m, total_steps, device=device)  # summed log-prob of the labels: -B * CE
    c_hist = torch.empty(m, total_steps, device=device)
    acc_hist = [eval_accuracies(weights, data)] if test_every_epoch else []  # device tensors: no sync
    bar = _StepBar(total_steps, f"train {m} model{'s' if m > 1 else ''}", progress)

    # Two batching modes. Static: every full batch is one step of _StaticStep (a CUDA graph on
    # CUDA), then the last, partial batch (if any) eagerly. Eager: every batch by _eager_epoch.
    static_step = _StaticStep(sgd_step, data, y_rows, lp_hist, c_hist, bs) if static else None
    orders = _EpochOrders(gens, n_train, device)
    # Non-finite loss: each epoch's history is checked once it is written (see _FiniteWatch).
    watch = _FiniteWatch(lp_hist, c_hist, configs, steps, bs, n_train, cfg0.epochs)
    step = 0
    try:
        host_order = orders.draw() if cfg0.epochs else None
        for epoch in range(cfg0.epochs):
            assert host_order is not None
            first = 0
            if static_step is not None:
                static_step.start_epoch(host_order)  # runs after the last epoch's steps
                first = n_full
                for _ in range(n_full):
                    static_step()
                    step += 1
                    bar.at(step)
            order = static_step.order if static_step is not None else host_order.to(device, non_blocking=True)
            n_eager = _eager_epoch(sgd_step, data, y_rows, order, bs, first, lp_hist, c_hist, step, bar)
            step += n_eager
            if static_step is not None and n_eager:
                static_step.skip(n_eager)
            watch.raise_if_diverged(epoch)
            if epoch + 1 < cfg0.epochs:
                host_order = orders.draw()
            if test_every_epoch or epoch + 1 == cfg0.epochs:
                acc_hist.append(eval_accuracies(weights, data))
        if not acc_hist:  # no epochs and no per-epoch log: the accuracy of the init
            acc_hist.append(eval_accuracies(weights, data))
        watch.raise_if_weights_diverged(weights)
    finally:
        bar.close()
        orders.close()
    acc_rows = torch.stack(acc_hist).tolist()  # (epochs + 1, M)

    sizes = torch.full((steps,), float(bs))  # each step's batch size: the last one may be short
    sizes[-1] = n_train - (steps - 1) * bs
    ce_cpu, c_cpu = (lp_hist.cpu() / -sizes.repeat(cfg0.epochs)), c_hist.cpu()
    results = []
    for i, cfg in enumerate(configs):
        model = MLP(cfg.widths).to(device)
        model.set_weights([w[i] for w in weights])
        history = {
            "ce": ce_cpu[i].tolist(),
            "clusterability": c_cpu[i].tolist() if total_steps else [_final_c(model, cfg)],
            "test_acc": [a[i] for a in acc_rows],
        }
        results.append(TrainResult(cfg, model, cfg.partitions(), history))
    return results


class _StepBar:
    """The progress bar of a training run, moved every 50 steps and at the last."""

    def __init__(self, total_steps: int, desc: str, progress: bool) -> None:
        self.total = total_steps
        self.bar = progress_bar(total_steps, desc, disable=not progress)

    def at(self, step: int) -> None:
        if step % 50 == 0 or step == self.total:
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class _EpochOrders:
    """Each member's data order: one permutation per epoch from its own generator, drawn on the
    CPU (in threads when there are many members on CUDA) while the device runs the previous epoch."""

    def __init__(self, gens: Sequence[torch.Generator], n_train: int, device: torch.device) -> None:
        self.gens, self.n_train, self.cuda = gens, n_train, device.type == "cuda"
        self.pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1)) if len(gens) >= 16 and self.cuda else None

    def draw(self) -> Tensor:
        """(M, N) this epoch's orders (pinned on CUDA, to be copied without waiting)."""
        perm = lambda g: torch.randperm(self.n_train, generator=g)  # noqa: E731
        out = torch.stack(list(self.pool.map(perm, self.gens)) if self.pool else [perm(g) for g in self.gens])
        return out.pin_memory() if self.cuda else out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class _StaticStep:
    """The training step on static buffers: a full batch whose position and step number are read
    from device tensors, its history written in place.

    So on CUDA it is captured once as a CUDA graph and replayed (one launch per step instead of
    ~30 kernel launches from Python), after three warm-up runs on a side stream as CUDA graphs
    need. On the CPU the same step runs eagerly (tests use it).
    """

    def __init__(self, sgd_step: _BatchedSGD, data: Dataset, y_rows: Tensor, lp_hist: Tensor, c_hist: Tensor,
                 batch_size: int) -> None:
        self.sgd_step, self.data, self.y_rows, self.lp_hist, self.c_hist = sgd_step, data, y_rows, lp_hist, c_hist
        self.bs = batch_size
        self.m, n_train = y_rows.shape
        device = self.device = data.device
        self.order = torch.empty(self.m, n_train, dtype=torch.long, device=device)  # this epoch's orders
        self.cursor = torch.zeros(1, dtype=torch.long, device=device)  # first example of the batch
        self.step_t = torch.zeros(1, dtype=torch.long, device=device)  # global step number
        self.batch_pos = torch.arange(batch_size, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmups = 0

    def start_epoch(self, host_order: Tensor) -> None:
        """Load the epoch's orders (M, N) and go back to its first batch."""
        self.order.copy_(host_order, non_blocking=True)
        self.cursor.zero_()

    def skip(self, n: int) -> None:
        """Count ``n`` steps run elsewhere (the eager last batch)."""
        self.step_t.add_(n)

    def _step(self) -> None:
        idx = self.order.index_select(1, self.cursor + self.batch_pos)
        lp, c = self.sgd_step(*_batch(self.data, self.y_rows, idx, self.m))
        self.lp_hist.index_copy_(1, self.step_t, lp.unsqueeze(1))
        self.c_hist.index_copy_(1, self.step_t, c.unsqueeze(1))  # type: ignore[union-attr]
        self.cursor.add_(self.bs)
        self.step_t.add_(1)

    def __call__(self) -> None:
        """One step: replayed, run eagerly (CPU), run as a warm-up, or captured then replayed."""
        if self.graph is not None:
            self.graph.replay()
        elif self.device.type != "cuda":
            self._step()
        elif self.warmups < 3:  # warm up on a side stream before capture, as CUDA graphs need
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._step()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.warmups += 1
        else:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step()  # recorded, not run
            self.graph.replay()


def _eager_epoch(sgd_step: _BatchedSGD, data: Dataset, y_rows: Tensor, order: Tensor, batch_size: int,
                 first: int, lp_hist: Tensor, c_hist: Tensor, step: int, bar: _StepBar) -> int:
    """The epoch's batches from batch ``first`` on (all of them, or the last, partial one after
    the static steps), one eager step each, after global step ``step``; their history is written
    once. Returns the number of steps run."""
    m = order.shape[0]
    eager = _eager_batches(order, batch_size, first)
    # the epoch's labels gathered once, cut like the indices
    labels = _eager_batches(y_rows.gather(1, order), batch_size, first) if eager else []
    lps, cs = [], []
    for idx, y in zip(eager, labels):
        x = data.train_x.index_select(0, idx)
        lp, c = sgd_step(x.view(m, -1, x.shape[1]), y.view(m, -1))
        lps.append(lp)
        cs.append(c)
        step += 1
        bar.at(step)
    if eager:
        cols = slice(step - len(eager), step)
        lp_hist[:, cols] = torch.stack(lps, 1)
        c_hist[:, cols] = (torch.tensor(cs).view(m, -1) if sgd_step.host_scalars
                           else torch.stack(cs, 1))  # type: ignore[arg-type]
    return len(eager)


class TrainingDivergedError(FloatingPointError):
    """Training met a non-finite loss (nan or inf), or ended with non-finite weights.

    The message names the first bad step (epoch and step, counting from 1) and the
    configuration, or which members of a batched ``train_many`` run diverged.
    """


def check_data_fits(config: TrainConfig, data: Dataset) -> None:
    """Raise ValueError unless ``data`` is the config's dataset and fits its architecture: as many
    features as widths[0], at least one example with one label each, labels below widths[-1]."""
    if data.name != config.dataset:
        raise ValueError(f"configs ask for dataset {config.dataset!r} but data is {data.name!r}")
    if data.train_x.ndim != 2 or data.train_x.shape[1] != config.widths[0]:
        raise ValueError(f"TrainConfig.widths start at {config.widths[0]} inputs but the data has "
                         f"{tuple(data.train_x.shape[1:])} features: make widths[0] the number of features")
    if len(data.train_x) == 0 or len(data.train_x) != len(data.train_y):
        raise ValueError(f"the training data needs one label per example and at least one example, got "
                         f"{len(data.train_x)} inputs and {len(data.train_y)} labels")
    lo, hi = (int(v) for v in torch.aminmax(torch.cat([data.train_y.flatten(), data.test_y.flatten()])))
    if lo < 0 or hi >= config.widths[-1]:
        raise ValueError(
            f"TrainConfig.widths end in {config.widths[-1]} outputs but the data has labels from {lo} to {hi}: "
            f"the last width must be the number of classes ({data.n_classes} for {data.name!r})")


def _describe_member(configs: Sequence[TrainConfig], i: int) -> str:
    if len(configs) == 1:
        return repr(configs[0])
    return f"member {i} of the {len(configs)} trained together (configs[{i}] = {configs[i]!r})"


class _FiniteWatch:
    """Checks the per-step history of a batched run for a non-finite loss, once per epoch.

    On the CPU the check is read at once. On CUDA the epoch's verdict is copied to pinned host
    memory behind an event and read at the end of the next epoch (or of training), so it never
    makes the host wait for the device while work is queued. The message is built from the
    history copied to the CPU, and names the first bad step of every member that diverged.
    """

    def __init__(self, lp_hist: Tensor, c_hist: Tensor, configs: Sequence[TrainConfig], steps: int,
                 batch_size: int, n_train: int, epochs: int) -> None:
        self.lp, self.c, self.configs = lp_hist, c_hist, configs
        self.steps, self.bs, self.n_train, self.epochs = steps, batch_size, n_train, epochs
        self.cuda = lp_hist.device.type == "cuda"
        self.pending: tuple[Tensor, Any] | None = None  # the last epoch's (host flag, event) on CUDA

    def _flag(self, hi: int) -> Tensor:
        """True when every logged value up to step ``hi`` (exclusive) of the last epoch is finite."""
        lo = hi - self.steps
        return torch.isfinite(self.lp[:, lo:hi]).all() & torch.isfinite(self.c[:, lo:hi]).all()

    def epoch_done(self, epoch: int) -> TrainingDivergedError | None:
        flag = self._flag((epoch + 1) * self.steps)
        if not self.cuda:
            return None if bool(flag) else self.error(epoch)
        err = self._read_pending(epoch)
        host = torch.empty((), dtype=torch.bool, pin_memory=True)
        host.copy_(flag, non_blocking=True)  # queued on the device's current stream, after the epoch
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(flag.device))
        self.pending = (host, event)
        return err

    def raise_if_diverged(self, epoch: int) -> None:
        """:meth:`epoch_done`, raising its error."""
        err = self.epoch_done(epoch)
        if err is not None:
            raise err

    def raise_if_weights_diverged(self, weights: Sequence[Tensor]) -> None:
        """:meth:`finished`, raising its error."""
        err = self.finished(weights)
        if err is not None:
            raise err

    def _read_pending(self, current: int) -> TrainingDivergedError | None:
        """The verdict of the epoch before ``current`` (or of the last one, at the end)."""
        if self.pending is None:
            return None
        host, event = self.pending
        self.pending = None
        event.synchronize()
        return None if bool(host) else self.error(current)

    def finished(self, weights: Sequence[Tensor]) -> TrainingDivergedError | None:
        """The last epoch's verdict, then the final weights (the last step's result)."""
        err = self._read_pending(self.epochs - 1)
        if err is not None:
            return err
        ok = torch.stack([torch.isfinite(w).flatten(1).all(1) for w in weights]).all(0)  # (M,)
        bad = (~ok).nonzero().flatten().tolist()
        if not bad:
            return None
        who = "; ".join(_describe_member(self.configs, i) for i in bad)
        return TrainingDivergedError(
            f"training diverged: the weights are not finite after the last step (epoch {self.epochs}, step "
            f"{self.steps} of {self.steps}) of {who}. Lower TrainConfig.lr (or lam), or check the data for "
            "nan or inf")

    def error(self, current: int) -> TrainingDivergedError:
        """The error for a run whose history is written up to the end of epoch ``current`` (0-based)."""
        written = (current + 1) * self.steps  # later columns are not written yet
        lp, c = self.lp[:, :written].cpu(), self.c[:, :written].cpu()
        bad = ~(torch.isfinite(lp) & torch.isfinite(c))
        members = bad.any(1).nonzero().flatten().tolist()
        parts = []
        for i in members:
            t = int(bad[i].to(torch.uint8).argmax())
            epoch, k = divmod(t, self.steps)
            size = self.bs if k < self.steps - 1 else self.n_train - (self.steps - 1) * self.bs
            ce = float(lp[i, t]) / -size
            parts.append(f"at epoch {epoch + 1}, step {k + 1} of {self.steps} (global step {t + 1} of "
                         f"{self.epochs * self.steps}; cross-entropy {ce}, clusterability {float(c[i, t])}) of "
                         f"{_describe_member(self.configs, i)}")
        return TrainingDivergedError(
            "training diverged: the loss is not finite " + "; and ".join(parts)
            + f". Training stopped at the end of epoch {current + 1} of {self.epochs}. Lower TrainConfig.lr (or "
              "lam), or check the data for nan or inf")


def _final_c(model: MLP, cfg: TrainConfig) -> float:
    masks = _tracked_masks(cfg, model.fc1.weight.device)
    ws = dict(zip(model.layer_names, model.weights()))
    return float(sum(clusterability(ws[n], mk) for n, mk in masks.items()) / len(masks))


class _BatchedSGD:
    """One plain SGD step on CE - lam * mean C of every stacked member, in place, in few ops.

    With ``l1`` > 0, each clustered layer then takes the L1 penalty's proximal step (a soft
    threshold of lr * l1), which sets weights exactly to zero.

    A step of this small MLP costs more in op dispatch than in arithmetic, so: each layer's
    CE step is fused into the matmul that forms its gradient (``W += -lr/B * g^T a`` as one
    ``baddbmm_``, no gradient tensor), and the clusterability step, whose gradient
    (2/T) W (M - C) depends on W alone (T = sum W^2), is one elementwise factor
    ``W *= 1 + r (M - C)`` with r = 2 lr lam_layer / T, applied first. Both gradients are
    taken at the weights before the step, as in SGD on the summed loss.

    ``host_scalars`` (one member on the CPU, not static): C, T and r are Python floats, and
    C is returned as one; otherwise they stay device tensors, as a CUDA graph needs.
    """

    def __init__(self, weights: list[Tensor], configs: Sequence[TrainConfig], masks: dict[int, Tensor],
                 host_scalars: bool = False):
        cfg0 = configs[0]
        device, m = weights[0].device, len(configs)
        self.weights = weights
        self.weights_t = [w.transpose(1, 2) for w in weights]  # views stay valid: updates are in place
        self.m = m
        self.lr = cfg0.lr if all(c.lr == cfg0.lr for c in configs) else None  # None: per member
        self.neg_lr = torch.tensor([-c.lr for c in configs], device=device).view(m, 1, 1)
        self.clustered = bool(cfg0.clustered_layers)
        self.masks = masks  # layer index -> (M, out, in) mask of the layers whose C is logged
        per_layer = [2 * c.lr * c.lam / max(len(cfg0.clustered_layers), 1) for c in configs]
        self.two_lr_lam = torch.tensor(per_layer, device=device).view(m, 1, 1)
        self.host_scalars = host_scalars and m == 1
        self.two_lr_lam_host = per_layer[0]
        self.one = torch.ones(m, 1, 1, device=device)
        self._minus_ones: dict[int, Tensor] = {}
        # L1 as a proximal step on the clustered layers: W <- W - clamp(W, -t, t), t = lr * l1
        names = layer_names(cfg0.widths)
        self.l1_layers = ({names.index(n) for n in cfg0.clustered_layers}
                          if any(c.l1 > 0 for c in configs) else set())
        self.l1_t = torch.tensor([c.lr * c.l1 for c in configs], device=device).view(m, 1, 1)

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | float]:
        """Step on inputs (M, B, in) and labels (M, B); returns each member's summed log-prob
        of the labels (-B * CE) and its mean C over the tracked layers, both before the step."""
        acts, h = [x], x
        last = len(self.weights) - 1
        for i, w_t in enumerate(self.weights_t):
            h = torch.bmm(h, w_t)
            if i < last:
                acts.append(h.relu_())
        logp = torch.log_softmax(h, dim=-1)
        label = y.unsqueeze(-1)
        sum_logp = logp.gather(-1, label).sum((1, 2))
        b = x.shape[1]
        if b not in self._minus_ones:
            self._minus_ones[b] = torch.full((self.m, b, 1), -1.0, device=x.device)
        g = logp.exp_().scatter_add_(-1, label, self._minus_ones[b])  # B * dCE/dlogits
        c_mean, factors = self._clusterability()
        for i in range(last, -1, -1):
            w = self.weights[i]
            g_below = torch.ops.aten.threshold_backward(torch.bmm(g, w), acts[i], 0) if i > 0 else g
            if i in factors:
                w.mul_(factors[i])
            if self.lr is not None:
                w.baddbmm_(g.transpose(1, 2), acts[i], alpha=-self.lr / b)
            else:
                w.baddbmm_((g * (self.neg_lr / b)).transpose(1, 2), acts[i])
            if i in self.l1_layers:
                w.sub_(torch.clamp(w, min=-self.l1_t, max=self.l1_t))
            g = g_below
        return sum_logp, c_mean

    def _clusterability(self) -> tuple[Tensor | float, dict[int, Tensor]]:
        """Mean C over the tracked layers ((M,), or a float with host scalars), and each
        clustered layer's step factor 1 + r (M - C)."""
        cs, factors = [], {}
        for i, mask in self.masks.items():
            if self.host_scalars:  # total and in-block squared weight as two dot products
                w = self.weights[i].view(-1)
                total = torch.dot(w, w).item() or 1.0  # an all-zero weight: C = 0, no C step (0/1)
                c = torch.dot(w * mask.view(-1), w).item() / total
                r = self.two_lr_lam_host / total
                if self.clustered:
                    factors[i] = torch.add(1.0 - r * c, mask, alpha=r)  # (1 - rC) + r M
            else:  # plain reductions (a CUDA graph runs them faster than a gemv)
                sq = self.weights[i].square()
                total = sq.sum((1, 2), keepdim=True)
                total = torch.where(total == 0, self.one, total)  # all-zero weight: C = 0 (0/1), as in C(W)
                c = (sq * mask).sum((1, 2), keepdim=True) / total
                if self.clustered:
                    r = self.two_lr_lam / total
                    factors[i] = torch.addcmul(torch.addcmul(self.one, r, c, value=-1.0), mask, r)
            cs.append(c)
        c_mean = cs[0] if len(cs) == 1 else sum(cs) / len(cs)
        return (c_mean if self.host_scalars else c_mean.view(self.m)), factors


def _eager_batches(order: Tensor, batch_size: int, first: int) -> list[Tensor]:
    """Flat indices (M * B,) of each member's batches from batch ``first`` on, cut in one go."""
    m, n = order.shape
    n_full = n // batch_size
    out: list[Tensor] = []
    if first < n_full:
        full = order[:, first * batch_size:n_full * batch_size].reshape(m, n_full - first, batch_size)
        out += list(full.transpose(0, 1).reshape(n_full - first, m * batch_size).unbind(0))
    if n_full * batch_size < n:
        out.append(order[:, n_full * batch_size:].reshape(-1))
    return out


def _batch(data: Dataset, y_rows: Tensor, idx: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Training inputs (M, B, in) and labels (M, B) of M members' batches, given their indices
    (M, B); index_select is the fastest gather on CUDA. ``y_rows`` (M, N): each member's labels."""
    x = data.train_x.index_select(0, idx.reshape(-1))
    return x.view(m, -1, x.shape[1]), y_rows.gather(1, idx.view(m, -1))


def _label_rows(configs: Sequence[TrainConfig], data: Dataset) -> Tensor:
    """(M, N) the training labels each member trains on: the data's, or for a ``shuffle_labels``
    member the data's under its fixed permutation (:func:`label_permutation`)."""
    y = data.train_y
    if not any(c.shuffle_labels for c in configs):
        return y.expand(len(configs), -1)
    return torch.stack([y[label_permutation(len(y), c.seed).to(y.device)] if c.shuffle_labels else y
                        for c in configs])


def eval_accuracies(weights: Sequence[Tensor], data: Dataset) -> Tensor:
    """Test accuracy of each member of stacked weights (each (M, out, in)), as a device tensor (M,)."""
    pred = forward(weights, data.test_x).argmax(-1)  # (M, N)
    return (pred == data.test_y).float().mean(-1)


def eval_accuracy(model: MLP, data: Dataset) -> float:
    """Test accuracy of one model, computed as :func:`eval_accuracies` computes a batched member's
    (the model's weights stacked as a batch of one), so every trainer logs the same number."""
    return eval_accuracies([w.detach().unsqueeze(0) for w in model.weights()], data).tolist()[0]


def clusterability_loss(model: MLP, partitions: dict[str, Partition]) -> Tensor:
    """Mean C over the partitioned layers, differentiable: the seed's ``loss = CE - lam * C``."""
    terms = []
    for name, part in partitions.items():
        w = getattr(model, name).weight
        part.check_fits(w, name)
        terms.append(clusterability(w, part.mask(w.device, w.dtype)))
    return torch.stack(terms).mean()


def _train_autograd(config: TrainConfig, data: Dataset, progress: bool = True) -> TrainResult:
    """The seed's loop on resident tensors: autograd through CE - lam * C, plain SGD (then the
    L1 proximal step on the clustered layers when ``l1`` > 0, on shuffled labels when asked).

    Each step's CE and C are read back for the history anyway, so a non-finite one stops
    training at that step (:class:`TrainingDivergedError`).
    """
    check_data_fits(config, data)
    device = data.device
    model, gen = seeded_model(config, device)
    parts = config.partitions()
    masks = _tracked_masks(config, device)
    loss_masks = config.loss_masks(device)
    train_y = _label_rows([config], data)[0]
    l1_weights = [getattr(model, n).weight for n in config.clustered_layers] if config.l1 > 0 else []
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    n_train = len(data.train_x)
    steps = steps_per_epoch(n_train, config.batch_size)
    history: dict[str, list[float]] = {"ce": [], "clusterability": [], "test_acc": [eval_accuracy(model, data)]}
    bar = progress_bar(steps * config.epochs, "train (autograd)", disable=not progress)
    for epoch in range(config.epochs):
        order = epoch_order(gen, n_train, device)
        for b in range(steps):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            ce = F.cross_entropy(model(data.train_x[idx]), train_y[idx])
            if loss_masks:
                c_loss = torch.stack([clusterability(getattr(model, n).weight, mk) for n, mk in loss_masks.items()])
                loss = ce - config.lam * c_loss.mean()
            else:
                loss = ce
            with torch.no_grad():  # logged before the step, as the fast path does
                ws = dict(zip(model.layer_names, model.weights()))
                c = sum(clusterability(ws[n], mk) for n, mk in masks.items()) / len(masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for w in l1_weights:
                    t = config.lr * config.l1
                    w.sub_(w.clamp(-t, t))
            history["ce"].append(ce.item())
            history["clusterability"].append(float(c))
            bar.update()
            if not (math.isfinite(history["ce"][-1]) and math.isfinite(history["clusterability"][-1])):
                bar.close()
                raise TrainingDivergedError(
                    f"training diverged: the loss is not finite at epoch {epoch + 1}, step {b + 1} of {steps} "
                    f"(global step {epoch * steps + b + 1} of {config.epochs * steps}; cross-entropy "
                    f"{history['ce'][-1]}, clusterability {history['clusterability'][-1]}) of {config!r} "
                    "(method='autograd'). Training stopped there. Lower TrainConfig.lr (or lam), or check the "
                    "data for nan or inf")
        with torch.no_grad():
            history["test_acc"].append(eval_accuracy(model, data))
    bar.close()
    if not all(bool(torch.isfinite(w).all()) for w in model.weights()):
        raise TrainingDivergedError(
            f"training diverged: the weights are not finite after the last step (epoch {config.epochs}, step "
            f"{steps} of {steps}) of {config!r} (method='autograd'). Lower TrainConfig.lr (or lam), or check the "
            "data for nan or inf")
    return TrainResult(config, model, parts, history)
