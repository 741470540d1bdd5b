"""Where stages run: in-process, on a local cluster, with GPU-annotated tasks."""

import os
import time

from pipeline.cluster import Placement, run_stage


def _pid(shard):
    return {"samples": 1, "failed": 0, "pid": os.getpid(), "shard": shard}


def _boom(shard):
    if shard == 1:
        raise RuntimeError("disk full")
    return {"samples": 1}


def test_in_process_and_errors_are_per_shard():
    run = run_stage(_boom, [0, 1, 2], Placement(workers=0), "t", progress=False)
    assert sorted(run.done) == [0, 2] and list(run.errors) == [1] and "disk full" in run.errors[1]


def test_gpu_tasks_run_on_workers_that_advertise_a_gpu():
    """A local cluster started for GPU work gives every worker the resource GPU=1 and every task
    needs it: each task runs in a worker process, never in the driver."""
    from distributed import Client, LocalCluster

    run = run_stage(_pid, [0, 1, 2, 3], Placement(workers=2), "t", progress=False, gpu=True)
    assert sorted(run.done) == [0, 1, 2, 3] and not run.errors
    assert os.getpid() not in {r["pid"] for r in run.done.values()}
    # tasks annotated GPU=1 do not run on a cluster without that resource
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None, silence_logs=50) as c, \
            Client(c) as client:
        fut = client.submit(_pid, 0, resources={"GPU": 1})
        plain = client.submit(_pid, 1)
        assert plain.result(timeout=30)["shard"] == 1  # the cluster works...
        time.sleep(1)
        assert fut.status == "pending"  # ...but has no worker for a GPU task
        fut.cancel()


def test_worker_device_spreads_local_workers_over_the_gpus(monkeypatch):
    import distributed
    import torch

    from pipeline.cluster import worker_device

    assert worker_device("cpu") == "cpu" and worker_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_device("cuda") == "cuda"  # not in a Dask worker: the current device

    class Worker:
        name = 3

    monkeypatch.setattr(distributed, "get_worker", lambda: Worker)
    assert worker_device("cuda") == "cuda:1" and worker_device("cuda:0") == "cuda:0"
    Worker.name = 4
    assert worker_device("cuda") == "cuda:0"
    Worker.name = "gpu-node-7"  # a named worker of an external cluster: stable, within range
    assert worker_device("cuda") in ("cuda:0", "cuda:1") and worker_device("cuda") == worker_device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_device("cuda") == "cuda"
