"""A Dask worker process killed in the middle of extraction loses nothing."""

import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import zarr

from pipeline import store as st
from pipeline.extract import ExtractConfig, extract
from pipeline.faces import FaceConfig
from pipeline.recipes import prepare
from pipeline.manifest import write_manifest

CFG = ExtractConfig(frames_per_clip=16, clips_per_video=2, items_per_shard=1, face=FaceConfig(detect_every=2))
ARRAYS = ["video/face", "video/mouth", "video/box", "video/landmarks", "video/confidence", "audio/real",
          "meta/status", "meta/has_video", "meta/has_audio", "meta/start_frame", "meta/n_faces"]


@pytest.fixture(scope="module")
def manifest(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for src, dst in [("talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "a.mp4"),
                     ("talking/liveportrait_d10.mp4", "b.mp4"),
                     ("ffpp/original_sequences/youtube/c23/videos/004.mp4", "c.mp4"),
                     ("ffpp/manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4", "d.mp4"),
                     ("speech/psphinx_numbers.wav", "e.wav")]:
        shutil.copy(sample_data / src, root / dst)
    out = root / "m.jsonl"
    write_manifest(prepare("folder", root, default_label="real"), out, "folder", root)
    return out


def _detector_loads():
    from pipeline import faces

    return faces.LOADS["count"]


class Killer(threading.Thread):
    """Kills the worker process running an extract task, once, while the task is mid-way."""

    def __init__(self, client, store):
        super().__init__(daemon=True)
        self.client, self.store, self.killed = client, store, None

    def run(self):
        deadline = time.time() + 120
        while time.time() < deadline and self.killed is None:
            busy = {w: keys for w, keys in self.client.processing().items() if keys}
            if busy:
                worker, keys = next(iter(busy.items()))
                shard = int(str(keys[0]).split("-")[1])
                time.sleep(1.0)  # let the task get well into its shard
                if st.read_marker(self.store, "extract", "samples", shard) is None:
                    pid = self.client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    self.killed = (shard, pid)
                    return
            time.sleep(0.05)


def test_killed_worker_loses_nothing_and_rerun_redoes_nothing(manifest, tmp_path):
    from distributed import Client, LocalCluster

    reference = tmp_path / "reference.zarr"
    extract(manifest, reference, config=CFG, workers=0, threads=1, progress=False)

    store = tmp_path / "disturbed.zarr"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster) as client:
        killer = Killer(client, store)
        killer.start()
        summary = extract(manifest, store, config=CFG, client=client, threads=1, progress=False)
        killer.join(timeout=5)
        loads = client.run(_detector_loads)
    assert killer.killed is not None, "no worker was killed mid-task"
    assert summary.errors == {} and summary.computed == summary.shards == 5
    # MTCNN is loaded once per worker process, not per task (4 video shards ran on 2 workers;
    # the restarted worker may not have had a video left to do)
    assert set(loads.values()) <= {0, 1} and 1 in loads.values()

    ref, got = zarr.open_group(str(reference), mode="r"), zarr.open_group(str(store), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(got[name][:], ref[name][:], err_msg=name)
    assert got["meta/has_video"][:].sum() == 8 and got["meta/has_audio"][:].sum() == 6

    markers = sorted(st.marker_path(store, "extract", "samples", s) / "zarr.json" for s in range(5))
    stamps = [m.stat().st_mtime_ns for m in markers]
    again = extract(manifest, store, config=CFG, workers=2, threads=1, progress=False)
    assert again.computed == 0 and again.skipped == 5
    assert [m.stat().st_mtime_ns for m in markers] == stamps
