"""Fourier analysis of the modular-addition transformer (:mod:`modclust.core.transformer`):
which frequency each MLP neuron computes, whether its cluster says so, and what ablating a
cluster does to the logits' frequencies.

Basis. Functions on Z_p (p odd) are expanded in Nanda et al.'s real orthonormal Fourier basis
(:func:`fourier_basis`): row 0 the constant 1/sqrt(p), rows 2k-1 and 2k cos(2 pi k x / p) and
sin(2 pi k x / p) (normalised), for the K = (p - 1) / 2 frequencies k = 1..K. A neuron's
activation over all inputs is a p x p table A[a, b]; its 2-D transform is F A F^T
(:func:`fourier_2d`), the real form of the 2-D DFT: the complex DFT's power at (+-k1, +-k2) is
the power of the four coefficients (cos/sin k1) x (cos/sin k2).

Frequency k of a neuron is spanned by the 8 non-constant products of {1, cos k, sin k} in a with
{1, cos k, sin k} in b (cos(w(a+b)) = cos wa cos wb - sin wa sin wb lies there, and so do
functions of a or b alone at frequency k). Its share (:func:`frequency_shares`) is that power
over the neuron's non-constant power (the total minus the constant coefficient's, p^2 times the
variance over inputs); the shares of all k sum to at most 1 (the rest mixes two frequencies).
A neuron's dominant frequency is the k of largest share; a model's key frequencies are those
that dominate at least ``min_neurons`` neurons with share >= ``min_share``
(:func:`neuron_frequencies`).

Logits. The logit table L[a, b, c] (centred over c: softmax ignores a shift) of a model that
does modular addition by Nanda et al.'s algorithm is a sum of cos(w_k (a + b - c)) over key
frequencies k; :func:`logit_frequency_shares` gives the share of L's power along
cos and sin of w_k (a + b - c) for every k.

Measured on the defaults of :mod:`modclust.core.transformer` (p = 59, 40 % train, d_mlp = 256,
k = 4 equal blocks, trained to test accuracy 0.995, seeds 0, 1, 2): unclustered, MI(cluster,
dominant frequency) = 0.061, 0.024, 0.020 bits against a shuffled null of 0.044 +- 0.018,
0.026 +- 0.012, 0.034 +- 0.014 (200 draws); with ``lam=1`` (C = 1.000), 0.952, 0.879, 0.871 bits
against 0.056 +- 0.019, 0.044 +- 0.016, 0.032 +- 0.011 (at most 2 bits). In the clustered models
ablating one cluster removes its frequencies from the logits (e.g. seed 2, cluster 2: the logits'
component at frequency 19 falls from rms 4.12 to 0.23, the others unchanged) and test accuracy
falls to 0.28-0.87 (unclustered seed 0, its four equal blocks: 0.69-0.82).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from modclust.core.checks import check_fraction, check_int
from modclust.core.transformer import ModAddData, ModAddTransformer, all_pairs


# the basis ---------------------------------------------------------------------------------

def n_frequencies(p: int) -> int:
    """K = (p - 1) / 2 non-constant frequencies for an odd modulus p."""
    p = check_int("p", p, 3)
    if p % 2 == 0:
        raise ValueError(f"the sin/cos Fourier basis needs an odd modulus, got p={p}")
    return (p - 1) // 2


def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, list[str]]:
    """The real orthonormal Fourier basis of Z_p: (p, p) rows (row i is basis function i over x) and names.

    Row 0 is "const", rows 2k-1, 2k are "cos k", "sin k" for k = 1..(p - 1) / 2.
    """
    k_max = n_frequencies(p)
    x = torch.arange(p, dtype=dtype)
    rows = [torch.ones(p, dtype=dtype)]
    names = ["const"]
    for k in range(1, k_max + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
        names += [f"cos {k}", f"sin {k}"]
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True), names


def fourier_2d(table: Tensor) -> Tensor:
    """The 2-D Fourier coefficients F A F^T (..., p, p) of tables A (..., p, p) over (a, b), in float64."""
    p = table.shape[-1]
    if table.shape[-2] != p:
        raise ValueError(f"tables must be (..., p, p), got {tuple(table.shape)}")
    basis, _ = fourier_basis(p)
    basis = basis.to(table.device)
    return basis @ table.to(torch.float64) @ basis.T


def frequency_masks(p: int) -> Tensor:
    """(K, p, p) 0/1: entry (i, j) of mask k is 1 when basis rows i and j are in {const, cos k, sin k}, not both const."""
    k_max = n_frequencies(p)
    masks = torch.zeros(k_max, p, p, dtype=torch.float64)
    for k in range(1, k_max + 1):
        idx = torch.tensor([0, 2 * k - 1, 2 * k])
        masks[k - 1, idx.unsqueeze(1), idx] = 1
        masks[k - 1, 0, 0] = 0
    return masks


def frequency_power(table: Tensor) -> tuple[Tensor, Tensor]:
    """Power of tables (..., p, p) at each frequency (..., K) and their non-constant power (...,)."""
    coef = fourier_2d(table).square()                          # (..., p, p)
    masks = frequency_masks(table.shape[-1]).to(coef.device)   # (K, p, p)
    power = torch.einsum("...ij,kij->...k", coef, masks)
    return power, coef.sum((-2, -1)) - coef[..., 0, 0]


def frequency_shares(table: Tensor) -> Tensor:
    """Share of each table's non-constant power at each frequency k = 1..K: (..., p, p) -> (..., K); 0 for a constant table."""
    power, total = frequency_power(table)
    scale = total.abs().amax() if total.numel() else total.new_zeros(())
    live = (total > 1e-12 * scale).unsqueeze(-1)
    return torch.where(live, power / torch.where(live, total.unsqueeze(-1), torch.ones_like(power)),
                       torch.zeros_like(power))


