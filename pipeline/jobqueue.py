"""Batch clusters: Dask workers as Slurm / PBS / SGE / LSF jobs, through dask-jobqueue.

A stage given ``--cluster slurm --cluster-config cluster.yaml`` starts a dask-jobqueue cluster
from a small YAML file (:class:`JobQueueConfig`), lets it adapt between zero jobs and
``max_jobs`` to the work queued (``cluster.adapt``), and runs its shards on it. Stages are
idempotent per shard (done-markers), so a job that the batch system kills costs only the shards
its workers had not finished; a re-run does the rest.

Two pools: a stage whose tasks need a GPU (``resources={"GPU": 1}``) gets GPU jobs (one worker
process per GPU, each advertising ``GPU=1``, with the site's GPU directive), every other stage
gets CPU jobs (one single-threaded worker process per core). CPU tasks therefore never queue
behind GPU workers.

Workers retire before the walltime ends: ``--lifetime`` is the walltime minus a margin
(10 %, at least 5 minutes, at most half the walltime) and ``--lifetime-stagger`` spreads the
retirements (dask-jobqueue documentation, "How to handle job queueing system walltime
killing workers"), so that the adaptive cluster submits fresh jobs while the old ones drain.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}

# The directive that asks for N GPUs, per batch system (sites differ: override with gpu_directives).
GPU_DIRECTIVES = {
    "slurm": ["--gres=gpu:{n}"],
    "pbs": ["-l ngpus={n}"],
    "sge": ["-l gpu={n}"],
    "lsf": ['-gpu "num={n}"'],
}


@dataclass
class JobQueueConfig:
    """What one batch job is and how many may run; every key of the YAML file is a field."""

    cores: int = 4  # cores per job
    memory: str = "16GB"  # memory per job
    walltime: str = "01:00:00"  # [D-]HH:MM:SS (or MM:SS)
    queue: str | None = None  # partition / queue of CPU jobs
    account: str | None = None  # account (slurm, pbs) or project (sge, lsf) charged
    max_jobs: int = 10  # the adaptive CPU pool grows up to this many jobs
    gpus_per_job: int = 1  # GPU jobs: GPUs (and worker processes) per job
    gpu_queue: str | None = None  # partition / queue of GPU jobs (default: queue)
    max_gpu_jobs: int | None = None  # the adaptive GPU pool's limit (default: max_jobs)
    gpu_directives: list[str] | None = None  # replaces GPU_DIRECTIVES[kind]; "{n}" = gpus_per_job
    prologue: list[str] = field(default_factory=list)  # shell lines before the worker starts
    job_directives: list[str] = field(default_factory=list)  # extra scheduler directives
    interface: str | None = None  # network interface of workers and scheduler (e.g. ib0)
    local_directory: str | None = None  # worker scratch space on the compute node
    log_directory: str | None = None  # where the batch system writes job logs
    python: str | None = None  # interpreter on the compute nodes (default: this one)

    def __post_init__(self):
        if self.cores < 1 or self.gpus_per_job < 1 or self.max_jobs < 1:
            raise ValueError("cores, gpus_per_job and max_jobs must be at least 1")
        walltime_seconds(self.walltime)  # fail early on a malformed walltime

    @classmethod
    def from_yaml(cls, path) -> "JobQueueConfig":
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"Cluster config not found: {path}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings, found {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


def walltime_seconds(text: str) -> int:
    """Seconds of a batch walltime: ``HH:MM:SS``, ``D-HH:MM:SS``, ``MM:SS`` or minutes."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not m:
        raise ValueError(f"walltime {text!r}: expected [D-]HH:MM:SS")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if c is not None:
        h, mi, s = a, b, c
    elif b is not None:
        h, mi, s = 0, a, b
    else:
        h, mi, s = 0, a, 0
    total = (days or 0) * 86400 + h * 3600 + mi * 60 + s
    if total <= 0:
        raise ValueError(f"walltime {text!r} is zero")
    return total


def lifetime_args(walltime: str) -> list[str]:
    """``dask worker`` arguments that retire a worker before its job's walltime ends."""
    total = walltime_seconds(walltime)
    margin = min(max(300, total // 10), total // 2)
    stagger = max(1, min(240, margin // 2))
    return ["--lifetime", f"{total - margin}s", "--lifetime-stagger", f"{stagger}s"]


def cluster_kwargs(kind: str, cfg: JobQueueConfig, gpu: bool) -> dict:
    """Keyword arguments of the dask-jobqueue cluster class for one pool."""
    if kind not in KINDS:
        raise ValueError(f"Unknown cluster kind {kind!r}; valid: {', '.join(KINDS)}")
    worker_args = lifetime_args(cfg.walltime)
    directives = list(cfg.job_directives)
    if gpu:
        n = cfg.gpus_per_job
        worker_args += ["--resources", "GPU=1"]  # one worker process per GPU
        directives += [d.format(n=n) for d in (cfg.gpu_directives or GPU_DIRECTIVES[kind])]
    kw = dict(
        cores=cfg.cores, memory=cfg.memory, processes=cfg.gpus_per_job if gpu else cfg.cores,
        walltime=cfg.walltime, queue=(cfg.gpu_queue or cfg.queue) if gpu else cfg.queue,
        job_name="avdd-gpu" if gpu else "avdd-cpu", job_script_prologue=list(cfg.prologue),
        worker_extra_args=worker_args, job_extra_directives=directives, interface=cfg.interface,
        local_directory=cfg.local_directory, log_directory=cfg.log_directory, python=cfg.python or sys.executable,
    )
    if cfg.account is not None:
        kw["account" if kind in ("slurm", "pbs") else "project"] = cfg.account
    return kw


def make_cluster(kind: str, cfg: JobQueueConfig, gpu: bool = False):
    """A dask-jobqueue cluster of zero jobs that adapts up to the pool's limit."""
    import dask_jobqueue

    cluster = getattr(dask_jobqueue, KINDS[kind])(**cluster_kwargs(kind, cfg, gpu))
    limit = (cfg.max_gpu_jobs or cfg.max_jobs) if gpu else cfg.max_jobs
    cluster.adapt(minimum_jobs=0, maximum_jobs=limit)
    return cluster


def job_script(kind: str, cfg: JobQueueConfig, gpu: bool = False) -> str:
    """The job script ``--cluster KIND`` submits (what ``sbatch`` / ``qsub`` / ``bsub`` gets)."""
    import dask_jobqueue

    cls = getattr(dask_jobqueue, KINDS[kind])
    with cls(**cluster_kwargs(kind, cfg, gpu)) as cluster:
        return cluster.job_script()
