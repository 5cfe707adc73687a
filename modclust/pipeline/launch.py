"""Train a stage's models as a job array (SLURM through submitit, or local processes), then run
the stage on them.

``python -m modclust.pipeline launch PRESET STAGE --chunk N --cluster slurm|local`` takes the
grid of a stage that trains models (:data:`LAUNCHABLE`) on the preset's settings, packs its runs
into *chunks* of at most N runs (as even as they can be) and submits the chunks as one job array
(``submitit.AutoExecutor``: ``sbatch --array`` on SLURM, one process each on this machine with
``local``). A chunk trains as the stage trains on one machine, only on fewer runs:

- ``01_train`` (the MLP grid, its sweep and controls, :mod:`modclust.experiments.mlp_train`):
  stage 1 trains in a fixed sequence of calls (the grid and sweep, the controls, each round of
  each L1 search, the L1 runs: a call's runs depend on the runs before it), and each call
  becomes one job array, a *round*. Its configs are grouped as ``train_grid`` groups them (one
  batched model per shape) and each group is cut into chunks, each trained as one batched
  model (``train_many``). The launcher loads each round back before planning the next.
- ``07_cnn`` and ``08_modadd`` (studies of the template, :mod:`modclust.experiments.study`):
  the (lambda, seed) runs of each study of the stage (the CNN's per dataset, modular
  addition's per modulus) are cut into chunks, each trained by the family's own
  ``train`` (the CNN's as one vectorised ensemble, modular addition's one run after another),
  in one job array for the whole stage.

Each job (:mod:`modclust.experiments.jobs`) loads its data and trains in its own process with
the preset's ``device`` and ``threads``; it saves its runs and returns their files. The launch waits for every job (Ctrl-C
cancels them), names each job that failed with its log, and then runs the stage's notebook
with ``trained_dir`` set (:func:`modclust.pipeline.stages.run_stage`): the notebook reads the
models instead of training them, and the stage is committed as ``make`` commits it, so ``make
paper PRESET=...`` goes on from there. The build folder's lock is held throughout.

Layout, ``build/<preset>/launch/<stage>/`` (emptied when a launch starts):

- ``jobs/<job id>/``: submitit's pickles and logs of each job;
- ``launched.json``: the preset, stage and settings, written once every job is done
  (``--stage-only`` runs the stage again on these models, when the preset still has them);
- stage 1: ``round<k>/<run name>.pt``, round k's runs (:func:`modclust.core.checkpoint.save`);
- stage 7: ``<dataset>/lam<lambda>_seed<seed>.pt``, each dataset's models, and stage 8:
  ``p<modulus>/lam<lambda>_seed<seed>.pt``, each modulus's
  (:func:`modclust.experiments.study.save_trained`).

How close to one machine: a run trains on its own seed's init and data order wherever it is
trained; what changes with the chunking is which runs share a batched model. On the CPU every
model is bitwise the one-process model but for a lone run cut from a larger batch (``chunk``
1: the CNN's ensemble of one rounds differently, about 1e-6, and the MLP's trainer steps a lone
run in double-precision scalars) and an MLP chunk of one learning rate cut from a batch of
several (:func:`mlp_chunks` deals such a batch so that its chunks mix the rates where they can;
a chunk left with one rounds its SGD step differently, about 1e-8 per step). Modular addition
trains one run at a time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modclust.core.io import read_json, write_json
from modclust.core.train import TrainConfig, TrainResult, batch_key
from modclust.experiments.classifier import dataset_folder
from modclust.experiments.cnn_study import Cnn
from modclust.experiments.jobs import StudyPart, cnn_study, modadd_study, train_mlp_chunk, train_study_chunk
from modclust.experiments.mlp_study import MlpSettings
from modclust.experiments.mlp_train import Rounds, StagePlan, load_round
from modclust.experiments.modular_addition import modulus_folder, stage_studies
from modclust.experiments.study import trained_path
from modclust.pipeline.presets import setting_types
from modclust.pipeline.stage_table import STAGES, names
from modclust.pipeline.stages import Command, Layout, PipelineError, build_lock, clean_temporaries, run_stage, say
from modclust.pipeline.studies import STUDIES

LAUNCHABLE = ("01_train", "07_cnn", "08_modadd")
"""The stages whose models the launcher trains (the others read models, or train none)."""

CLUSTERS = ("slurm", "local", "debug")
"""submitit's executors: SLURM, processes on this machine, or this process (to debug a job)."""

T = TypeVar("T")