# neurons -----------------------------------------------------------------------------------

@torch.no_grad()
def neuron_activations(model: ModAddTransformer) -> Tensor:
    """Each MLP neuron's post-ReLU activation on every input: (d_mlp, p, p), entry [n, a, b]."""
    x, _ = all_pairs(model.p, model.n_ctx == 3)
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    hidden = model.hidden(x.to(device))                      # (p^2, d_mlp), row a * p + b
    model.train(was)
    return hidden.T.reshape(model.d_mlp, model.p, model.p)


@dataclass(frozen=True)
class NeuronFrequencies:
    """Every neuron's frequency profile.

    ``shares`` (n, K): share of non-constant power at k = 1..K (column k - 1). ``dominant`` (n,):
    the frequency of largest share, 0 for a neuron with no non-constant power (dead or
    constant). ``share`` (n,): the dominant frequency's share. ``key_frequencies``: the model's
    key frequencies, ascending. ``min_share`` and ``min_neurons``: the rule that chose them.
    """

    shares: Tensor
    dominant: Tensor
    share: Tensor
    key_frequencies: tuple[int, ...]
    min_share: float
    min_neurons: int

    @property
    def explained(self) -> Tensor:
        """(n,) bool: the neurons whose dominant frequency has share >= ``min_share``."""
        return (self.share >= self.min_share) & (self.dominant > 0)


def key_frequencies(dominant: Tensor, share: Tensor, min_share: float = 0.5, min_neurons: int = 2) -> tuple[int, ...]:
    """Frequencies that are dominant, with share >= ``min_share``, for at least ``min_neurons`` neurons."""
    keep = (share >= min_share) & (dominant > 0)
    freqs, counts = torch.unique(dominant[keep], return_counts=True)
    return tuple(sorted(int(f) for f, c in zip(freqs, counts) if c >= min_neurons))


