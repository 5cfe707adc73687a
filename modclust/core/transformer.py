"""A one-layer transformer on modular addition (Nanda et al. 2023, "Progress measures for
grokking"), small enough to generalise on a CPU in about a minute, with an optional
clusterability loss on its MLP.

Data (:func:`modular_addition_data`): every pair (a, b) in Z_p x Z_p, labelled (a + b) mod p,
as tokens ``[a, b, =]`` (``=`` is token p) or ``[a, b]``; a seeded share of the p^2 pairs is the
training set, the rest the test set. Pair (a, b) is row ``a * p + b`` of :attr:`ModAddData.all_x`.

Model (:class:`ModAddTransformer`), shapes for N sequences of T tokens (T = 3 or 2)::

    tokens   (N, T)            ints in [0, p] (p is "=")
    embed    (N, T, d_model)   token embedding + pos_embed[:T]
    attn     (N, d_model)      the last position's query attends over all T positions with
                               n_heads heads of d_model / n_heads dims (attn_q, attn_k, attn_v,
                               attn_o: bias-free Linear layers); added to the last position's
                               residual
    mlp_in   (N, d_mlp)        Linear(d_model, d_mlp) + ReLU: the MLP's hidden neurons
    mlp_out  (N, d_model)      Linear(d_mlp, d_model), added to the residual
    unembed  (N, p)            Linear(d_model, p, bias=False): logits for c = (a + b) mod p

No LayerNorm, as in Nanda et al. Only the last position's residual reaches the logits, and with
one layer nothing else reads the other positions' MLP outputs, so attention and the MLP are run
for the last position only: the same logits as running them at every position, about a third of
the work.

Training (:func:`train_transformer`): full-batch AdamW (weight decay about 1, the grokking
recipe) on cross-entropy ``- lam * (C(W_in) + C(W_out)) / 2``, where the d_mlp hidden neurons
are cut into k equal contiguous blocks: W_in = ``mlp_in.weight`` (d_mlp, d_model) has the hidden
neurons as rows, W_out = ``mlp_out.weight`` (d_model, d_mlp) has them as columns, and the
residual dimensions are cut into k equal blocks on the other side (:func:`mlp_partitions`).
Hidden neuron block j is thus cluster j in both matrices.

The defaults (p = 59, 40 % of the pairs for training, d_model = 64, 4 heads, d_mlp = 256, AdamW
lr 3e-3, weight decay 1, betas (0.9, 0.98)) are Nanda et al.'s recipe shrunk to generalise fast
on a CPU. Measured on one core of a shared 2-core CPU (about 12 ms a step): train accuracy 1 by
step 100, test accuracy >= 0.95 at step 1500, 2600, 1400 (18, 33, 17 s) for seeds 0, 1, 2,
>= 0.99 at steps 1600, 2700, 1700 (test accuracy 0.997, 0.997, 0.995 there); with 50 % of the
pairs for training, step 600-700 (about 10 s). With ``lam=1`` (k = 4, C -> 1.000 on both
matrices) seeds 0, 1, 2 reach 0.95 at steps 2000, 3800, 1700. Runs with 30 % of the pairs did
not generalise within 5000 steps. (Use ``torch.set_num_threads(1)`` on a busy machine: two
threads competing with other processes ran many times slower.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modclust.core.checks import check_float, check_fraction, check_int, check_ints
from modclust.core.clusterability import clusterability
from modclust.core.model import SEED_MAX
from modclust.core.partition import Partition

MLP_LAYERS = ("mlp_in", "mlp_out")
"""The MLP's two Linear layers, whose weights the clusterability loss acts on."""


# data ---------------------------------------------------------------------------------------

