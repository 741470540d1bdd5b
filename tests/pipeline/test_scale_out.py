"""Beyond one machine: a running Dask cluster of real scheduler and worker processes, batch
jobs through dask-jobqueue (rendered job scripts, an adaptive cluster behind a stand-in
``sbatch`` that starts the real worker command), all on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline.jobqueue import JobQueueConfig, job_script, lifetime_args, walltime_seconds

SMALL = ["--clips-per-video", "2", "--clips-per-audio", "2", "--frames-per-clip", "16", "--items-per-shard", "1", "--threads", "1",
         "--no-progress"]


def _cli(*args):
    from pipeline.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _arrays(store) -> dict:
    g = zarr.open_group(str(store), mode="r")
    out = {}

    def visit(group, prefix=""):
        for name, node in group.members():
            if name == "_markers":
                continue
            if isinstance(node, zarr.Group):
                visit(node, f"{prefix}{name}/")
            else:
                out[prefix + name] = node[:]

    visit(g)
    return out


def _assert_same_store(a, b):
    x, y = _arrays(a), _arrays(b)
    assert sorted(x) == sorted(y)
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)


# ---- job scripts -------------------------------------------------------------------------------


def test_walltime_and_worker_lifetime():
    assert walltime_seconds("01:00:00") == 3600 and walltime_seconds("1-00:30:00") == 88200
    assert walltime_seconds("45:00") == 2700 and walltime_seconds("90") == 5400
    # one hour: retire after 54 min, spread over 3 min (at least 5 min before the end)
    assert lifetime_args("01:00:00") == ["--lifetime", "3240s", "--lifetime-stagger", "180s"]
    # ten hours: 10 % margin, stagger capped at 4 min
    assert lifetime_args("10:00:00") == ["--lifetime", "32400s", "--lifetime-stagger", "240s"]
    # a short job keeps at least half of its walltime
    assert lifetime_args("00:06:00") == ["--lifetime", "180s", "--lifetime-stagger", "90s"]
    with pytest.raises(ValueError, match="expected"):
        walltime_seconds("one hour")


def test_cluster_config_from_yaml_names_the_file_and_the_bad_key(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("cores: 8\nmemory: 32GB\nwalltime: '02:00:00'\nqueue: cpu\naccount: proj42\n"
                    "gpus_per_job: 2\ngpu_queue: gpu\nmax_jobs: 20\nprologue: ['module load ffmpeg']\n")
    cfg = JobQueueConfig.from_yaml(good)
    assert (cfg.cores, cfg.gpus_per_job, cfg.max_jobs, cfg.prologue) == (8, 2, 20, ["module load ffmpeg"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("cores: 8\nwalltim: '02:00:00'\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown setting\(s\) walltim; valid: .*walltime"):
        JobQueueConfig.from_yaml(bad)
    bad.write_text("walltime: soon\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: walltime 'soon'"):
        JobQueueConfig.from_yaml(bad)


def test_slurm_and_pbs_job_scripts():
    cfg = JobQueueConfig(cores=8, memory="32GB", walltime="02:00:00", queue="cpu", account="proj42",
                         gpus_per_job=2, gpu_queue="gpu", prologue=["module load ffmpeg", "source /opt/avdd/bin/activate"],
                         interface="lo")
    cpu = job_script("slurm", cfg)
    for line in ["#SBATCH -J avdd-cpu", "#SBATCH -p cpu", "#SBATCH -A proj42", "#SBATCH --cpus-per-task=8",
                 "#SBATCH -t 02:00:00", "module load ffmpeg", "source /opt/avdd/bin/activate"]:
        assert line in cpu, line
    assert "--nworkers 8" in cpu and "--nthreads 1" in cpu  # one single-threaded worker per core
    assert "--lifetime 6480s --lifetime-stagger 240s" in cpu
    assert "GPU" not in cpu and "--gres" not in cpu
    assert cpu.index("module load ffmpeg") < cpu.index("distributed.cli.dask_worker")

    gpu = job_script("slurm", cfg, gpu=True)
    for line in ["#SBATCH -J avdd-gpu", "#SBATCH -p gpu", "#SBATCH --gres=gpu:2"]:
        assert line in gpu, line
    assert "--nworkers 2" in gpu and "--resources GPU=1" in gpu  # one worker per GPU

    pbs = job_script("pbs", cfg, gpu=True)
    for line in ["#PBS -N avdd-gpu", "#PBS -q gpu", "#PBS -A proj42", "#PBS -l walltime=02:00:00",
                 "#PBS -l ngpus=2"]:
        assert line in pbs, line
    assert "--resources GPU=1" in pbs and "--lifetime 6480s" in pbs
    assert "#$ -l h_rt=02:00:00" in job_script("sge", cfg) and "#BSUB -W 02:00" in job_script("lsf", cfg)


# ---- an adaptive batch cluster behind a stand-in sbatch -----------------------------------------

FAKE_SBATCH = """#!/bin/bash
# Stand-in for sbatch: run the job script at once in its own session, print a job id.
set -e
id=$(( $(ls "$FAKE_JOBS"/*.pid 2>/dev/null | wc -l) + 1001 ))
cp "$1" "$FAKE_JOBS/job-$id.sh"
setsid bash "$FAKE_JOBS/job-$id.sh" > "$FAKE_JOBS/job-$id.log" 2>&1 < /dev/null &
echo $! > "$FAKE_JOBS/job-$id.pid"
echo "Submitted batch job $id"
"""
FAKE_SCANCEL = """#!/bin/bash
# Stand-in for scancel: end the job's whole session.
for id in "$@"; do
  kill -TERM -- -"$(cat "$FAKE_JOBS/job-$id.pid")" 2>/dev/null || true
  echo "$id" >> "$FAKE_JOBS/cancelled"
done
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, text in [("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL)]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_JOBS", str(jobs))
    yield jobs
    for pid in jobs.glob("*.pid"):  # nothing outlives the test
        try:
            os.killpg(int(pid.read_text()), 9)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture(scope="module")
def speech_manifest(sample_data, tmp_path_factory):
    from pipeline.manifest import write_manifest
    from pipeline.recipes import prepare

    root = tmp_path_factory.mktemp("speech")
    for name in ["psphinx_numbers.wav", "psphinx_goforward.wav", "codec2_wia_16kHz.wav"]:
        shutil.copy(sample_data / "speech" / name, root / name)
    out = root / "m.jsonl"
    write_manifest(prepare("folder", root, default_label="real"), out, "folder", root)
    return out


def test_adaptive_slurm_cluster_scales_from_zero_and_gives_the_local_store(speech_manifest, fake_slurm, tmp_path):
    """``extract --cluster slurm``: no job before work exists; jobs are submitted as shards are
    queued, run the real ``dask worker`` command of the job script, and the store equals the
    one a local run writes. Closing the stage cancels the jobs."""
    config = tmp_path / "cluster.yaml"
    config.write_text("cores: 1\nmemory: 2GB\nwalltime: '00:30:00'\nmax_jobs: 2\ninterface: lo\n")
    local = tmp_path / "local.zarr"
    r = _cli("extract", speech_manifest, "--store", local, "--workers", "0", *SMALL)
    assert r.exit_code == 0, r.output

    assert not list(fake_slurm.glob("job-*.sh"))
    batch = tmp_path / "batch.zarr"
    r = _cli("extract", speech_manifest, "--store", batch, "--cluster", "slurm", "--cluster-config", config,
             *SMALL, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["computed"] == 3 and summary["errors"] == {}
    scripts = sorted(fake_slurm.glob("job-*.sh"))
    assert 1 <= len(scripts) <= 2  # adapted to the work, within max_jobs
    text = scripts[0].read_text()
    assert "#SBATCH -t 00:30:00" in text and "--lifetime" in text and "--interface lo" in text
    assert set(summary["workers"].values()) <= {f"SLURMCluster-{i}" for i in range(4)}
    assert (fake_slurm / "cancelled").read_text().split()  # jobs cancelled when the stage ended
    _assert_same_store(local, batch)


# ---- a running cluster: real scheduler and worker processes --------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running_cluster(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes on loopback; worker ``gpu`` says it
    has a GPU (``--resources GPU=1``), worker ``cpu`` has none."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    dask = [sys.executable, "-m"]
    procs = [subprocess.Popen(dask + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--dashboard-address", "127.0.0.1:0"],
                              stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT, env=env)]
    for name, extra in [("cpu", []), ("gpu", ["--resources", "GPU=1"])]:
        procs.append(subprocess.Popen(
            dask + ["distributed.cli.dask_worker", address, "--name", name, "--nthreads", "1", "--nworkers", "1",
                    "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0", "--local-directory",
                    str(tmp_path / f"w-{name}"), *extra],
            stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT, env=env))
    from distributed import Client

    try:
        client = Client(address, timeout=60)
        client.wait_for_workers(2, timeout=120)
        yield address, client
        client.close()
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _hold_gpu_worker(gate: str, started: str) -> str:
    from distributed import Event, get_worker

    Event(started).set()
    Event(gate).wait(timeout=600)
    return str(get_worker().name)


@pytest.mark.slow  # about 80 s: three interpreters start, MTCNN loads twice
def test_stages_on_a_running_cluster_match_the_local_run(sample_data, running_cluster, tmp_path):
    """extract and convert with ``--scheduler`` on a real scheduler and two worker processes give
    exactly the store of the local run. The GPU worker is kept busy while extract runs: every
    extract (CPU) task still finishes, on the CPU worker, so none waited for the GPU worker.
    The convert tasks annotated ``GPU=1`` all run on the GPU worker."""
    from distributed import Event

    from pipeline.manifest import write_manifest
    from pipeline.recipes import prepare

    address, client = running_cluster
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(sample_data / "talking" / "liveportrait_d10.mp4", corpus / "a.mp4")
    for name in ["psphinx_numbers.wav", "codec2_wia_16kHz.wav"]:
        shutil.copy(sample_data / "speech" / name, corpus / name)
    manifest = tmp_path / "m.jsonl"
    write_manifest(prepare("folder", corpus, default_label="real"), manifest, "folder", corpus)

    local = tmp_path / "local.zarr"
    assert _cli("extract", manifest, "--store", local, "--workers", "0", *SMALL).exit_code == 0
    r = _cli("convert", "--store", local, "--vocoder", "griffinlim", "--workers", "0", "--threads", "1",
             "--no-progress")
    assert r.exit_code == 0, r.output

    gate, started = Event("gpu-gate", client=client), Event("gpu-held", client=client)
    holder = client.submit(_hold_gpu_worker, "gpu-gate", "gpu-held", resources={"GPU": 1}, pure=False)
    assert started.wait(timeout=300)  # the GPU worker is busy from here on
    store = tmp_path / "cluster.zarr"
    r = _cli("extract", manifest, "--store", store, "--scheduler", address, *SMALL, "--json")
    assert r.exit_code == 0, r.output
    extracted = json.loads(r.output)
    assert holder.status == "pending"  # the GPU worker was busy all along
    assert extracted["computed"] == 3 and set(extracted["workers"].values()) == {"cpu"}
    gate.set()
    assert holder.result(timeout=60) == "gpu"

    r = _cli("convert", "--store", store, "--vocoder", "griffinlim", "--scheduler", address, "--threads", "1",
             "--task-resources", "GPU=1", "--no-progress", "--json")
    assert r.exit_code == 0, r.output
    converted = json.loads(r.output)
    assert converted["computed"] == 3 and set(converted["workers"].values()) == {"gpu"}
    _assert_same_store(local, store)


# ---- a store on object storage: a local S3 server ------------------------------------------------


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3 server on loopback, and fsspec configured for it through the environment (as a
    user configures every worker); yields a fresh bucket's URL."""
    pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    import fsspec.config
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "avdd-test", "AWS_SECRET_ACCESS_KEY": "avdd-test",
                       "AWS_DEFAULT_REGION": "us-east-1", "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(fsspec.config, "conf", {})
    fsspec.config.set_conf_env(fsspec.config.conf)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("avdd-test")
    try:
        yield "s3://avdd-test"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.mark.slow  # 1-2 minutes: every chunk and marker goes through moto's HTTP server
def test_extract_and_convert_into_s3_equal_the_local_store(speech_manifest, s3_server, tmp_path):
    """The store on a local S3 server, written by worker processes that share no filesystem
    with it: the same arrays as on local disk, markers there, and a re-run skips every shard."""
    local = tmp_path / "local.zarr"
    url = f"{s3_server}/speech.zarr"
    for store, workers in [(local, "0"), (url, "2")]:
        r = _cli("extract", speech_manifest, "--store", store, "--workers", workers, *SMALL)
        assert r.exit_code == 0, r.output
        r = _cli("convert", "--store", store, "--vocoder", "griffinlim", "--workers", workers, "--threads", "1",
                 "--no-progress")
        assert r.exit_code == 0, r.output
    _assert_same_store(local, url)

    from pipeline import store as st

    assert len(st.all_markers(url, "extract", "samples")) == 3 and len(st.all_markers(url, "convert", "griffinlim")) == 3
    r = _cli("extract", speech_manifest, "--store", url, "--workers", "0", *SMALL, "--json")
    assert json.loads(r.output)["computed"] == 0 and json.loads(r.output)["skipped"] == 3
    r = _cli("convert", "--store", url, "--vocoder", "griffinlim", "--workers", "0", "--no-progress", "--json")
    assert json.loads(r.output)["computed"] == 0 and json.loads(r.output)["skipped"] == 3
    r = _cli("inspect", "--store", url, "--json")
    info = json.loads(r.output)
    assert r.exit_code == 0 and info["shards"] == {"done": 3, "total": 3} and info["with_audio"] == 5


def test_placement_options_are_checked(speech_manifest, tmp_path):
    store = tmp_path / "x.zarr"
    r = _cli("extract", speech_manifest, "--store", store, "--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:1")
    assert r.exit_code == 2 and "--cluster and --scheduler exclude each other" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("cores: [1, 2\n")
    r = _cli("extract", speech_manifest, "--store", store, "--cluster", "slurm", "--cluster-config", bad)
    assert r.exit_code == 2 and "bad.yaml is not valid YAML" in r.output
    r = _cli("extract", speech_manifest, "--store", store, "--task-resources", "GPU")
    assert r.exit_code == 2 and "expected NAME=N" in r.output
    assert not store.exists()  # nothing was started
