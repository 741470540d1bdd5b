"""Faults at chosen points of a stage (pipeline/faults.py): the driver killed mid-stage, the
process killed between a shard's data and its done-marker, a full disk, stale temporary files,
a shard changed on disk; the same kills for convert and build-shards. Each time the re-run
redoes only the unfinished shards and the store equals, sample for sample and byte for byte,
an undisturbed run; `avdd-data verify` agrees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline import store as st
from pipeline.cli import main
from pipeline.faults import EXIT_CODE
from pipeline.verify import verify

SHARDS = 4  # one item per shard: a talking-head video and three speech files
ARGS = ["--workers", "0", "--threads", "1", "--frames-per-clip", "8", "--clips-per-video", "2", "--clips-per-audio", "2",
        "--items-per-shard", "1", "--detect-every", "8", "--no-progress"]
ARRAYS = [spec.name for spec in st.extract_specs(1, 1, 1, 1)]  # every array extract writes


@pytest.fixture(scope="module")
def corpus(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fault_corpus")
    for src, dst in [("talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "a.mp4"),
                     ("speech/psphinx_numbers.wav", "b.wav"), ("speech/psphinx_goforward.wav", "c.wav"),
                     ("speech/codec2_wia_16kHz.wav", "d.wav")]:
        shutil.copy(sample_data / src, root / dst)
    manifest = root / "m.jsonl"
    res = CliRunner().invoke(main, ["manifest", "folder", str(root), "-o", str(manifest), "--default-label", "real"])
    assert res.exit_code == 0, res.output
    return manifest


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """The undisturbed store."""
    store = tmp_path_factory.mktemp("fault_ref") / "ref.zarr"
    res = CliRunner().invoke(main, ["extract", str(corpus), "--store", str(store), *ARGS])
    assert res.exit_code == 0, res.output
    return store


def _extract_subprocess(corpus, store, fault: str | None, once=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("AVDD_FAULT", None)
    if fault:
        env["AVDD_FAULT"] = fault
    if once:
        env["AVDD_FAULT_ONCE"] = str(once)
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "extract", str(corpus),
                           "--store", str(store), *ARGS], env=env, capture_output=True, text=True)


def _rerun(corpus, store):
    res = CliRunner().invoke(main, ["extract", str(corpus), "--store", str(store), *ARGS, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def assert_same_store(got, ref):
    g, r = zarr.open_group(str(got), mode="r"), zarr.open_group(str(ref), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(g[name][:], r[name][:], err_msg=name)
        for s in range(SHARDS):
            assert st.shard_checksums(got, [name], s) == st.shard_checksums(ref, [name], s), (name, s)


def _stamps(store):
    return {s: st.marker_path(store, "extract", "samples", s).joinpath("zarr.json").stat().st_mtime_ns
            for s in range(SHARDS) if st.read_marker(store, "extract", "samples", s)}


@pytest.mark.parametrize("point", ["before_marker", pytest.param("after_first_write", marks=pytest.mark.slow)])
def test_driver_killed_mid_stage_rerun_redoes_only_the_unfinished_shards(corpus, reference, tmp_path, point):
    """The driver (extracting in-process) dies at shard 2: between its data and its marker, or
    right after its first array. Shards 0-1 stay done; the re-run does 2-3 only."""
    store = tmp_path / "s.zarr"
    proc = _extract_subprocess(corpus, store, f"extract.{point}@2:exit")
    assert proc.returncode == EXIT_CODE, proc.stderr
    before = _stamps(store)
    assert sorted(before) == [0, 1]
    summary = _rerun(corpus, store)
    assert summary["computed"] == 2 and summary["skipped"] == 2 and summary["errors"] == {}
    assert {s: t for s, t in _stamps(store).items() if s in before} == before
    assert_same_store(store, reference)
    report = verify(store)
    assert report.count("ok") == SHARDS and not report.bad


def test_disk_full_is_a_shard_error_and_the_rerun_completes(corpus, reference, tmp_path, monkeypatch):
    """A write failing with ENOSPC (injected: no size-limited filesystem is needed) costs its
    shard only; the others are written and the re-run finishes the store."""
    store = tmp_path / "s.zarr"
    monkeypatch.setenv("AVDD_FAULT", "extract.after_first_write@1:enospc")
    res = CliRunner().invoke(main, ["extract", str(corpus), "--store", str(store), *ARGS])
    assert res.exit_code == 1 and "No space left on device" in res.output
    assert sorted(_stamps(store)) == [0, 2, 3]
    monkeypatch.delenv("AVDD_FAULT")
    summary = _rerun(corpus, store)
    assert summary["computed"] == 1 and summary["skipped"] == 3
    assert_same_store(store, reference)


def test_stale_temporary_files_are_ignored_reported_and_repaired(corpus, reference, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    shard_file = Path(st.shard_file(store, "video/face", 0))
    stale = [shard_file.with_name(shard_file.name + ".5f2c.partial"),
             st.marker_path(store, "extract", "samples", 1) / ".zarr.json.tmp-4242"]
    stale[0].write_bytes(b"half a shard")
    stale[1].write_text('{"zarr_format": 3, "node_type": "gr')
    summary = _rerun(corpus, store)
    assert summary["computed"] == 0 and summary["skipped"] == SHARDS
    assert_same_store(store, reference)
    res = CliRunner().invoke(main, ["verify", "--store", str(store)])
    assert res.exit_code == 0 and res.output.count("stale temporary file") == 2
    verify(store, repair=True)
    assert not any(p.exists() for p in stale) and verify(store).stale_files == []


def test_verify_finds_a_changed_shard_and_repair_makes_the_rerun_redo_it(corpus, reference, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    assert verify(store).count("ok") == SHARDS
    g = zarr.open_group(str(store), mode="r+")
    g["audio/real"][2:4] = g["audio/real"][2:4] * 0.5  # shard 1 silently changed on disk
    res = CliRunner().invoke(main, ["verify", "--store", str(store)])
    assert res.exit_code == 1 and "mismatch: extract/samples shard 1: changed: audio/real" in res.output
    # a broken marker, and a marker of an older avdd without checksums
    m3 = st.marker_path(store, "extract", "samples", 3) / "zarr.json"
    doc = json.loads(m3.read_text())
    doc["attributes"]["avdd_marker"]["counts"]["ok"] = 99
    m3.write_text(json.dumps(doc))
    m0 = st.marker_path(store, "extract", "samples", 0) / "zarr.json"
    doc = json.loads(m0.read_text())
    for k in ("checksums", "marker_sha"):
        doc["attributes"]["avdd_marker"].pop(k)
    m0.write_text(json.dumps(doc))
    report = verify(store)
    assert {s.shard: s.status for s in report.shards} == {0: "unverifiable", 1: "mismatch", 2: "ok", 3: "broken"}
    res = CliRunner().invoke(main, ["verify", "--store", str(store), "--repair"])
    assert res.exit_code == 0 and "repaired: 2" in res.output
    summary = _rerun(corpus, store)
    assert summary["computed"] == 2 and summary["skipped"] == 2
    assert_same_store(store, reference)
    assert {s.shard: s.status for s in verify(store).shards} == {0: "unverifiable", 1: "ok", 2: "ok", 3: "ok"}


# ---- convert and build-shards: the same faults, the same guarantees ----------------------------

CONVERT = ["--vocoder", "griffinlim", "--option", "n_iter=8", "--workers", "0", "--threads", "1", "--no-progress"]
CONVERTED = ["audio/fake/griffinlim", "quality/griffinlim/mcd", "quality/griffinlim/lsd", "quality/griffinlim/env_corr"]
BUILD = """
import sys
from pipeline.pairs import PairConfig
from pipeline.shards import ShardsConfig, build_shards
summary = build_shards(sys.argv[1], sys.argv[2], ShardsConfig(pairs=PairConfig(pairs=("own", "vocoded")),
                       clips_per_shard=1, audio_per_shard=2), workers=0, progress=False)
