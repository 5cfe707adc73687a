"""Stage 8: a one-layer transformer on modular addition, clustered against unclustered, read
against its known mechanism (MLP neurons tuned to a few key Fourier frequencies).

The stage is a study (:mod:`modclust.experiments.study`): :class:`ModularAddition` trains, for
each seed and each lambda (0, unclustered, and ``main_lambda``), a
:mod:`modclust.core.transformer` model until its test accuracy reaches ``stop_at`` (or
``max_steps`` pass: such a run is flagged, never dropped), and analyses every model with
:mod:`modclust.analysis.fourier`. Its data is None: the seed fixes the model's initialisation
and the train/test split, so the two lambdas of one seed start from the same model on the same
data. The template (:func:`modclust.experiments.study.run_study`) runs it and returns its
:class:`~modclust.experiments.study.StudyResult`:

1. Training (each run's record, ``records``; its scalars :data:`TRAINING_METRICS` also in
   ``rows``): steps and seconds to ``stop_at`` (None when never reached), final train and test
   accuracy, C of W_in and W_out on the k equal neuron blocks, and the same at step 0 (the
   untrained model: accuracy near 1/p, C near 1/k), and the history of evaluations.
2. Frequencies: each neuron's dominant frequency (:func:`~modclust.analysis.fourier.neuron_frequencies`),
   the model's key frequencies, the share of neurons a single frequency explains, and the share
   of the logits' power at the key frequencies; beside each, the untrained model of the same
   seed (the trivial baseline: no key frequency, few neurons explained).
3. MI(cluster, dominant frequency) over the explained neurons, against shuffled assignments of
   the same cluster sizes (:func:`~modclust.analysis.fourier.cluster_frequency_mi`): for the
   run's clusters (trained blocks, or the same equal blocks of an unclustered model) and for
   clusters found after training by spectral co-clustering (:func:`spectral_clusters`).
4. Ablations: each cluster's neurons zeroed (:func:`ablation_analysis`): accuracy before and
   after, the logits' rms at each key frequency before and after, and a specificity score
   (:func:`specificity`): how much of what the ablation removes falls on the cluster's own
   frequency (:func:`own_frequency`, the plurality key frequency of its explained neurons),
   with each frequency's loss taken relative to its power (and, as a second score, the plain
   share of the removed logit power).
   Control: ``control_draws`` random neuron sets of each cluster's size per cluster (seeded),
   scored the same way.

2.-4. are each model's analyses (``runs``: details and scalars); their scalars
:data:`ANALYSIS_METRICS` are its row. :meth:`ModularAddition.summarise` gives means with 95 %
intervals over seeds per lambda (:func:`modclust.experiments.grid.summary_table`), each measure
against its null or control by the 95 % interval of the per-run difference
(:func:`modclust.experiments.study.against`) and the runs that did not generalise. Clustered
against unclustered models is compared in the paper, paired by seed
(:mod:`modclust.paper.modadd_numbers`).

Measured on this project's 2-core CPU (2 threads, no other job running), p = 59, d_mlp = 256,
half the pairs for training, stop at 0.99, seeds 0-4: lambda 0 got there in 600-1200 steps
(6-14 s, 9-12 ms a step), lambda 1 (k = 4) in 550-1100 (5-13 s, 9-12 ms a step); the
analyses of a run took about 1 s, mostly the ablations (4 + 4 x ``control_draws`` per run,
about 55 ms each while each ran six forward passes; one since ablate_cluster takes the full
model's profile); the whole study 93-105 s, its notebook 104-117 s (114 s in ``make paper``
with 4 control draws). Two threads on a
CPU that another process keeps busy ran up to 12 times slower (124 ms a step): use
``threads = 1`` there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from modclust.analysis.any_model import layer_spectral_partition
from modclust.analysis.fourier import (ClusterAblation, NeuronFrequencies, ablate_cluster, cluster_frequency_mi,
                                       logit_frequency_shares, logit_profile, logit_table, neuron_activations,
                                       neuron_frequencies)
from modclust.analysis.spectral import spectral_partition, weight_clusterability
from modclust.core.checks import (Problems, check_choice, check_distinct, check_float, check_fraction, check_int,
                                  check_ints, check_seeds)
from modclust.core.model import SEED_MAX
from modclust.core.progress import track
from modclust.core.stats import Interval
from modclust.core.transformer import (ModAddData, ModAddTransformer, TransformerRun, make_transformer,
                                       mlp_partitions, modular_addition_data, neuron_clusters, train_transformer)
from modclust.experiments.grid import summary_table
from modclust.experiments.study import Study, StudyResult, Trained, against, run_study

SPECTRAL_WEIGHTS = ("mlp_in", "neuron_weights")
"""What spectral co-clustering reads: |W_in| (hidden neurons x residual dimensions), or each
neuron's input and output weights side by side, |[W_in, W_out^T]| (d_mlp x 2 d_model)."""