def neuron_frequencies(acts: Tensor, min_share: float = 0.5, min_neurons: int = 2) -> NeuronFrequencies:
    """Dominant frequencies of neurons from their activation tables ``acts`` (n, p, p) (see :func:`neuron_activations`)."""
    min_share = check_fraction("min_share", min_share)
    min_neurons = check_int("min_neurons", min_neurons, 1)
    if acts.dim() != 3:
        raise ValueError(f"acts must be (n_neurons, p, p), got {tuple(acts.shape)}")
    shares = frequency_shares(acts)                          # (n, K)
    share, idx = shares.max(-1)
    dominant = torch.where(share > 0, idx + 1, torch.zeros_like(idx))
    return NeuronFrequencies(shares, dominant, share, key_frequencies(dominant, share, min_share, min_neurons),
                             min_share, min_neurons)


# clusters and frequencies ------------------------------------------------------------------

def mutual_information_bits(x: Tensor | Sequence[int], y: Tensor | Sequence[int]) -> float:
    """Plug-in mutual information (bits) between two label sequences of the same length (any ints)."""
    x = torch.as_tensor(x).flatten()
    y = torch.as_tensor(y).flatten()
    if len(x) != len(y):
        raise ValueError(f"the label sequences differ in length: {len(x)} and {len(y)}")
    if len(x) == 0:
        return 0.0
    _, xi = torch.unique(x, return_inverse=True)
    _, yi = torch.unique(y, return_inverse=True)
    joint = torch.zeros(int(xi.max()) + 1, int(yi.max()) + 1, dtype=torch.float64)
    joint.index_put_((xi, yi), torch.ones(len(x), dtype=torch.float64), accumulate=True)
    joint /= len(x)
    px, py = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return max(0.0, float((joint[nz] * torch.log2(joint[nz] / (px @ py)[nz])).sum()))


@dataclass(frozen=True)
class ClusterFrequencyMI:
    """MI (bits) between neurons' cluster labels and dominant frequencies, against shuffled clusters.

    ``null``: the MI of each draw that shuffles the labels over the same neurons (cluster
    sizes kept); ``null_mean``, ``null_sd`` summarise it. ``n_neurons``: neurons counted.
    ``max_mi``: min(H(cluster), H(frequency)), the largest MI possible for these counts.
    """

    mi: float
    null_mean: float
    null_sd: float
    null: tuple[float, ...]
    n_neurons: int
    max_mi: float

    @property
    def z(self) -> float:
        """(mi - null_mean) / null_sd (inf when the null has no spread and mi is above it)."""
        if self.null_sd > 0:
            return (self.mi - self.null_mean) / self.null_sd
        return 0.0 if self.mi == self.null_mean else math.copysign(math.inf, self.mi - self.null_mean)


def _entropy_bits(labels: Tensor) -> float:
    _, counts = torch.unique(labels, return_counts=True)
    q = counts.double() / counts.sum()
    return float(-(q * torch.log2(q)).sum())


def cluster_frequency_mi(clusters: Tensor | Sequence[int], dominant: Tensor | Sequence[int],
                         keep: Tensor | None = None, n_draws: int = 200, seed: int = 0) -> ClusterFrequencyMI:
    """MI between ``clusters`` (n,) and ``dominant`` (n,) over the neurons in ``keep`` (n,) bool (default
    all), and its null over ``n_draws`` random permutations of the labels (seeded)."""
    clusters = torch.as_tensor(clusters).flatten().cpu()
    dominant = torch.as_tensor(dominant).flatten().cpu()
    if len(clusters) != len(dominant):
        raise ValueError(f"clusters ({len(clusters)}) and dominant ({len(dominant)}) need one entry per neuron")
    n_draws = check_int("n_draws", n_draws, 1)
    if keep is not None:
        keep = torch.as_tensor(keep, dtype=torch.bool).flatten().cpu()
        clusters, dominant = clusters[keep], dominant[keep]
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    null = tuple(mutual_information_bits(clusters[torch.randperm(len(clusters), generator=gen)], dominant)
                 for _ in range(n_draws))
    arr = np.asarray(null)
    max_mi = min(_entropy_bits(clusters), _entropy_bits(dominant)) if len(clusters) else 0.0
    return ClusterFrequencyMI(mutual_information_bits(clusters, dominant), float(arr.mean()),
                              float(arr.std(ddof=1)) if n_draws > 1 else 0.0, null, len(clusters), max_mi)