def all_pairs(p: int, eq_token: bool = True) -> tuple[Tensor, Tensor]:
    """Every pair's tokens (p^2, T) and label (p^2,): row a * p + b is [a, b, p] (or [a, b]) -> (a + b) % p."""
    p = check_int("p", p, 2)
    a = torch.arange(p).repeat_interleave(p)  # (p^2,) a of row a * p + b
    b = torch.arange(p).repeat(p)             # (p^2,) b
    cols = [a, b] + ([torch.full_like(a, p)] if eq_token else [])
    return torch.stack(cols, 1), (a + b) % p


@dataclass(frozen=True)
class ModAddData:
    """All p^2 pairs of modular addition and a seeded train/test split of them.

    ``all_x`` (p^2, T) tokens, ``all_y`` (p^2,) labels, row a * p + b for pair (a, b);
    ``train_idx`` (n_train,) and ``test_idx`` (p^2 - n_train,) sorted row indices.
    """

    p: int
    train_frac: float
    seed: int
    all_x: Tensor
    all_y: Tensor
    train_idx: Tensor
    test_idx: Tensor

    @property
    def eq_token(self) -> bool:
        return self.all_x.shape[1] == 3

    @property
    def n_ctx(self) -> int:
        return self.all_x.shape[1]

    @property
    def train_x(self) -> Tensor:
        return self.all_x[self.train_idx]

    @property
    def train_y(self) -> Tensor:
        return self.all_y[self.train_idx]

    @property
    def test_x(self) -> Tensor:
        return self.all_x[self.test_idx]

    @property
    def test_y(self) -> Tensor:
        return self.all_y[self.test_idx]

    @property
    def device(self) -> torch.device:
        return self.all_x.device

    def to(self, device: str | torch.device) -> ModAddData:
        return replace(self, all_x=self.all_x.to(device), all_y=self.all_y.to(device),
                       train_idx=self.train_idx.to(device), test_idx=self.test_idx.to(device))


def modular_addition_data(p: int = 59, train_frac: float = 0.4, seed: int = 0, eq_token: bool = True,
                          device: str | torch.device = "cpu") -> ModAddData:
    """``a + b mod p`` on all p^2 pairs; ``round(train_frac * p^2)`` of them, drawn by ``seed``, for training."""
    p = check_int("p", p, 2, hint="the modulus")
    train_frac = check_fraction("train_frac", train_frac, hint="the share of the p^2 pairs used for training")
    seed = check_int("seed", seed, 0, SEED_MAX)
    x, y = all_pairs(p, eq_token)
    n_train = round(train_frac * p * p)
    if not 1 <= n_train < p * p:
        raise ValueError(f"train_frac={train_frac} leaves {n_train} of {p * p} pairs for training: need at least "
                         "one pair in each of the training and test sets")
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    return ModAddData(p, train_frac, seed, x, y, perm[:n_train].sort().values,
                      perm[n_train:].sort().values).to(device)


# model --------------------------------------------------------------------------------------

