"""A Dask worker process killed in the middle of a shard loses nothing."""

import shutil

import numpy as np
import pytest
import zarr

from pipeline import store as st
from pipeline.extract import ExtractConfig, extract
from pipeline.faces import FaceConfig
from pipeline.recipes import prepare
from pipeline.manifest import write_manifest

CFG = ExtractConfig(frames_per_clip=8, clips_per_video=2, clips_per_audio=2, items_per_shard=1, face=FaceConfig(detect_every=4))
ARRAYS = [spec.name for spec in st.extract_specs(1, 1, 1, 1)]  # every array extract writes


@pytest.fixture(scope="module")
def manifest(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for src, dst in [("talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "a.mp4"),
                     ("ffpp/original_sequences/youtube/c23/videos/004.mp4", "c.mp4"),
                     ("speech/psphinx_numbers.wav", "e.wav")]:
        shutil.copy(sample_data / src, root / dst)
    out = root / "m.jsonl"
    write_manifest(prepare("folder", root, default_label="real"), out, "folder", root)
    return out


def _detector_loads():
    from pipeline import faces

    return faces.LOADS["count"]


def test_killed_worker_loses_nothing_and_rerun_redoes_nothing(manifest, tmp_path, monkeypatch):
    """The worker running shard 0 ends (os._exit, as SIGKILL would) right after writing the
    shard's first array; the task is retried on a restarted worker. The store equals one made
    in this process with two torch threads: same bytes whatever the placement and the kill."""
    from distributed import Client, LocalCluster

    reference = tmp_path / "reference.zarr"
    extract(manifest, reference, config=CFG, workers=0, threads=2, progress=False)

    store = tmp_path / "disturbed.zarr"
    fired = tmp_path / "fault-fired"
    monkeypatch.setenv("AVDD_FAULT", "extract.after_first_write@0:exit")
    monkeypatch.setenv("AVDD_FAULT_ONCE", str(fired))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster) as client:
        summary = extract(manifest, store, config=CFG, client=client, threads=1, progress=False)
        loads = client.run(_detector_loads)
    monkeypatch.delenv("AVDD_FAULT")
    assert fired.exists(), "the fault did not fire: no worker was killed mid-shard"
    assert summary.errors == {} and summary.computed == summary.shards == 3
    # MTCNN is loaded once per worker process, not per task (2 video shards ran on 2 workers;
    # the restarted worker may not have had a video left to do)
    assert set(loads.values()) <= {0, 1} and 1 in loads.values()

    ref, got = zarr.open_group(str(reference), mode="r"), zarr.open_group(str(store), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(got[name][:], ref[name][:], err_msg=name)
    assert got["meta/has_video"][:].sum() == 4 and got["meta/has_audio"][:].sum() == 4
    for name in ARRAYS:  # the same bytes on disk, not only the same values
        for s in range(3):
            assert st.shard_checksums(store, [name], s) == st.shard_checksums(reference, [name], s), (name, s)

    markers = sorted(st.marker_path(store, "extract", "samples", s) / "zarr.json" for s in range(3))
    stamps = [m.stat().st_mtime_ns for m in markers]
    again = extract(manifest, store, config=CFG, workers=2, threads=1, progress=False)
    assert again.computed == 0 and again.skipped == 3
    assert [m.stat().st_mtime_ns for m in markers] == stamps
