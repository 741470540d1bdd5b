"""Where stages run: a Dask client (local cluster by default, or an existing scheduler), and a
driver that maps a per-shard function over shards with a progress bar.

A stage passes a plain function ``fn(shard) -> dict`` (paths and indices only; arrays never
travel through the graph). The dict a shard returns is summarised by the progress bar:
``samples`` (done) and ``failed`` (per-sample failures) are counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from tqdm.auto import tqdm


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, gpu: bool = False,
                cluster: str | None = None, cluster_config=None):
    """A ``distributed.Client``: connected to ``scheduler`` (``tcp://host:port``) when given;
    else to a batch cluster of kind ``cluster`` (slurm, pbs, sge, lsf; settings from the YAML
    file ``cluster_config``, see :mod:`pipeline.jobqueue`) that adapts from zero jobs, in its GPU
    pool when ``gpu``; else to a new local cluster of ``workers`` single-threaded worker
    processes (default: one per core). With ``gpu`` each local worker advertises ``GPU=1``."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    if cluster:
        from .jobqueue import JobQueueConfig, make_cluster

        cfg = cluster_config if isinstance(cluster_config, JobQueueConfig) else (
            JobQueueConfig.from_yaml(cluster_config) if cluster_config else JobQueueConfig())
        with make_cluster(cluster, cfg, gpu=gpu) as batch, Client(batch) as client:
            yield client
        return
    n = workers or default_workers()
    with LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: never clashes with another cluster's 8787
        resources={"GPU": 1} if gpu else None,
        silence_logs=40,
    ) as cluster, Client(cluster) as client:
        yield client


@dataclass
class ShardRun:
    """What happened to the shards of one stage run."""

    done: dict[int, dict] = field(default_factory=dict)  # shard -> the dict it returned
    errors: dict[int, str] = field(default_factory=dict)  # shard -> error text (shard not written)
    seconds: float = 0.0
    workers: dict[int, str] = field(default_factory=dict)  # shard -> the Dask worker that finished it


def _on_worker(fn: Callable[[int], dict], shard: int) -> tuple[dict, str]:
    """Run one shard and say where it ran (the worker's name)."""
    from distributed import get_worker

    return fn(shard), str(get_worker().name)


def run_shards(
    fn: Callable[[int], dict],
    shards: list[int],
    client=None,
    desc: str = "shards",
    progress: bool = True,
    resources: dict | None = None,
    key_prefix: str = "avdd",
) -> ShardRun:
    """Run ``fn(shard)`` for every shard, on ``client`` (Dask) or in this process when None.

    A shard whose task raises (or whose workers keep dying) is recorded in ``errors``; the
    other shards go on. ``resources`` (e.g. ``{"GPU": 1}``) annotates every task.
    """
    run = ShardRun()
    start = time.perf_counter()
    bar = tqdm(total=len(shards), desc=desc, unit="shard", disable=not progress, dynamic_ncols=True)
    counts = {"samples": 0, "failed": 0}

    def record(shard: int, result: dict | None, error: str | None):
        if error is not None:
            run.errors[shard] = error
        else:
            run.done[shard] = result
            counts["samples"] += int(result.get("samples", 0))
            counts["failed"] += int(result.get("failed", 0))
        elapsed = max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(samples_s=f"{counts['samples'] / elapsed:.2f}", failures=counts["failed"],
                        errors=len(run.errors), refresh=False)
        bar.update(1)

    try:
        if client is None:
            for s in shards:
                try:
                    record(s, fn(s), None)
                except Exception:  # a shard-level error: keep going with the others
                    record(s, None, traceback.format_exc(limit=5))
        else:
            from distributed import as_completed

            futures = {
                client.submit(_on_worker, fn, s, key=f"{key_prefix}-{s}-{os.urandom(4).hex()}", pure=False,
                              resources=resources): s
                for s in shards
            }
            for fut in as_completed(futures):
                s = futures[fut]
                if fut.status == "finished":
                    result, run.workers[s] = fut.result()
                    record(s, result, None)
                else:
                    exc = fut.exception()
                    record(s, None, f"{type(exc).__name__}: {exc}")
                fut.release()
    finally:
        bar.close()
    run.seconds = time.perf_counter() - start
    return run


@dataclass(frozen=True)
class Placement:
    """Where a stage runs: an existing ``client``, the Dask ``scheduler`` at an address, a batch
    ``cluster`` (slurm, pbs, sge, lsf) set up by the YAML file ``cluster_config``, or a local
    cluster of ``workers`` processes (None: one per core; 0: in this process).

    ``resources`` are the Dask resources every task of the stage needs (default: ``GPU=1`` for
    a stage on a CUDA device, none otherwise); tasks without them run on any worker."""

    client: object = None
    scheduler: str | None = None
    workers: int | None = None
    threads: int | None = None  # torch/ffmpeg threads per task (None: cores / local workers)
    cluster: str | None = None
    cluster_config: object = None  # a path to the YAML file or a JobQueueConfig
    resources: dict | None = None

    @property
    def local_workers(self) -> int:
        return self.workers if self.workers is not None else default_workers()

    def task_threads(self) -> int:
        if self.threads is not None:
            return self.threads
        if self.client is not None or self.scheduler or self.cluster:
            return 1
        return max(1, default_workers() // max(1, self.local_workers))


def run_stage(fn: Callable[[int], dict], shards: list[int], where: Placement, desc: str, progress: bool = True,
              gpu: bool = False) -> ShardRun:
    """Map ``fn`` over ``shards`` where ``where`` says; GPU tasks are annotated ``GPU=1`` (or
    with ``where.resources``), and run in the GPU pool of a batch cluster."""
    resources = where.resources if where.resources is not None else ({"GPU": 1} if gpu else None)
    kw = dict(desc=desc, progress=progress, resources=resources or None, key_prefix=desc)
    if shards and where.client is None and (where.scheduler or where.cluster or where.local_workers > 0):
        needs_gpu = bool(resources and "GPU" in resources)
        with dask_client(where.scheduler, where.local_workers, gpu=needs_gpu, cluster=where.cluster,
                         cluster_config=where.cluster_config) as client:
            return run_shards(fn, shards, client=client, **kw)
    return run_shards(fn, shards, client=where.client, **kw)


def worker_device(device: str) -> str:
    """The device a task uses in this process. ``cuda`` without an index spreads the workers of
    a machine over its GPUs: a Dask worker named ``k`` (a local cluster numbers them 0..n-1) uses
    ``cuda:{k mod GPUs}``; outside a worker, or with one GPU, ``cuda`` means the current device.
    An explicit ``cuda:N`` and ``cpu`` are kept as they are."""
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    index = int(name) if isinstance(name, int) or str(name).isdigit() else int(hashlib.sha256(str(name).encode()).hexdigest(), 16)
    return f"cuda:{index % count}"


def set_torch_threads(n: int) -> None:
    """Set torch's intra-op threads, always: ``torch.get_num_threads()`` reports the OpenMP
    setting of the calling thread only, so a check-and-skip can leave another pool (MKL's
    thread-local one) at another count."""
    import torch

    torch.set_num_threads(n)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the caller's count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