class ModAddTransformer(nn.Module):
    """One attention block and one ReLU MLP block on sequences [a, b, =] (or [a, b]); see the module doc."""

    def __init__(self, p: int, d_model: int = 64, n_heads: int = 4, d_mlp: int = 256, n_ctx: int = 3) -> None:
        super().__init__()
        self.p = check_int("p", p, 2)
        self.d_model = check_int("d_model", d_model, 1)
        self.n_heads = check_int("n_heads", n_heads, 1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_head = self.d_model // self.n_heads
        self.d_mlp = check_int("d_mlp", d_mlp, 1)
        self.n_ctx = check_int("n_ctx", n_ctx, 2, 3, hint="3 for [a, b, =], 2 for [a, b]")
        self.embed = nn.Embedding(self.p + 1, d_model)             # token p is "="
        self.pos_embed = nn.Parameter(torch.zeros(self.n_ctx, d_model))
        self.attn_q = nn.Linear(d_model, d_model, bias=False)      # (.., d_model) -> (.., n_heads * d_head)
        self.attn_k = nn.Linear(d_model, d_model, bias=False)
        self.attn_v = nn.Linear(d_model, d_model, bias=False)
        self.attn_o = nn.Linear(d_model, d_model, bias=False)      # heads' outputs -> residual
        self.mlp_in = nn.Linear(d_model, self.d_mlp)               # weight (d_mlp, d_model)
        self.mlp_out = nn.Linear(self.d_mlp, d_model)              # weight (d_model, d_mlp)
        self.unembed = nn.Linear(d_model, self.p, bias=False)      # weight (p, d_model)

    def _check_tokens(self, tokens: Tensor) -> None:
        if tokens.dim() != 2 or tokens.shape[1] != self.n_ctx:
            raise ValueError(f"tokens must be (N, {self.n_ctx}), got {tuple(tokens.shape)}")

    def run(self, tokens: Tensor, neuron_mask: Tensor | None = None) -> dict[str, Tensor]:
        """The last position's intermediate values for ``tokens`` (N, T).

        Returns ``"attn_pattern"`` (N, n_heads, T), ``"resid_mid"`` (N, d_model) (after attention),
        ``"hidden"`` (N, d_mlp) (post-ReLU MLP neurons, after ``neuron_mask``), ``"resid_post"``
        (N, d_model) and ``"logits"`` (N, p). ``neuron_mask`` (d_mlp,) multiplies the hidden
        neurons (0 ablates one).
        """
        self._check_tokens(tokens)
        n, t = tokens.shape
        x = self.embed(tokens) + self.pos_embed[:t]                                   # (N, T, d_model)
        q = self.attn_q(x[:, -1]).view(n, self.n_heads, self.d_head)                  # (N, H, dh)
        k = self.attn_k(x).view(n, t, self.n_heads, self.d_head)                      # (N, T, H, dh)
        v = self.attn_v(x).view(n, t, self.n_heads, self.d_head)                      # (N, T, H, dh)
        pattern = torch.softmax(torch.einsum("nhd,nthd->nht", q, k) / math.sqrt(self.d_head), -1)  # (N, H, T)
        z = torch.einsum("nht,nthd->nhd", pattern, v).reshape(n, self.d_model)        # (N, H * dh)
        resid_mid = x[:, -1] + self.attn_o(z)                                         # (N, d_model)
        hidden = torch.relu(self.mlp_in(resid_mid))                                   # (N, d_mlp)
        if neuron_mask is not None:
            hidden = hidden * neuron_mask
        resid_post = resid_mid + self.mlp_out(hidden)                                 # (N, d_model)
        return {"attn_pattern": pattern, "resid_mid": resid_mid, "hidden": hidden, "resid_post": resid_post,
                "logits": self.unembed(resid_post)}

    def forward(self, tokens: Tensor, neuron_mask: Tensor | None = None) -> Tensor:
        """Logits (N, p) for ``tokens`` (N, T); ``neuron_mask`` (d_mlp,) as in :meth:`run`."""
        return self.run(tokens, neuron_mask)["logits"]

    def hidden(self, tokens: Tensor) -> Tensor:
        """The MLP's post-ReLU hidden neurons (N, d_mlp) at the last position."""
        return self.run(tokens)["hidden"]


@torch.no_grad()
def seeded_init(model: ModAddTransformer, generator: torch.Generator) -> None:
    """Nanda et al.'s init, drawn from ``generator``: every matrix N(0, 1 / d_model) (the unembedding
    N(0, 1 / p)), biases 0."""
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            param.zero_()
            continue
        std = 1.0 / math.sqrt(model.p if name.startswith("unembed") else model.d_model)
        param.copy_(torch.randn(param.shape, generator=generator) * std)


def make_transformer(p: int = 59, seed: int = 0, d_model: int = 64, n_heads: int = 4, d_mlp: int = 256,
                     eq_token: bool = True) -> ModAddTransformer:
    """A :class:`ModAddTransformer` for modulus ``p`` drawn from ``torch.Generator().manual_seed(seed)``."""
    seed = check_int("make_transformer seed", seed, 0, SEED_MAX)
    with torch.random.fork_rng(devices=[]):  # the modules' own default init draws from the global RNG
        model = ModAddTransformer(p, d_model, n_heads, d_mlp, 3 if eq_token else 2)
    seeded_init(model, torch.Generator().manual_seed(seed))
    return model


# clusters of the MLP ------------------------------------------------------------------------

def mlp_partitions(model: ModAddTransformer, k: int, neuron_labels: Sequence[int] | None = None) -> dict[str, Partition]:
    """Partitions of ``mlp_in.weight`` (d_mlp, d_model) and ``mlp_out.weight`` (d_model, d_mlp).

    Hidden neuron i is in cluster ``neuron_labels[i]`` (default: k equal contiguous blocks) on the
    rows of W_in and the columns of W_out; the residual dimensions are cut into k equal
    contiguous blocks on the other side.
    """
    k = check_int("k", k, 1, min(model.d_mlp, model.d_model), hint="the number of clusters")
    if neuron_labels is None:
        hidden = Partition.equal_blocks((model.d_mlp, model.d_model), k).rows
    else:
        labels = check_ints("neuron_labels", neuron_labels, 0, k - 1)
        if len(labels) != model.d_mlp:
            raise ValueError(f"neuron_labels needs one label per hidden neuron ({model.d_mlp}), got {len(labels)}")
        hidden = tuple(tuple(i for i, c in enumerate(labels) if c == j) for j in range(k))
    resid = Partition.equal_blocks((model.d_model, model.d_model), k).rows
    return {"mlp_in": Partition((model.d_mlp, model.d_model), hidden, resid),
            "mlp_out": Partition((model.d_model, model.d_mlp), resid, hidden)}


def neuron_clusters(partitions: dict[str, Partition]) -> Tensor:
    """Each hidden neuron's cluster (d_mlp,) long, read from the rows of the ``"mlp_in"`` partition (-1: none)."""
    part = partitions["mlp_in"]
    labels = torch.full((part.shape[0],), -1, dtype=torch.long)
    for j, rows in enumerate(part.rows):
        labels[list(rows)] = j
    return labels


def mlp_clusterability(model: ModAddTransformer, masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """C of ``mlp_in.weight`` and ``mlp_out.weight`` under their masks (0-d tensors, differentiable)."""
    return {name: clusterability(getattr(model, name).weight, m) for name, m in masks.items()}


# training -----------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: ModAddTransformer, x: Tensor, y: Tensor, neuron_mask: Tensor | None = None) -> tuple[float, float]:
    """(cross-entropy, accuracy) of the model on tokens ``x`` (N, T) with labels ``y`` (N,)."""
    logits = model(x, neuron_mask)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


@dataclass
class TransformerRun:
    """A trained transformer, its data, its MLP partitions (None when lam = 0) and its history.

    history, one entry per evaluation (every ``eval_every`` steps, at step 0 and at the end):
    ``"step"``, ``"seconds"`` (training wall time so far, evaluations excluded), ``"train_loss"``,
    ``"train_acc"``, ``"test_loss"``, ``"test_acc"``, ``"c_in"``, ``"c_out"`` (C of W_in and W_out
    under the run's partitions, or k equal blocks when lam = 0).
    """

    model: ModAddTransformer
    data: ModAddData
    partitions: dict[str, Partition]
    lam: float
    history: dict[str, list[float]] = field(default_factory=dict)

    @property
    def test_acc(self) -> float:
        return self.history["test_acc"][-1]

    @property
    def train_acc(self) -> float:
        return self.history["train_acc"][-1]

    def first(self, test_acc: float = 0.95) -> tuple[int, float] | None:
        """(step, seconds) of the first evaluation with test accuracy >= ``test_acc``; None if never."""
        for step, sec, acc in zip(self.history["step"], self.history["seconds"], self.history["test_acc"]):
            if acc >= test_acc:
                return int(step), float(sec)
        return None

    @property
    def neuron_clusters(self) -> Tensor:
        """Each hidden neuron's cluster (d_mlp,), from :attr:`partitions`."""
        return neuron_clusters(self.partitions)


def train_transformer(model: ModAddTransformer, data: ModAddData, steps: int = 5000, lr: float = 3e-3,
                      weight_decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.98), warmup: int = 10,
                      lam: float = 0.0, n_clusters: int = 4, partitions: dict[str, Partition] | None = None,
                      eval_every: int = 50, stop_at: float | None = None, steps_after: int = 0) -> TransformerRun:
    """Full-batch AdamW on the training pairs; loss = CE - lam * (C(W_in) + C(W_out)) / 2.

    ``partitions`` default to :func:`mlp_partitions` (k = ``n_clusters`` equal blocks). The
    learning rate rises linearly over ``warmup`` steps. ``stop_at``: stop at the first
    evaluation whose test accuracy reaches it (and whose training accuracy is 1), or
    ``steps_after`` steps later (training on past generalisation, while the mechanism settles;
    never beyond ``steps``). Training is
    deterministic given the model and data (no sampling). The model is trained in place, on the
    data's device.
    """
    steps = check_int("steps", steps, 0)
    lr = check_float("lr", lr, 0.0, strict_min=True)
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    warmup = check_int("warmup", warmup, 0)
    lam = check_float("lam", lam, 0.0, hint="the weight of clusterability in the loss")
    eval_every = check_int("eval_every", eval_every, 1)
    steps_after = check_int("steps_after", steps_after, 0, hint="steps to train on once test accuracy reaches stop_at")
    if stop_at is not None:
        stop_at = check_fraction("stop_at", stop_at)
    if model.p != data.p or model.n_ctx != data.n_ctx:
        raise ValueError(f"model (p={model.p}, n_ctx={model.n_ctx}) does not fit the data (p={data.p}, "
                         f"n_ctx={data.n_ctx})")
    model = model.to(data.device)
    parts = mlp_partitions(model, n_clusters) if partitions is None else partitions
    for name, part in parts.items():
        part.check_fits(getattr(model, name).weight, f"{name}.weight")
    masks = {name: part.mask(data.device) for name, part in parts.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    tx, ty, vx, vy = data.train_x, data.train_y, data.test_x, data.test_y
    hist: dict[str, list[float]] = {k: [] for k in ("step", "seconds", "train_loss", "train_acc", "test_loss",
                                                    "test_acc", "c_in", "c_out")}
    seconds = 0.0

    def log(step: int) -> bool:
        model.eval()
        tl, ta = evaluate(model, tx, ty)
        vl, va = evaluate(model, vx, vy)
        with torch.no_grad():
            c = mlp_clusterability(model, masks)
        model.train()
        for key, value in (("step", step), ("seconds", seconds), ("train_loss", tl), ("train_acc", ta),
                           ("test_loss", vl), ("test_acc", va), ("c_in", float(c["mlp_in"])),
                           ("c_out", float(c["mlp_out"]))):
            hist[key].append(value)
        return stop_at is not None and va >= stop_at and ta == 1.0

    reached = log(0)
    last = steps if not reached else min(steps, steps_after)  # the step training stops at
    model.train()
    for step in range(1, steps + 1):
        if step > last:
            break
        start = time.perf_counter()
        loss = F.cross_entropy(model(tx), ty)
        if lam:
            c = mlp_clusterability(model, masks)
            loss = loss - lam * (c["mlp_in"] + c["mlp_out"]) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"the loss became {float(loss.detach())} at step {step}: lower lr or lam")
        seconds += time.perf_counter() - start
        if step % eval_every == 0 or step == last:
            if log(step) and not reached:
                reached = True
                last = min(steps, step + steps_after)
    model.eval()
    return TransformerRun(model, data, parts, lam, hist)