TRAINING_METRICS = ("steps", "seconds", "steps_trained", "train_acc", "test_acc", "c_in", "c_out", "init_test_acc",
                    "init_c_in", "init_c_out")
"""The scalars of a run's training record (:func:`training_record`) summarised over seeds, in each row."""

ANALYSIS_METRICS = (
    "n_key", "explained_share", "mean_share", "untrained_n_key", "untrained_explained_share",
    "logit_key_share", "untrained_logit_key_share",
    "mi", "mi_null", "mi_z", "mi_norm", "mi_excess", "mi_max",
    "spectral_mi", "spectral_mi_null", "spectral_mi_z", "spectral_mi_norm", "spectral_mi_excess", "spectral_c",
    "spectral_k",
    "abl_acc_before", "abl_test_acc_before", "abl_acc_after", "abl_test_acc_after", "abl_specificity",
    "abl_power_specificity", "abl_purity", "control_acc_after", "control_test_acc_after", "control_specificity",
    "control_power_specificity", "control_purity", "specificity_excess",
)
"""The scalars of a model's analyses (:meth:`ModularAddition.analyse`), its row (None where undefined)."""

SUMMARY_METRICS = TRAINING_METRICS + ANALYSIS_METRICS
"""The per-run scalars summarised over seeds (:meth:`ModularAddition.summarise`): a row's."""

AGAINST_NULL = {"mi": "mi_null", "spectral_mi": "spectral_mi_null", "abl_specificity": "control_specificity",
                "abl_power_specificity": "control_power_specificity", "abl_purity": "control_purity",
                "explained_share": "untrained_explained_share", "logit_key_share": "untrained_logit_key_share"}
"""Each measure and its null, control or untrained baseline, compared per run (paired)."""