print(summary["computed"], summary["skipped"], len(summary["errors"]))
"""


def _env(fault: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("AVDD_FAULT", None)
    if fault:
        env["AVDD_FAULT"] = fault
    return env


def _convert(store, fault: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "convert", "--store", str(store), *CONVERT, "--json"],
                          env=_env(fault), capture_output=True, text=True)


def _build(store, out, fault: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BUILD, str(store), str(out)], env=_env(fault), capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory):
    """The reference store with an undisturbed Griffin-Lim conversion."""
    store = tmp_path_factory.mktemp("fault_conv") / "ref.zarr"
    shutil.copytree(reference, store)
    proc = _convert(store)
    assert proc.returncode == 0, proc.stderr
    return store


@pytest.fixture(scope="module")
def built(converted, tmp_path_factory):
    """Shards of the converted reference, built undisturbed (one clip, two audio tracks per block)."""
    out = tmp_path_factory.mktemp("fault_build") / "shards.zarr"
    proc = _build(converted, out)
    assert proc.returncode == 0, proc.stderr
    return out


def _convert_stamps(store):
    return {s: st.marker_path(store, "convert", "griffinlim", s).joinpath("zarr.json").stat().st_mtime_ns
            for s in range(SHARDS) if st.read_marker(store, "convert", "griffinlim", s)}


@pytest.mark.parametrize("point", ["after_first_write", "before_marker"])
def test_convert_killed_mid_stage_rerun_redoes_only_the_unfinished_shards(reference, converted, tmp_path, point):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    proc = _convert(store, f"convert.{point}@2:exit")
    assert proc.returncode == EXIT_CODE, proc.stderr
    before = _convert_stamps(store)
    assert sorted(before) == [0, 1]
    proc = _convert(store)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    summary = summary[0] if isinstance(summary, list) else summary
    assert summary["computed"] == 2 and summary["skipped"] == 2 and summary["errors"] == {}
    assert {s: t for s, t in _convert_stamps(store).items() if s in before} == before
    g, r = zarr.open_group(str(store), mode="r"), zarr.open_group(str(converted), mode="r")
    for name in CONVERTED:
        np.testing.assert_array_equal(g[name][:], r[name][:], err_msg=name)
        for s in range(SHARDS):
            assert st.shard_checksums(store, [name], s) == st.shard_checksums(converted, [name], s), (name, s)
    report = verify(store)
    assert not report.bad and report.count("ok") == 2 * SHARDS  # extract and convert markers


def test_build_shards_killed_mid_stage_rerun_redoes_only_the_unfinished_blocks(converted, built, tmp_path):
    """Killed after the first array of clips block 1 (block 0 is done); then a full disk at the
    first audio block's marker: the re-runs finish the shards, equal to an undisturbed build."""
    out = tmp_path / "shards.zarr"
    proc = _build(converted, out, "build.after_first_write@1:exit")
    assert proc.returncode == EXIT_CODE, proc.stderr
    assert st.read_marker(out, "build", "clips", 0) and not st.read_marker(out, "build", "clips", 1)
    proc = _build(converted, out, "build.before_marker@0:enospc")  # audio block 0 (clips block 0 is done)
    assert proc.returncode == 0, proc.stderr
    computed, skipped, errors = map(int, proc.stdout.split())
    assert skipped == 1 and errors == 1
    proc = _build(converted, out)
    assert proc.returncode == 0, proc.stderr
    assert list(map(int, proc.stdout.split())) == [1, computed + skipped, 0]
    g, r = zarr.open_group(str(out), mode="r"), zarr.open_group(str(built), mode="r")
    names = sorted(k for k, _ in r.arrays()) + [f"{grp}/{k}" for grp, sub in r.groups() if grp != "_markers"
                                                 for k, _ in sub.arrays()]
    assert {"clips/face", "audio/wave", "samples/audio_fake", "samples/pair"} <= set(names)
    for name in names:
        np.testing.assert_array_equal(g[name][:], r[name][:], err_msg=name)
    report = verify(out)
    assert not report.bad and report.count("ok") == computed + skipped + 1