# logits ------------------------------------------------------------------------------------

def logit_table(model: ModAddTransformer, neuron_mask: Tensor | None = None) -> Tensor:
    """The logits on every input: (p, p, p), entry [a, b, c] (``neuron_mask`` (d_mlp,) as in the model)."""
    x, _ = all_pairs(model.p, model.n_ctx == 3)
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    with torch.no_grad():
        logits = model(x.to(device), neuron_mask)            # (p^2, p), row a * p + b
    model.train(was)
    return logits.reshape(model.p, model.p, model.p)


def logit_frequency_shares(logits: Tensor) -> Tensor:
    """Share of the logits' power along cos and sin of 2 pi k (a + b - c) / p for k = 1..K: (p, p, p) -> (K,).

    The logits are centred over c first. cos and sin of w_k s, s = (a + b - c) mod p, are
    orthogonal over the p^3 entries, each of squared norm p^3 / 2, so the share is
    (<L, cos>^2 + <L, sin>^2) / (p^3 / 2) / ||L||^2; the shares of all k sum to at most 1.
    """
    p = logits.shape[-1]
    if tuple(logits.shape) != (p, p, p):
        raise ValueError(f"logits must be a (p, p, p) table [a, b, c], got {tuple(logits.shape)}")
    k_max = n_frequencies(p)
    table = logits.to(torch.float64)
    table = table - table.mean(-1, keepdim=True)
    r = torch.arange(p, device=table.device)
    s = (r.view(p, 1, 1) + r.view(1, p, 1) - r.view(1, 1, p)) % p          # (p, p, p)
    g = torch.zeros(p, dtype=torch.float64, device=table.device).index_add_(0, s.flatten(), table.flatten())
    w = 2 * math.pi * torch.arange(1, k_max + 1, dtype=torch.float64, device=table.device) / p
    phase = w.unsqueeze(1) * torch.arange(p, dtype=torch.float64, device=table.device)  # (K, p)
    power = ((torch.cos(phase) @ g).square() + (torch.sin(phase) @ g).square()) / (p ** 3 / 2)
    total = table.square().sum()
    return power / total if total > 0 else torch.zeros_like(power)


# ablating a cluster ------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterAblation:
    """A model with one cluster's hidden neurons zeroed, against the full model.

    ``acc_*``: accuracy on all p^2 pairs; ``test_acc_*``: on the test pairs. ``logit_share_*``:
    :func:`logit_frequency_shares` at each of ``frequencies``; ``logit_rms_*``: the root-mean-square
    size of the logits' component at each of them, sqrt(share * ||L||^2 / p^3), comparable
    between before and after.
    """

    cluster: int
    n_neurons: int
    frequencies: tuple[int, ...]
    acc_before: float
    acc_after: float
    test_acc_before: float
    test_acc_after: float
    logit_share_before: tuple[float, ...]
    logit_share_after: tuple[float, ...]
    logit_rms_before: tuple[float, ...]
    logit_rms_after: tuple[float, ...]

    def to_dict(self) -> dict:
        return {f: (list(v) if isinstance(v, tuple) else v) for f, v in self.__dict__.items()}


@dataclass(frozen=True)
class LogitProfile:
    """What a model (or a model with some neurons zeroed) does on every pair, from one pass.

    ``acc`` on all p^2 pairs, ``test_acc`` on the test pairs; ``shares`` and ``rms`` at each of
    ``frequencies``: :func:`logit_frequency_shares` and the rms size of the logits' component
    there, sqrt(share * ||L||^2 / p^3).
    """

    frequencies: tuple[int, ...]
    acc: float
    test_acc: float
    shares: tuple[float, ...]
    rms: tuple[float, ...]