@dataclass(frozen=True)
class ModAddSettings:
    """Stage 8's settings, one home for their defaults (the paper preset's values), checked on
    construction: every problem of the values in one :class:`~modclust.core.checks.SettingsError`.

    A preset's ``modadd:`` section sets them by field name; notebook 08 takes each as the
    parameter ``modadd_<field>`` (:func:`modclust.pipeline.presets.settings_from_parameters`).

    Model and data: modulus ``p`` (odd: the Fourier basis needs it), ``train_frac`` of the p^2
    pairs for training, ``d_model``, ``n_heads``, ``d_mlp``. Training: AdamW ``lr``,
    ``weight_decay``, at most ``max_steps`` full-batch steps, stopped ``steps_after`` steps after
    the first evaluation (every ``eval_every`` steps) with test accuracy >= ``stop_at`` and
    training accuracy 1 (the mechanism keeps settling after it first generalises); the loss acts
    on ``n_clusters`` equal blocks of hidden neurons, and the clusters found after training are
    as many. The study: every seed of ``seeds`` at lambda 0 and at ``main_lambda``, and the
    whole study again at each modulus of ``moduli``. Analyses: a neuron is explained by
    its dominant frequency when that frequency holds >= ``min_share`` of its non-constant power;
    a key frequency dominates at least ``min_neurons`` explained neurons; ``null_draws``
    shuffled assignments for each MI; ``control_draws`` random neuron sets per cluster;
    ``spectral_weights`` (one of :data:`SPECTRAL_WEIGHTS`) for the post-hoc clusters.
    """

    preset_section: ClassVar[str | None] = "modadd"
    """The preset section that sets these settings (None: the top level)."""

    n_clusters: int = 8
    p: int = 59
    train_frac: float = 0.5
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    lr: float = 0.003
    weight_decay: float = 1.0
    main_lambda: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    max_steps: int = 5000
    stop_at: float = 0.99
    steps_after: int = 1000
    eval_every: int = 50
    min_share: float = 0.5
    min_neurons: int = 2
    null_draws: int = 200
    control_draws: int = 4
    spectral_weights: str = "mlp_in"
    moduli: tuple[int, ...] = (41,)

    def __post_init__(self) -> None:
        problems = Problems()
        with problems.about("p"):
            p = check_int("modadd p", self.p, 3, hint="the modulus: an odd number >= 3")
            if p % 2 == 0:
                raise ValueError(f"modadd p must be odd (the sin/cos Fourier basis of Z_p needs it), got {p}: "
                                 f"use {p - 1} or {p + 1}")
        with problems.about("train_frac"):
            check_float("modadd train_frac", self.train_frac, 0.0, 1.0, strict_min=True, strict_max=True,
                        hint="the share of the p^2 pairs used for training, e.g. 0.5")
        for name in ("d_model", "n_heads", "d_mlp", "min_neurons"):
            with problems.about(name):
                check_int(f"modadd {name}", getattr(self, name), 1)
        if problems.ok("d_model", "n_heads") and self.d_model % self.n_heads:
            problems.add(f"modadd d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})",
                         "d_model", "n_heads")
        with problems.about("lr"):
            check_float("modadd lr", self.lr, 0.0, strict_min=True)
        with problems.about("weight_decay"):
            check_float("modadd weight_decay", self.weight_decay, 0.0)
        with problems.about("main_lambda"):
            check_float("modadd main_lambda", self.main_lambda, 0.0, strict_min=True,
                        hint="the clustered runs' lambda, compared with lambda 0")
        with problems.about("seeds"):
            object.__setattr__(self, "seeds", check_seeds("modadd seeds", self.seeds, SEED_MAX))
        with problems.about("max_steps"):
            check_int("modadd max_steps", self.max_steps, 1, hint="the most training steps a run may take")
        with problems.about("stop_at"):
            check_fraction("modadd stop_at", self.stop_at,
                           hint="the test accuracy that counts as generalised, e.g. 0.99")
        with problems.about("steps_after"):
            check_int("modadd steps_after", self.steps_after, 0, hint="steps trained on after generalising, e.g. 2000")
        with problems.about("eval_every"):
            check_int("modadd eval_every", self.eval_every, 1)
        if problems.ok("n_clusters", "d_mlp", "d_model"):
            with problems.about("n_clusters", "d_mlp", "d_model"):
                most = min(self.d_mlp, self.d_model)
                check_int("modadd n_clusters", self.n_clusters, 2, most,
                          hint=f"the number of neuron blocks, at most min(d_mlp, d_model) = {most}")
        with problems.about("min_share"):
            check_fraction("modadd min_share", self.min_share)
        with problems.about("null_draws"):
            check_int("modadd null_draws", self.null_draws, 2, hint="shuffled assignments per MI, e.g. 200")
        with problems.about("control_draws"):
            check_int("modadd control_draws", self.control_draws, 1, hint="random neuron sets per cluster, e.g. 5")
        with problems.about("spectral_weights"):
            check_choice("modadd spectral_weights", self.spectral_weights, SPECTRAL_WEIGHTS)
        with problems.about("moduli"):
            moduli = check_ints("modadd moduli", self.moduli, 3, hint="odd moduli, each a second study")
            check_distinct("modadd moduli", moduli, "a study")
            even = [q for q in moduli if q % 2 == 0]
            if even:
                raise ValueError(f"modadd moduli must be odd (the Fourier basis of Z_p needs it), got {even}")
            object.__setattr__(self, "moduli", moduli)
        if problems.ok("moduli", "p") and self.p in self.moduli:
            problems.add(f"modadd moduli {list(self.moduli)} repeat p = {self.p}, which would count its study "
                         "twice: remove it from the moduli", "moduli", "p")
        problems.raise_any()

    @property
    def lambdas(self) -> list[float]:
        """The study's lambdas: 0 (unclustered) and ``main_lambda``."""
        return [0.0, float(self.main_lambda)]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --- training -------------------------------------------------------------------------------

def make_model(config: ModAddSettings, seed: int) -> ModAddTransformer:
    """The seed's untrained transformer (also the trivial baseline of every measure)."""
    return make_transformer(config.p, seed, config.d_model, config.n_heads, config.d_mlp)


