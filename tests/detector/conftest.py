"""Shards built from the real sample media for the detector's tests (built once per session)."""

import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def speech_shards(sample_data, tmp_path_factory):
    """Audio-only shards of real speech and its Griffin-Lim and WORLD re-syntheses: the 9
    utterances of sample_data/speech and the soundtracks of the four sample videos that have one
    (as wav files), cut into up to 8 clips of 1.28 s each; codec2_wia_16kHz.wav (1.0 s) is
    shorter than one clip and is recorded as a too_short failure, so 12 items remain. Splits by
    item (utterance), assigned 60/20/20."""
    from pipeline.convert import ConvertConfig, convert
    from pipeline.extract import ExtractConfig, extract
    from pipeline.manifest import write_manifest
    from pipeline.media import ffmpeg_exe
    from pipeline.pairs import PairConfig
    from pipeline.recipes import prepare
    from pipeline.shards import ShardsConfig, build_shards

    tmp = tmp_path_factory.mktemp("speech")
    corpus = tmp / "corpus"
    shutil.copytree(sample_data / "speech", corpus)
    for video in ["talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "talking/liveportrait_d10.mp4",
                  "dfdc/dfdc_sample_real/lynaeydofd.mp4", "dfdc/dfdc_train_part_0/brtujopkby.mp4"]:
        subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(sample_data / video), "-vn", "-ac", "1", "-ar",
                        "16000", str(corpus / (video.split("/")[-1][:-4] + ".wav"))], check=True)
    manifest = tmp / "m.jsonl"
    write_manifest(prepare("folder", corpus, default_label="real"), manifest, "folder", corpus)
    store = tmp / "s.zarr"
    extract(manifest, store, config=ExtractConfig(clips_per_video=8, clips_per_audio=8, items_per_shard=4), workers=0, progress=False)
    for v in ("griffinlim", "world"):
        convert(store, ConvertConfig(v), workers=0, progress=False)
    out = tmp / "shards.zarr"
    build_shards(store, out, ShardsConfig(pairs=PairConfig(pairs=("own", "vocoded")),
                                          split_ratios={"train": 0.6, "val": 0.2, "test": 0.2}),
                 workers=0, progress=False)
    return out


@pytest.fixture(scope="session")
def av_shards(six_videos_store, tmp_path_factory):
    """Audio-visual shards of the six sample videos (own, vocoded with Griffin-Lim, shifted and
    swapped pairs)."""
    from pipeline.convert import ConvertConfig, convert
    from pipeline.pairs import PairConfig
    from pipeline.shards import ShardsConfig, build_shards

    src, _, _ = six_videos_store
    tmp = tmp_path_factory.mktemp("av")
    store = tmp / "s.zarr"
    shutil.copytree(src, store)
    convert(store, ConvertConfig("griffinlim", options={"n_iter": 8}), workers=0, progress=False)
    out = tmp / "shards.zarr"
    build_shards(store, out, ShardsConfig(pairs=PairConfig(pairs=("own", "vocoded", "shifted", "swapped"), seed=2)),
                 workers=0, progress=False)
    return out


@pytest.fixture(scope="session")
def audio_checkpoint(speech_shards, tmp_path_factory):
    """A tiny audio model trained briefly on the speech shards."""
    import torch

    from detector import config as C
    from detector.train import train

    torch.set_num_threads(2)
    cfg = C.tiny("audio")
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = 6, 16, 3e-3
    return train(speech_shards, tmp_path_factory.mktemp("audio_run") / "run", cfg, progress=False)["best_checkpoint"]


@pytest.fixture(scope="session")
def av_checkpoint(av_shards, tmp_path_factory):
    """A tiny av model after a few steps on the six videos' shards (mechanics, not accuracy)."""
    from detector import config as C
    from detector.train import train

    cfg = C.tiny("av")
    cfg.train.val_split = ""
    return train(av_shards, tmp_path_factory.mktemp("av_run") / "run", cfg, progress=False,
                 overrides={"max_steps": 4})["best_checkpoint"]