class LaunchError(PipelineError):
    """A launch that cannot go on (a job failed, a stage that trains nothing); the message says why."""


# --- chunks and job arrays -----------------------------------------------------------------------

def split(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in order, cut into as few chunks of at most ``size`` as possible, their sizes
    as even as can be (10 items, size 8: 5 and 5, not 8 and 2)."""
    if size < 1:
        raise ValueError(f"a chunk holds at least one run, got {size}")
    n = -(-len(items) // size)
    out, start = [], 0
    for i in range(n):
        end = start + len(items) // n + (i < len(items) % n)
        out.append(list(items[start:end]))
        start = end
    return out


def mlp_chunks(configs: Sequence[TrainConfig], size: int) -> list[list[TrainConfig]]:
    """The configs grouped as :func:`~modclust.experiments.grid.train_grid` groups them (equal
    :func:`~modclust.core.train.batch_key`, first-seen order, each group one batched model on one
    machine), each group cut into chunks of at most ``size``, as even as can be.

    A group whose runs have several learning rates is dealt to its chunks in turn, by learning
    rate, so that its chunks hold several too where they can: the batched SGD step takes a
    learning rate its runs share as one scalar and several as one per run, which round
    differently, so a chunk of one rate cut from a batch of several would not train bitwise as
    the batch did (:class:`~modclust.core.train._BatchedSGD`).
    """
    groups: dict[tuple, list[TrainConfig]] = {}
    for c in configs:
        groups.setdefault(batch_key(c), []).append(c)
    out = []
    for group in groups.values():
        chunks = split(group, size)
        if len({c.lr for c in group}) > 1:
            ordered = sorted(group, key=lambda c: c.lr)  # stable: each rate's runs in their order
            chunks = [ordered[i::len(chunks)] for i in range(len(chunks))]
        out += chunks
    return out


@dataclass(frozen=True)
class Resources:
    """What each job asks for (None: the cluster's default). ``gpus_per_node`` None: one GPU when
    the preset's device is CUDA, else none (the local executor hides the GPUs it is not given)."""

    timeout_min: int = 120
    slurm_partition: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    array_parallelism: int | None = None


def make_executor(folder: Path, cluster: str, name: str, resources: Resources = Resources()) -> Any:
    """A ``submitit.AutoExecutor`` on ``cluster`` whose jobs keep their pickles and logs in
    ``folder/<job id>``."""
    import submitit  # only the launcher needs it

    if cluster not in CLUSTERS:
        raise LaunchError(f"cluster must be one of {list(CLUSTERS)}, got {cluster!r}")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    r = resources
    params = {"name": name, "timeout_min": r.timeout_min, "gpus_per_node": r.gpus_per_node,
              "cpus_per_task": r.cpus_per_task, "mem_gb": r.mem_gb, "slurm_partition": r.slurm_partition,
              "slurm_array_parallelism": r.array_parallelism}
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def job_error(err: BaseException, width: int = 300) -> str:
    """What a failed job raised, in one line: the last exception line of the traceback submitit
    passes on (its own error's first line when there is none)."""
    lines = str(err).splitlines()
    raised = [ln for ln in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", ln)]
    text = raised[-1] if raised else f"{type(err).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= width else text[:width - 3] + "..."


def run_array(executor: Any, job: Callable[[Any], T], chunks: Sequence[Any], what: str) -> list[T]:
    """Submit ``job(chunk)`` for every chunk as one job array and wait for all of them; each
    job's value in order. A failed job is named with its log (every failure, not the first);
    an interrupt cancels the jobs still running."""
    start = time.time()
    jobs = executor.map_array(job, chunks)
    say(f"==> {what}: {len(chunks)} job{'s' if len(chunks) != 1 else ''} submitted "
        f"({', '.join(str(j.job_id) for j in jobs[:3])}{', ...' if len(jobs) > 3 else ''}), waiting")
    values: list[Any] = []
    failed: list[str] = []
    try:
        for i, j in enumerate(jobs):
            try:
                values.append(j.result())
            except Exception as err:  # the job's exception, or submitit's word that it died
                failed.append(f"chunk {i + 1} of {len(jobs)} (job {j.job_id}): {job_error(err)}\n"
                              f"      its log: {j.paths.stderr}")
    except BaseException:  # an interrupt: no job left running for nobody
        for j in jobs:
            if not j.done():
                j.cancel(check=False)
        raise
    if failed:
        raise LaunchError(f"==> {what}: {len(failed)} of {len(jobs)} jobs failed:\n    " + "\n    ".join(failed))
    say(f"==> {what}: done in {time.time() - start:.0f} s")
    return values


# --- stage 1: the MLP's rounds --------------------------------------------------------------------

class ArrayTrainer(Rounds):
    """Stage 1's trainer on a cluster: each round one job array of :func:`mlp_chunks`
    (:func:`~modclust.experiments.jobs.train_mlp_chunk`), loaded back as notebook 01 will load it
    (:func:`~modclust.experiments.mlp_train.load_round`)."""

    def __init__(self, folder: Path, executor: Any, chunk: int, settings: MlpSettings, what: str = "01_train") -> None:
        super().__init__(folder)
        self.executor, self.chunk, self.what = executor, chunk, what
        self.data = {"dataset": settings.dataset, "n_train": settings.n_train, "device": settings.device,
                     "threads": settings.threads}

    def train_round(self, k: int, configs: list[TrainConfig]) -> list[TrainResult]:
        job = functools.partial(train_mlp_chunk, folder=self.folder, k=k, **self.data)
        run_array(self.executor, job, mlp_chunks(configs, self.chunk), f"{self.what} round {k}, {len(configs)} runs")
        return load_round(self.folder, k, configs)


# --- stages 7 and 8: studies of the template --------------------------------------------------------

def stage_parts(stage: str, settings: dict[str | None, Any], folder: Path) -> list[StudyPart]:
    """The studies of stage 7 (one per dataset) or 8 (one per modulus) and their folders under ``folder``."""
    device = settings[None].device
    if stage == "07_cnn":
        s = settings["cnn"]
        grid = tuple(Cnn(s).grid())
        return [StudyPart(f"{stage} {name}", functools.partial(cnn_study, s, name, device), grid,
                     dataset_folder(folder, name)) for name in s.datasets]
    if stage == "08_modadd":
        s = settings["modadd"]
        return [StudyPart(f"{stage} p={p}", functools.partial(modadd_study, s, p, device), tuple(study.grid()),
                     modulus_folder(folder, p)) for p, study in stage_studies(s).items()]
    raise LaunchError(f"stage {stage} is no study of the template: launchable stages are {list(LAUNCHABLE)}")


def launch_studies(parts: Sequence[StudyPart], executor: Any, chunk: int, threads: int, what: str) -> None:
    """Every part's grid in chunks of at most ``chunk`` runs, as one job array
    (:func:`~modclust.experiments.jobs.train_study_chunk`); then checks that every run's model is
    where the stage will read it."""
    chunks = [(part, tuple(runs)) for part in parts for runs in split(part.grid, chunk)]
    n = sum(len(p.grid) for p in parts)
    run_array(executor, functools.partial(train_study_chunk, threads=threads), chunks, f"{what}, {n} runs")
    missing = [str(trained_path(p.folder, lam, seed)) for p in parts for lam, seed in p.grid
               if not trained_path(p.folder, lam, seed).exists()]
    if missing:
        raise LaunchError(f"==> {what}: the jobs finished but left no {missing[:3]}{' ...' if len(missing) > 3 else ''}")


# --- a stage ----------------------------------------------------------------------------------------

def launch_training(stage: str, settings: dict[str | None, Any], folder: Path, executor: Any, chunk: int) -> None:
    """Train ``stage``'s models on ``settings`` (each study's, by preset section) into ``folder``
    as job arrays of chunks of at most ``chunk`` runs (see the module doc)."""
    if stage == "01_train":
        mlp = settings[None]
        StagePlan.of(mlp).train(None, ArrayTrainer(folder, executor, chunk, mlp), progress=False)
    else:
        launch_studies(stage_parts(stage, settings, folder), executor, chunk, settings[None].threads, stage)


def preset_settings(values: dict[str, Any]) -> dict[str | None, Any]:
    """Each study's settings (:data:`~modclust.pipeline.studies.STUDIES`) from a checked preset's values."""
    out = {}
    for section, cls in STUDIES.items():
        given = values if section is None else values.get(section, {})
        known = setting_types(cls)
        out[section] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in known})
    return out


LAUNCHED = "launched.json"
"""Written into a launch's folder once its training is complete: the preset, the stage and the
settings it was trained on (``--stage-only`` checks them against the preset's)."""


def launch(preset: str, stage: str, chunk: int | None, cluster: str | None, resources: Resources = Resources(),
           layout: Layout = Layout(), stage_only: bool = False) -> None:
    """Train ``stage``'s models on ``preset`` as job arrays into ``build/<preset>/launch/<stage>``,
    then run and commit the stage on them, holding the build folder's lock (see the module doc).
    ``stage_only``: train nothing, run the stage on what the last launch trained there (on the
    same settings)."""
    if stage not in LAUNCHABLE:
        known = "" if stage in names() else f" (the stages are {', '.join(names())})"
        raise LaunchError(f"stage {stage} trains no models the launcher can train{known}: launchable stages are "
                          f"{', '.join(LAUNCHABLE)}")
    settings = preset_settings(layout.check(preset))
    record = {"preset": preset, "stage": stage,
              "settings": {section or "": s.to_dict() for section, s in settings.items()}}
    build_dir = layout.build_dir(preset)
    folder = build_dir / "launch" / stage
    with build_lock(build_dir, what=f"launch {preset} {stage}"):
        clean_temporaries(build_dir)
        if stage_only:
            if not (folder / LAUNCHED).is_file():
                raise LaunchError(f"no finished launch in {folder}: launch {stage} without --stage-only first")
            if read_json(folder / LAUNCHED) != json.loads(json.dumps(record)):
                raise LaunchError(f"the models in {folder} were trained on other settings than preset {preset}'s "
                                  "now: launch the stage again")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            if resources.gpus_per_node is None:
                resources = dataclasses.replace(resources, gpus_per_node=int(settings[None].device.startswith("cuda")))
            if chunk is None or cluster is None:
                raise LaunchError(f"launch {stage} needs a chunk size and a cluster to train on")
            executor = make_executor(folder / "jobs", cluster, f"modclust-{preset}-{stage}", resources)
            say(f"==> [{preset}] launch {stage} on {cluster}: chunks of at most {chunk} runs, into {folder}")
            launch_training(stage, settings, folder, executor, chunk)
            write_json(folder / LAUNCHED, record)
        try:
            run_stage(preset, stage, names().index(stage) + 1, len(STAGES), layout, trained_dir=folder)
        except PipelineError as err:
            raise PipelineError(f"{err}\n==> the trained models are kept in {folder}: after a fix, run the stage on "
                                f"them with: python -m modclust.pipeline launch {preset} {stage} --stage-only") from err


def add_arguments(parser: Any) -> None:
    """The ``launch`` command's arguments (on an argparse parser)."""
    parser.add_argument("preset")
    parser.add_argument("stage", help=f"one of {', '.join(LAUNCHABLE)}")
    parser.add_argument("--chunk", type=int, help="at most this many runs per job")
    parser.add_argument("--cluster", choices=CLUSTERS,
                        help="slurm: a SLURM job array; local: one process per job on this machine; "
                             "debug: every job in this process (a failing job opens pdb)")
    parser.add_argument("--slurm-partition", help="the SLURM partition of the jobs")
    parser.add_argument("--timeout-min", type=int, default=Resources.timeout_min, help="each job's time limit")
    parser.add_argument("--gpus-per-node", type=int,
                        help="GPUs per job (default: 1 when the preset's device is cuda, else 0)")
    parser.add_argument("--cpus-per-task", type=int, help="CPUs per job")
    parser.add_argument("--mem-gb", type=float, help="memory per job")
    parser.add_argument("--array-parallelism", type=int, help="at most this many jobs of an array at once (SLURM)")
    parser.add_argument("--stage-only", action="store_true",
                        help="train nothing: run the stage on the models the last launch trained (no --chunk "
                             "or --cluster then)")


def run_command(args: Any, layout: Layout) -> None:
    """Run the ``launch`` command (its arguments parsed by :func:`add_arguments`)."""
    if not args.stage_only and (args.chunk is None or args.cluster is None):
        raise LaunchError(f"launch {args.stage} needs --chunk N (runs per job) and --cluster "
                          f"({' or '.join(CLUSTERS)}), or --stage-only to train nothing")
    if args.chunk is not None and args.chunk < 1:
        raise LaunchError(f"--chunk must be at least 1, got {args.chunk}")
    resources = Resources(args.timeout_min, args.slurm_partition, args.gpus_per_node, args.cpus_per_task,
                          args.mem_gb, args.array_parallelism)
    launch(args.preset, args.stage, args.chunk, args.cluster, resources, layout, args.stage_only)


COMMAND = Command("launch", "train a stage's models as a job array (SLURM or local processes), then run the stage "
                            "on them (modclust.pipeline.launch)", add_arguments, run_command)
"""The ``launch`` command of ``python -m modclust.pipeline``."""