def seed_data(config: ModAddSettings, seed: int, device: str | torch.device = "cpu") -> ModAddData:
    """The seed's pairs and train/test split (the same for every lambda)."""
    return modular_addition_data(config.p, config.train_frac, check_int("seed", seed, 0, SEED_MAX), device=device)


def train_run(config: ModAddSettings, lam: float, seed: int, device: str | torch.device = "cpu") -> TransformerRun:
    """Train the seed's model on the seed's split at ``lam`` until it generalises or ``max_steps`` pass
    (its neuron clusters: ``n_clusters`` equal blocks, :func:`~modclust.core.transformer.mlp_partitions`)."""
    data = seed_data(config, seed, device)
    return train_transformer(make_model(config, seed), data, steps=config.max_steps, lr=config.lr,
                             weight_decay=config.weight_decay, lam=lam, n_clusters=config.n_clusters,
                             eval_every=config.eval_every, stop_at=config.stop_at, steps_after=config.steps_after)


def training_record(run: TransformerRun, stop_at: float) -> dict[str, Any]:
    """Steps and seconds to test accuracy ``stop_at`` (None if never), final and step-0 accuracy and C."""
    h = run.history
    first = run.first(stop_at)
    return {"generalised": first is not None, "steps": None if first is None else first[0],
            "seconds": None if first is None else first[1], "steps_trained": int(h["step"][-1]),
            "seconds_trained": float(h["seconds"][-1]), "train_acc": run.train_acc, "test_acc": run.test_acc,
            "c_in": h["c_in"][-1], "c_out": h["c_out"][-1], "init_test_acc": h["test_acc"][0],
            "init_c_in": h["c_in"][0], "init_c_out": h["c_out"][0],
            "history": {k: list(h[k]) for k in ("step", "train_acc", "test_acc", "c_in", "c_out")}}


# --- frequencies ----------------------------------------------------------------------------

def frequencies_of(model: ModAddTransformer, config: ModAddSettings) -> NeuronFrequencies:
    """Every hidden neuron's dominant frequency and the model's key frequencies, by the config's rule."""
    return neuron_frequencies(neuron_activations(model).cpu(), config.min_share, config.min_neurons)


def logit_key_share(model: ModAddTransformer, frequencies: Sequence[int]) -> float:
    """Share of the (c-centred) logits' power along cos/sin of w_k (a + b - c) summed over ``frequencies``."""
    shares = logit_frequency_shares(logit_table(model))
    return float(sum(float(shares[k - 1]) for k in frequencies))


def frequency_record(model: ModAddTransformer, untrained: ModAddTransformer, config: ModAddSettings
                     ) -> tuple[NeuronFrequencies, dict[str, Any]]:
    """The trained model's frequencies, and a record of them beside the untrained model's.

    The untrained model's logit share is measured at the trained model's key frequencies.
    """
    nf = frequencies_of(model, config)
    base = frequencies_of(untrained, config)
    keys = nf.key_frequencies
    rec = {"key_frequencies": list(keys), "n_key": len(keys), "explained_share": float(nf.explained.float().mean()),
           "mean_share": float(nf.share.mean()), "untrained_n_key": len(base.key_frequencies),
           "untrained_explained_share": float(base.explained.float().mean()),
           "logit_key_share": logit_key_share(model, keys) if keys else None,
           "untrained_logit_key_share": logit_key_share(untrained, keys) if keys else None}
    return nf, rec


# --- clusters and frequencies ---------------------------------------------------------------

def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def mi_record(clusters: Tensor, nf: NeuronFrequencies, n_draws: int, seed: int,
              among: Tensor | None = None) -> dict[str, Any]:
    """MI (bits) between ``clusters`` (d_mlp,) (-1: no cluster) and the dominant frequency, over the
    explained neurons in a cluster (and in ``among``, a (d_mlp,) mask: the neurons every clustering
    compared assigns, so two clusterings of one model are scored on the same neurons), with its
    shuffled-assignment null (the labels permuted over those neurons: cluster sizes kept).

    Keys: ``mi``, the null's ``null`` (mean) and ``null_sd``, ``z`` (None when the null has no
    spread), ``max`` = min(H(cluster), H(frequency)), the largest MI possible, ``norm`` = MI / max
    (None when max is 0), ``excess`` = MI - null mean, and ``n_neurons`` counted.
    """
    clusters = torch.as_tensor(clusters).flatten().cpu()
    keep = nf.explained & (clusters >= 0)
    if among is not None:
        keep &= torch.as_tensor(among, dtype=torch.bool).flatten().cpu()
    res = cluster_frequency_mi(clusters, nf.dominant, keep=keep, n_draws=n_draws, seed=seed)
    return {"mi": res.mi, "null": res.null_mean, "null_sd": res.null_sd, "z": _finite(res.z), "max": res.max_mi,
            "norm": res.mi / res.max_mi if res.max_mi > 0 else None, "excess": res.mi - res.null_mean,
            "n_neurons": res.n_neurons}