def _mount_tmpfs(path: Path, kib: int, remount: bool = False) -> bool:
    opts = f"{'remount,' if remount else ''}size={kib}k"
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def test_a_real_full_disk_costs_only_the_shards_that_did_not_fit(corpus, reference, tmp_path):
    """The store on a size-limited filesystem (a tmpfs of 60 % of the finished store's size;
    skipped where this process may not mount one): the shards that fit are done, the others are
    shard errors naming the full disk; with the filesystem grown, the re-run writes only those,
    and the store equals the undisturbed one."""
    size = sum(f.stat().st_size for f in Path(reference).rglob("*") if f.is_file())
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, max(64, int(0.6 * size) // 1024)):
        pytest.skip("no size-limited filesystem can be mounted here (needs root and tmpfs)")
    try:
        store = mnt / "s.zarr"
        res = CliRunner().invoke(main, ["extract", str(corpus), "--store", str(store), *ARGS, "--json"])
        assert res.exit_code == 1 and "No space left on device" in res.output, res.output
        done = sorted(_stamps(store))
        assert 0 < len(done) < SHARDS
        assert _mount_tmpfs(mnt, 4 * size // 1024 + 1024, remount=True)
        summary = _rerun(corpus, store)
        assert summary["skipped"] == len(done) and summary["computed"] == SHARDS - len(done)
        assert_same_store(store, reference)
        verify(store, repair=True)  # removes what the failed writes left behind, if anything
        report = verify(store)
        assert report.count("ok") == SHARDS and not report.bad and report.stale_files == []
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
