"""The container set-up: docker-compose.yml read by a real compose parser, and a Dockerfile
that installs the project by the README's own steps."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import PROJECT


def _readme_install() -> str:
    """The install part of the README's main-job command."""
    readme = (PROJECT / "README.md").read_text()
    m = re.search(r"^(python3 -m venv \.venv && \. \.venv/bin/activate && pip install -e \.) && avdd-data run",
                  readme, re.M)
    assert m, "README's main-job command not found"
    return m.group(1)


def test_dockerfile_installs_by_the_readme_steps():
    docker = (PROJECT / "Dockerfile").read_text()
    runs = [line.removeprefix("RUN ").strip() for line in docker.splitlines() if line.startswith("RUN ")]
    assert _readme_install() in runs
    assert "ffmpeg" in docker and "FROM python:3.11" in docker
    for path in ("pyproject.toml", "pipeline", "detector", "manifests"):  # what `pip install -e .` needs
        assert re.search(rf"^COPY {path}\b", docker, re.M), path


@pytest.fixture(scope="module")
def compose_config():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose (Debian's compose parser) is not installed")
    out = subprocess.run([exe, "-f", str(PROJECT / "docker-compose.yml"), "--profile", "gpu", "config"],
                         capture_output=True, text=True, cwd=PROJECT, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_services_scheduler_workers_gpu_and_runner(compose_config):
    services = compose_config["services"]
    assert set(services) == {"scheduler", "cpu-worker", "gpu-worker", "runner"}
    assert {s["image"] for s in services.values()} == {"avdd:latest"}  # one project image
    published = {str(p.get("published")) if isinstance(p, dict) else str(p).split(":")[0]
                 for p in services["scheduler"]["ports"]}
    assert {"8786", "8787"} <= published  # the scheduler and its dashboard
    for name in ("cpu-worker", "gpu-worker"):
        cmd = services[name]["command"]
        assert cmd[:3] == ["dask", "worker", "tcp://scheduler:8786"], name
    gpu = services["gpu-worker"]
    assert "--resources" in gpu["command"] and gpu["command"][gpu["command"].index("--resources") + 1] == "GPU=1"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--resources" not in services["cpu-worker"]["command"]


def test_compose_mounts_the_data_at_one_path_everywhere(compose_config):
    targets = set()
    for name, service in compose_config["services"].items():
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service["volumes"]]
        targets |= {m.split(":")[1] for m in mounts}
        assert any(m.split(":")[1] == "/data" for m in mounts), name
    assert targets == {"/data"}