def frequency_counts(clusters: Tensor, nf: NeuronFrequencies) -> list[list[int]]:
    """(k, n_key) counts: explained neurons of each cluster (0..k-1) whose dominant frequency is each key one."""
    clusters = torch.as_tensor(clusters).flatten().cpu()
    k = int(clusters.max()) + 1 if len(clusters) and int(clusters.max()) >= 0 else 0
    keys = nf.key_frequencies
    return [[int(((clusters == c) & nf.explained & (nf.dominant == f)).sum()) for f in keys] for c in range(k)]


def spectral_clusters(model: ModAddTransformer, k: int, weights: str = "mlp_in", seed: int = 0
                      ) -> tuple[Tensor, float]:
    """Clusters of the hidden neurons found after training, and C of the matrix they were found in.

    Bipartite spectral co-clustering (:mod:`modclust.analysis.spectral`) of |W_in| (``"mlp_in"``,
    via :func:`modclust.analysis.any_model.layer_spectral_partition`) or of |[W_in, W_out^T]|
    (``"neuron_weights"``) into at most k clusters; its rows are the neurons. Returns each
    neuron's cluster (d_mlp,) (-1: in none) and C of that matrix under the found partition.
    """
    check_choice("spectral weights", weights, SPECTRAL_WEIGHTS)
    w_in = model.mlp_in.weight.detach().cpu()
    if weights == "mlp_in":
        part = layer_spectral_partition(model, "mlp_in", k, seed)
        matrix = w_in
    else:
        matrix = torch.cat([w_in, model.mlp_out.weight.detach().cpu().T], 1)  # (d_mlp, 2 d_model)
        part = spectral_partition(matrix, k, seed)
    labels = neuron_clusters({"mlp_in": part})
    return labels, weight_clusterability(matrix, part)


# --- ablations ------------------------------------------------------------------------------

def own_frequency(members: Tensor, nf: NeuronFrequencies) -> tuple[int | None, float | None]:
    """A neuron set's own frequency and its purity.

    Among the set's explained neurons whose dominant frequency is a key frequency, the most
    common dominant frequency (ties: the smallest) and the share of those neurons it holds.
    (None, None) when the set has no such neuron.
    """
    members = torch.as_tensor(members, dtype=torch.bool).flatten().cpu()
    keys = torch.tensor(nf.key_frequencies, dtype=nf.dominant.dtype)
    chosen = members & nf.explained & torch.isin(nf.dominant, keys)
    if not bool(chosen.any()):
        return None, None
    freqs, counts = torch.unique(nf.dominant[chosen], return_counts=True)  # ascending frequencies
    i = int(torch.argmax(counts))  # the first maximum: the smallest frequency among ties
    return int(freqs[i]), float(counts[i]) / int(chosen.sum())


def removed_power(ablation: ClusterAblation) -> list[float]:
    """Logit power removed at each of the ablation's frequencies: rms_before^2 - rms_after^2 (may be < 0)."""
    return [b * b - a * a for b, a in zip(ablation.logit_rms_before, ablation.logit_rms_after)]