def logit_profile(model: ModAddTransformer, data: ModAddData, frequencies: Sequence[int],
                  neuron_mask: Tensor | None = None) -> LogitProfile:
    """The :class:`LogitProfile` of ``model`` (``neuron_mask`` (d_mlp,) as in the model) on ``data``'s pairs.

    One forward pass on all p^2 pairs (:func:`logit_table`) gives both accuracies and the
    frequencies' shares: ``data.all_x`` holds the pairs in the table's order (row a * p + b).
    """
    if data.p != model.p or data.n_ctx != model.n_ctx:
        raise ValueError(f"model (p={model.p}, n_ctx={model.n_ctx}) does not fit the data (p={data.p}, "
                         f"n_ctx={data.n_ctx})")
    freqs = tuple(check_int("frequency", k, 1, n_frequencies(model.p)) for k in frequencies)
    table = logit_table(model, neuron_mask)                       # (p, p, p)
    pred = table.reshape(model.p * model.p, model.p).argmax(-1)   # (p^2,) row a * p + b
    right = pred == data.all_y.to(pred.device)
    test_idx = data.test_idx.to(pred.device)
    shares = logit_frequency_shares(table)
    centred = table.double() - table.double().mean(-1, keepdim=True)
    norm2 = float(centred.square().sum()) / model.p ** 3
    chosen = tuple(float(shares[k - 1]) for k in freqs)
    return LogitProfile(freqs, float(right.double().mean()), float(right[test_idx].double().mean()), chosen,
                        tuple(math.sqrt(max(v, 0.0) * norm2) for v in chosen))


def ablate_cluster(model: ModAddTransformer, data: ModAddData, clusters: Tensor | Sequence[int], cluster: int,
                   frequencies: Sequence[int] | None = None, before: LogitProfile | None = None) -> ClusterAblation:
    """Zero the hidden neurons labelled ``cluster`` in ``clusters`` (d_mlp,) and compare with the full model.

    ``frequencies``: those whose logit share is reported (default: the model's key frequencies,
    from :func:`neuron_frequencies` of its activations). ``before``: the full model's
    :func:`logit_profile` at those frequencies, when the caller has it (many ablations of one
    model need it once); each ablation then costs one forward pass on the p^2 pairs.
    """
    clusters = torch.as_tensor(clusters).flatten()
    if len(clusters) != model.d_mlp:
        raise ValueError(f"clusters needs one label per hidden neuron ({model.d_mlp}), got {len(clusters)}")
    if frequencies is None:
        frequencies = before.frequencies if before is not None else \
            neuron_frequencies(neuron_activations(model)).key_frequencies
    if before is None:
        before = logit_profile(model, data, frequencies)
    elif tuple(frequencies) != before.frequencies:
        raise ValueError(f"before was profiled at frequencies {before.frequencies}, not {tuple(frequencies)}")
    device = next(model.parameters()).device
    mask = (clusters.to(device) != cluster).to(torch.float32)
    after = logit_profile(model, data, frequencies, mask)
    return ClusterAblation(int(cluster), int((clusters == cluster).sum()), before.frequencies, before.acc, after.acc,
                           before.test_acc, after.test_acc, before.shares, after.shares, before.rms, after.rms)


def cluster_frequency_ablations(model: ModAddTransformer, data: ModAddData, clusters: Tensor | Sequence[int],
                                frequencies: Sequence[int] | None = None) -> list[ClusterAblation]:
    """Each cluster's neurons zeroed in turn: what that does to accuracy and to the logits' power
    at ``frequencies``; :func:`ablate_cluster` for every cluster label in ``clusters`` (ascending;
    -1, no cluster, skipped), the full model profiled once. (Not
    :func:`modclust.analysis.any_model.ablate_clusters`, class-wise cluster OFF / ON on any model.)"""
    clusters = torch.as_tensor(clusters).flatten()
    if frequencies is None:
        frequencies = neuron_frequencies(neuron_activations(model)).key_frequencies
    before = logit_profile(model, data, frequencies)
    return [ablate_cluster(model, data, clusters, int(c), frequencies, before)
            for c in torch.unique(clusters).tolist() if c >= 0]
