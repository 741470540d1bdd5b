"""The convert stage on a store extracted from real media."""

import shutil

import numpy as np
import pytest
import zarr

from pipeline import convert as cv
from pipeline import store as st
from pipeline.extract import ExtractConfig, extract
from pipeline.inspect import inspect_store
from pipeline.manifest import write_manifest
from pipeline.quality import envelope_correlation
from pipeline.recipes import prepare

CFG = ExtractConfig(clips_per_video=2, clips_per_audio=2, items_per_shard=2)


@pytest.fixture(scope="module")
def extracted(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    shutil.copy(sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", root / "talk.mp4")
    shutil.copy(sample_data / "ffpp/original_sequences/youtube/c23/videos/004.mp4", root / "noaudio.mp4")
    for name in ("psphinx_numbers.wav", "codec2_speech_orig_16k.wav"):
        shutil.copy(sample_data / "speech" / name, root / name)
    manifest = root / "m.jsonl"
    write_manifest(prepare("folder", root, default_label="real"), manifest, "folder", root)
    store = tmp_path_factory.mktemp("store") / "s.zarr"
    extract(manifest, store, config=CFG, workers=0, progress=False)
    return store


@pytest.fixture
def store(extracted, tmp_path):
    copy = tmp_path / "s.zarr"
    shutil.copytree(extracted, copy)
    return copy


def test_griffinlim_and_world_convert_the_extracted_audio(store):
    for name in ("griffinlim", "world"):
        summary = cv.convert(store, cv.ConvertConfig(name), workers=0, progress=False)
        assert summary.errors == {} and summary.computed == 2
        assert summary.counts["failed"] == 0 and summary.counts["without_audio"] == 2  # noaudio.mp4's clips
    g = zarr.open_group(str(store), mode="r")
    has_audio = g["meta/has_audio"][:]
    real = g["audio/real"][:]
    for name in ("griffinlim", "world"):
        fake = g[f"audio/fake/{name}"][:]
        assert fake.shape == real.shape
        for i in np.flatnonzero(has_audio):
            assert envelope_correlation(real[i], fake[i]) >= 0.9
            assert not np.array_equal(real[i], fake[i])
        env = g[f"quality/{name}/env_corr"][:]
        assert np.isfinite(env[has_audio]).all() and np.isnan(env[~has_audio]).all()
        assert not fake[~has_audio].any()
    vocs = inspect_store(store)["vocoders"]
    assert set(vocs) == {"griffinlim", "world"} and vocs["world"]["converted"] == int(has_audio.sum())
    assert vocs["world"]["quality"]["mcd"]["mean"] > vocs["griffinlim"]["quality"]["mcd"]["mean"] > 0


def test_rerun_skips_and_another_config_is_refused(store):
    cfg = cv.ConvertConfig("griffinlim", options={"n_iter": 4})
    cv.convert(store, cfg, workers=0, progress=False)
    again = cv.convert(store, cfg, workers=0, progress=False)
    assert again.computed == 0 and again.skipped == 2
    with pytest.raises(st.StoreMismatch, match="--overwrite"):
        cv.convert(store, cv.ConvertConfig("griffinlim", options={"n_iter": 8}), workers=0, progress=False)
    redone = cv.convert(store, cv.ConvertConfig("griffinlim", options={"n_iter": 8}), workers=0, progress=False,
                        overwrite=True)
    assert redone.computed == 2
    assert st.store_attrs(store)["stages"]["convert:griffinlim"]["info"]["config"]["griffinlim"]["n_iter"] == 8


class FlakyVocoder:
    """Fails on any batch holding the one clip it cannot take (recognised by its samples)."""

    name = "flaky"

    def __init__(self, bad_clip):
        self.bad = bad_clip

    def copy_synthesize(self, audio, sr):
        if any(np.array_equal(a, self.bad) for a in audio):
            raise RuntimeError("cannot vocode this clip")
        return audio * 0.5

    def info(self):
        return {"vocoder": "griffinlim", "checkpoint": None, "checkpoint_hash": None, "config": {"flaky": True}}


def test_one_failing_clip_is_recorded_and_the_rest_converted(store, monkeypatch):
    g = zarr.open_group(str(store), mode="r")
    with_audio = np.flatnonzero(g["meta/has_audio"][:])
    bad = {int(with_audio[1])}
    monkeypatch.setattr(cv, "get_vocoder", lambda cfg: FlakyVocoder(g["audio/real"][with_audio[1]]))
    summary = cv.convert(store, cv.ConvertConfig("griffinlim", batch_size=8), workers=0, progress=False)
    failures = [f for m in st.all_markers(store, "convert", "griffinlim") for f in m["failures"]]
    assert {f["sample"] for f in failures} == bad and all(f["reason"] == "vocoder_error" for f in failures)
    assert summary.counts["failed"] == len(bad) and summary.counts["samples"] > 0


def test_neural_vocoder_without_checkpoint_and_all(store):
    from pipeline.vocoders.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="--checkpoint"):
        cv.convert(store, cv.ConvertConfig("melgan"), workers=0, progress=False)
    assert cv.usable_vocoders({}) == ["griffinlim", "world"]
    assert cv.usable_vocoders({"wavenet": "x.pth"}) == ["griffinlim", "world", "wavenet"]
    with pytest.raises(ValueError, match="valid vocoders"):
        cv.usable_vocoders({"hifigan": "x.pt"})


def test_convert_before_extract_is_an_error(tmp_path):
    root = st.open_root(tmp_path / "empty.zarr", mode="w")
    root.attrs["avdd"] = {"format": st.FORMAT, "version": st.FORMAT_VERSION, "stages": {}}
    with pytest.raises(ValueError, match="extract"):
        cv.convert(tmp_path / "empty.zarr", cv.ConvertConfig("griffinlim"), workers=0, progress=False)


def test_half_precision_is_opt_in_cuda_only_and_recorded(store, tmp_path):
    """Neural vocoders convert in float32 unless asked (float16 rounding would add a noise floor
    a detector could learn); the precision is part of the recorded config; --half needs CUDA."""
    import torch

    from pipeline.vocoders import load_vocoder
    from pipeline.vocoders.melgan import MelGAN, MelGANConfig

    ckpt = tmp_path / "melgan_tiny.pt"
    MelGAN(MelGANConfig.tiny()).save(ckpt)
    voc = load_vocoder("melgan", checkpoint=ckpt)
    assert not voc.half and next(voc.model.parameters()).dtype == torch.float32
    assert voc.info()["config"]["precision"] == "float32"
    with pytest.raises(ValueError, match="CUDA"):
        load_vocoder("melgan", checkpoint=ckpt, half=True)
    with pytest.raises(ValueError, match="no float16 path"):
        load_vocoder("griffinlim", half=True)
    with pytest.raises(ValueError, match="CUDA"):
        cv.convert(store, cv.ConvertConfig("melgan", checkpoint=str(ckpt), half=True), workers=0, progress=False)
    summary = cv.convert(store, cv.ConvertConfig("melgan", checkpoint=str(ckpt)), workers=0, progress=False)
    assert summary.counts["samples"] > 0
    plan = st.store_attrs(store)["stages"]["convert:melgan"]
    assert plan["info"]["config"]["precision"] == "float32" and plan["config"]["half"] is False


def _vocoder_loads():
    return cv.LOADS["count"]


def test_on_a_dask_worker_the_vocoder_is_loaded_once(store):
    """Both shards run as tasks on one worker process, which loads the vocoder once."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        summary = cv.convert(store, cv.ConvertConfig("griffinlim", options={"n_iter": 4}), client=client,
                             progress=False)
        loads = client.run(_vocoder_loads)
    assert summary.computed == 2 and summary.errors == {}
    assert list(loads.values()) == [1]