def specificity(ablation: ClusterAblation, own: int | None, relative: bool = True, tol: float = 1e-9) -> float | None:
    """How much of what an ablation removes from the logits, over its (key) frequencies, is ``own``'s.

    ``relative`` (the default): with r_k the share of frequency k's logit power the ablation
    removes, r_own / sum_k r_k. 1 when only the own frequency loses power, 1/n_key when every
    frequency loses the same share (as for neurons removed at random), whatever the frequencies'
    sizes. Otherwise: the share of the removed logit power (rms_before^2 - rms_after^2, summed
    over the frequencies) that falls on ``own``, which also leans towards whichever frequency
    carries most power. Only removals count (a frequency whose power rises contributes 0). None
    with fewer than two frequencies (the share is then 1 by construction), without an own
    frequency, or when (almost) nothing is removed (below ``tol`` of the logits' power there).
    """
    if len(ablation.frequencies) < 2 or own is None or own not in ablation.frequencies:
        return None
    before = [b * b for b in ablation.logit_rms_before]
    removed = [max(0.0, r) for r in removed_power(ablation)]
    if sum(removed) <= tol * max(sum(before), 1e-30):
        return None
    if relative:
        removed = [r / b if b > 0 else 0.0 for r, b in zip(removed, before)]
    return removed[ablation.frequencies.index(own)] / sum(removed)


def _scored(ab: ClusterAblation, members: Tensor, nf: NeuronFrequencies) -> dict[str, Any]:
    own, purity = own_frequency(members, nf)
    return {"cluster": ab.cluster, "n_neurons": ab.n_neurons, "own_frequency": own, "purity": purity,
            "specificity": specificity(ab, own), "power_specificity": specificity(ab, own, relative=False),
            "acc_before": ab.acc_before, "acc_after": ab.acc_after,
            "test_acc_before": ab.test_acc_before, "test_acc_after": ab.test_acc_after,
            "logit_rms_before": list(ab.logit_rms_before), "logit_rms_after": list(ab.logit_rms_after)}


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def ablation_analysis(model: ModAddTransformer, data: ModAddData, clusters: Tensor, nf: NeuronFrequencies,
                      control_draws: int, seed: int) -> dict[str, Any]:
    """Ablate each cluster of ``clusters`` (d_mlp,) and, as the control, ``control_draws`` random
    neuron sets of each cluster's size (drawn from every neuron by ``seed``).

    Returns ``"clusters"`` and ``"controls"`` (one entry per ablation: accuracy on all pairs and
    on the test pairs before and after, the logits' rms at each key frequency before and after,
    the set's own frequency, purity and specificity) and their means over the run's clusters
    and controls (``acc_after``, ``test_acc_after``, ``specificity``, ``purity``, ... of each).
    """
    control_draws = check_int("control_draws", control_draws, 1)
    clusters = torch.as_tensor(clusters).flatten().cpu()
    keys = nf.key_frequencies
    before = logit_profile(model, data, keys)  # the full model, once for every ablation
    scored = [_scored(ablate_cluster(model, data, clusters, int(c), keys, before), clusters == c, nf)
              for c in torch.unique(clusters).tolist() if c >= 0]
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    controls = []
    for c in scored:
        for _ in range(control_draws):
            chosen = torch.randperm(len(clusters), generator=gen)[:c["n_neurons"]]
            labels = torch.full_like(clusters, -1)
            labels[chosen] = 0
            ab = ablate_cluster(model, data, labels, 0, keys, before)
            controls.append({**_scored(ab, labels == 0, nf), "cluster": c["cluster"]})
    out: dict[str, Any] = {"frequencies": list(keys), "clusters": scored, "controls": controls}
    for name, rows in (("abl", scored), ("control", controls)):
        for key in ("acc_before", "test_acc_before", "acc_after", "test_acc_after", "specificity", "power_specificity",
                    "purity"):
            out[f"{name}_{key}"] = _mean(r[key] for r in rows)
    return out


# --- the study -----------------------------------------------------------------------------

@dataclass
class TrainedRun(Trained):
    """One trained model of the grid and its record, with its
    :class:`~modclust.core.transformer.TransformerRun`: the seed's data and the run's neuron
    clusters, which the analyses read."""

    run: TransformerRun = field(repr=False)


class ModularAddition(Study[ModAddSettings, None, None]):
    """Modular addition as a study (see the module doc): every seed at lambda 0 and at
    ``main_lambda``, each run trained on its seed's own split (the study's data is None) on
    ``device``; ``progress`` shows a bar over the training."""

    name = "modular addition"
    record_metrics = TRAINING_METRICS

    def __init__(self, settings: ModAddSettings, device: str | torch.device = "cpu", progress: bool = False) -> None:
        if not isinstance(settings, ModAddSettings):
            raise TypeError(f"the modular-addition study takes ModAddSettings, got {type(settings).__name__}")
        super().__init__(settings)
        self.device = device
        self.progress = progress

    def train(self, data: None, prepared: None, runs: Sequence[tuple[float, int]]) -> list[Trained]:
        """Each (lambda, seed) of ``runs`` (:func:`train_run`), one after another, with its :func:`training_record`."""
        s = self.settings
        out: list[Trained] = []
        for lam, seed in track(runs, desc=f"{self.name}: training", disable=not self.progress):
            run = train_run(s, lam, seed, self.device)
            out.append(TrainedRun(run.model, {"lam": float(lam), "seed": int(seed),
                                              **training_record(run, s.stop_at)}, run))
        return out

    def fresh(self, data: None, prepared: None, seed: int) -> ModAddTransformer:
        """The seed's untrained transformer (:func:`make_model`) on the study's device."""
        return make_model(self.settings, seed).to(self.device)

    def restore(self, data: None, prepared: None, model: nn.Module, record: dict[str, Any]) -> TrainedRun:
        """A loaded run with its :class:`~modclust.core.transformer.TransformerRun` rebuilt from its seed:
        the seed's data (:func:`seed_data`) and the equal neuron blocks it was trained on; its
        history is the record's (step, accuracies and C)."""
        assert isinstance(model, ModAddTransformer)
        model.eval()  # as train_transformer leaves it
        seed, s = int(record["seed"]), self.settings
        run = TransformerRun(model, seed_data(s, seed, self.device), mlp_partitions(model, s.n_clusters),
                             float(record["lam"]), {k: list(v) for k, v in record["history"].items()})
        return TrainedRun(model, record, run)

    def analyse(self, data: None, prepared: None, run: Trained) -> dict[str, Any]:
        """Frequencies, MI, spectral clusters and ablations of one trained model (see the module doc).

        Scalars sit at the top level (the names of :data:`ANALYSIS_METRICS`, None where
        undefined, and ``mi_neurons``); the details under ``"key_frequencies"``, ``"mi_detail"``,
        ``"counts"``, ``"spectral"`` and ``"ablation"``.
        """
        if not isinstance(run, TrainedRun):
            raise TypeError(f"the modular-addition study analyses the runs its train gives, got {type(run).__name__}")
        s, seed, model = self.settings, run.seed, run.model
        untrained = make_model(s, seed).to(next(model.parameters()).device)
        nf, rec = frequency_record(model, untrained, s)
        blocks = run.run.neuron_clusters
        found, c_found = spectral_clusters(model, s.n_clusters, s.spectral_weights, seed)
        both = (blocks >= 0) & (found >= 0)  # the trained blocks and the found clusters, scored on the same neurons
        mi = mi_record(blocks, nf, s.null_draws, seed, among=both)
        rec.update({"mi": mi["mi"], "mi_neurons": mi["n_neurons"], "mi_null": mi["null"], "mi_z": mi["z"],
                    "mi_norm": mi["norm"], "mi_excess": mi["excess"], "mi_max": mi["max"], "mi_detail": mi,
                    "counts": frequency_counts(blocks, nf)})
        smi = mi_record(found, nf, s.null_draws, seed, among=both)
        rec.update({"spectral_mi": smi["mi"], "spectral_mi_null": smi["null"], "spectral_mi_z": smi["z"],
                    "spectral_mi_norm": smi["norm"], "spectral_mi_excess": smi["excess"], "spectral_c": c_found,
                    "spectral_k": int(found.max()) + 1,
                    "spectral": {"mi": smi, "labels": found.tolist(), "counts": frequency_counts(found, nf),
                                 "sizes": [int((found == c).sum()) for c in range(int(found.max()) + 1)]}})
        abl = ablation_analysis(model, run.run.data, blocks, nf, s.control_draws, seed)
        rec.update({k: v for k, v in abl.items() if k.startswith(("abl_", "control_"))})
        spec, ctrl = rec["abl_specificity"], rec["control_specificity"]
        rec["specificity_excess"] = None if spec is None or ctrl is None else spec - ctrl
        rec["ablation"] = {k: abl[k] for k in ("frequencies", "clusters", "controls")}
        return rec

    def row(self, analysis: Mapping[str, Any]) -> dict[str, Any]:
        """The analyses' scalars :data:`ANALYSIS_METRICS`."""
        return {k: analysis[k] for k in ANALYSIS_METRICS}

    def summarise(self, result: StudyResult) -> dict[str, Any]:
        """``"runs"``: :func:`~modclust.experiments.grid.summary_table` of the rows'
        :data:`SUMMARY_METRICS` by lambda. ``"against_null"``: per lambda and metric of
        :data:`AGAINST_NULL`, the interval of the per-run difference to its null and its
        :func:`~modclust.core.stats.direction` (:func:`~modclust.experiments.study.against`).
        ``"generalised"``: per lambda, the runs and the seeds that did not reach ``stop_at``."""
        generalised = {}
        for lam in self.lambdas:
            at = sorted((r for r in result.records if float(r["lam"]) == lam), key=lambda r: r["seed"])
            generalised[str(lam)] = {"n_runs": len(at), "n_generalised": sum(bool(r["generalised"]) for r in at),
                                     "failed_seeds": [r["seed"] for r in at if not r["generalised"]]}
        return {"runs": summary_table(result.rows, SUMMARY_METRICS, by=("lam",)),
                "against_null": against(result.rows, AGAINST_NULL, self.lambdas), "generalised": generalised}


def shown(summary: Mapping[str, Any] | None, digits: int = 3) -> str:
    """A summary row's interval (``Interval.to_dict``) as ``mean [lo, hi]``; "n/a" when undefined (None)."""
    if summary is None:
        return "n/a"
    return Interval(**summary).fmt(digits)


def summary_row(study: StudyResult, lam: float) -> dict[str, Any]:
    """The study's summary row (its ``summary["runs"]``) of lambda ``lam``."""
    for row in study.summary["runs"]:
        if float(row["lam"]) == float(lam):
            return row
    raise ValueError(f"the study has no runs at lambda={lam}: its lambdas are "
                     f"{[row['lam'] for row in study.summary['runs']]}")


def stage_studies(settings: ModAddSettings, device: str | torch.device = "cpu", progress: bool = False
                  ) -> dict[int, ModularAddition]:
    """Stage 8's studies by modulus: ``settings``' own, then the study again at each of its
    ``moduli`` (the rest of ``settings`` kept)."""
    return {settings.p: ModularAddition(settings, device, progress),
            **{p: ModularAddition(replace(settings, p=p, moduli=()), device, progress) for p in settings.moduli}}


def modulus_folder(root: str | os.PathLike[str], p: int) -> Path:
    """Where the models of modulus ``p``'s study trained elsewhere are saved under ``root``: ``p<p>``."""
    return Path(root) / f"p{int(p)}"


def other_moduli(settings: ModAddSettings, device: str | torch.device = "cpu", progress: bool = True,
                 trained: str | os.PathLike[str] | None = None) -> dict[str, StudyResult]:
    """The whole study again at each modulus of ``settings.moduli`` (the rest of ``settings``
    kept): whether what one modulus shows holds at another. ``{str(p): its result}``.
    ``trained``: a folder of models trained elsewhere (each modulus's in :func:`modulus_folder`),
    analysed instead of trained."""
    studies = stage_studies(settings, device, progress)
    return {str(p): run_study(studies[p], None, progress, None if trained is None else modulus_folder(trained, p))
            for p in settings.moduli}


def modulus_row(study: StudyResult) -> dict[str, Any]:
    """One modulus's key numbers, paired by seed (clustered lambda against 0; nan where
    undefined): runs generalised, key frequencies, and the MI of the clustered models' trained
    clusters and of the unclustered models' clusters found after training."""
    lam, seeds = float(study.study["main_lambda"]), [int(s) for s in study.study["seeds"]]

    def vals(v: float, key: str) -> list[float]:
        got = study.values(key, v)
        return [got.get(s, math.nan) for s in seeds]
    return {"p": int(study.study["p"]), "lam": lam, "seeds": seeds,
            "generalised": sum(bool(r["generalised"]) for r in study.records), "runs": len(study.records),
            "n_key": {"unclustered": vals(0.0, "n_key"), "clustered": vals(lam, "n_key")},
            "mi_trained": vals(lam, "mi"), "mi_spectral_unclustered": vals(0.0, "spectral_mi")}
