"""Parallel WaveGAN: training mechanics, shapes, loading the release's training checkpoints
(config.yml + stats beside them), round trip, features against librosa on real speech, copy
synthesis mechanics."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pipeline.vocoders import load_vocoder
from pipeline.vocoders.checkpoint import CheckpointError
from pipeline.vocoders.mel import get_convention
from tests.pipeline.vocoders.util import weight_normed
from pipeline.vocoders.parallel_wavegan import (
    ParallelWaveGAN,
    ParallelWaveGANConfig,
    ParallelWaveGANGenerator,
)

# Keys and shapes of the default (parallel_wavegan.v1) generator, read off kan-bayashi
# ParallelWaveGAN models/parallel_wavegan.py, layers/upsample.py and layers/residual_block.py;
# apply_weight_norm covers Conv1d and Conv2d; conv_in, conv1x1_aux and the upsampling Conv2d
# have no bias.
RELEASE_KEYS = {
    "first_conv.weight_g": (64, 1, 1),
    "first_conv.weight_v": (64, 1, 1),
    "first_conv.bias": (64,),
    "upsample_net.conv_in.weight_g": (80, 1, 1),
    "upsample_net.conv_in.weight_v": (80, 80, 5),
    "upsample_net.upsample.up_layers.1.weight_g": (1, 1, 1, 1),
    "upsample_net.upsample.up_layers.1.weight_v": (1, 1, 1, 9),
    "upsample_net.upsample.up_layers.7.weight_v": (1, 1, 1, 9),
    "conv_layers.0.conv.weight_v": (128, 64, 3),
    "conv_layers.0.conv.bias": (128,),
    "conv_layers.0.conv1x1_aux.weight_v": (128, 80, 1),
    "conv_layers.29.conv1x1_out.weight_v": (64, 64, 1),
    "conv_layers.29.conv1x1_skip.weight_g": (64, 1, 1),
    "conv_layers.29.conv1x1_skip.bias": (64,),
    "last_conv_layers.1.weight_v": (64, 64, 1),
    "last_conv_layers.3.weight_v": (1, 64, 1),
    "last_conv_layers.3.bias": (1,),
}
NO_BIAS = ("upsample_net.conv_in.bias", "upsample_net.upsample.up_layers.1.bias", "conv_layers.0.conv1x1_aux.bias")
# egs/ljspeech/voc1/conf/parallel_wavegan.v1.yaml (the parts train.py writes back into config.yml).
V1_CONFIG = {
    "sampling_rate": 22050, "fft_size": 1024, "hop_size": 256, "win_length": None, "window": "hann",
    "num_mels": 80, "fmin": 80, "fmax": 7600, "global_gain_scale": 1.0, "trim_silence": True,
    "trim_threshold_in_db": 60, "trim_frame_size": 2048, "trim_hop_size": 512, "format": "hdf5",
    "generator_params": {
        "in_channels": 1, "out_channels": 1, "kernel_size": 3, "layers": 30, "stacks": 3,
        "residual_channels": 64, "gate_channels": 128, "skip_channels": 64, "aux_channels": 80,
        "aux_context_window": 2, "dropout": 0.0, "use_weight_norm": True,
        "upsample_net": "ConvInUpsampleNetwork", "upsample_params": {"upsample_scales": [4, 4, 4, 4]},
    },
    "discriminator_params": {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "layers": 10,
                             "conv_channels": 64, "bias": True, "use_weight_norm": True,
                             "nonlinear_activation": "LeakyReLU",
                             "nonlinear_activation_params": {"negative_slope": 0.2}},
    "batch_size": 6, "batch_max_steps": 25600, "train_max_steps": 400000, "distributed": False,
    "version": "0.5.3",
}
TINY_PARAMS = {"layers": 4, "stacks": 2, "residual_channels": 8, "gate_channels": 16, "skip_channels": 8,
               "aux_context_window": 1, "use_weight_norm": True,
               "upsample_params": {"upsample_scales": [4, 4, 4, 4]}}


def release_weight_normed(model: torch.nn.Module) -> torch.nn.Module:
    """Weight norm on every Conv1d/Conv2d (the release's apply_weight_norm), g != ||v||."""
    return weight_normed(model, (torch.nn.Conv1d, torch.nn.Conv2d))


def release_checkpoint(generator: torch.nn.Module, steps=400000) -> dict:
    """bin/train.py save_checkpoint layout, with real optimizer/scheduler states."""
    disc = release_weight_normed(torch.nn.Sequential(torch.nn.Conv1d(1, 64, 3, padding=1), torch.nn.Conv1d(64, 1, 3)))
    opt = {"generator": torch.optim.RAdam(generator.parameters(), lr=1e-4, eps=1e-6),
           "discriminator": torch.optim.RAdam(disc.parameters(), lr=5e-5, eps=1e-6)}
    for p in list(generator.parameters()) + list(disc.parameters()):
        p.grad = torch.zeros_like(p)
    for o in opt.values():
        o.step()
    sched = {"generator": torch.optim.lr_scheduler.StepLR(opt["generator"], step_size=200000, gamma=0.5),
             "discriminator": torch.optim.lr_scheduler.MultiStepLR(opt["discriminator"], [200000], gamma=0.5)}
    return {"model": {"generator": generator.state_dict(), "discriminator": disc.state_dict()},
            "optimizer": {k: o.state_dict() for k, o in opt.items()},
            "scheduler": {k: s.state_dict() for k, s in sched.items()}, "steps": steps, "epochs": 1234}


def write_stats(directory, n=80, kind="h5"):
    rng = np.random.default_rng(0)
    mean, scale = rng.normal(-2.5, 0.5, n).astype(np.float32), rng.uniform(0.5, 1.5, n).astype(np.float32)
    if kind == "h5":
        import h5py

        with h5py.File(directory / "stats.h5", "w") as f:
            f.create_dataset("mean", data=mean)
            f.create_dataset("scale", data=scale)
    else:
        np.save(directory / "stats.npy", np.stack([mean, scale]))
    return mean, scale


def real_speech(sample_data, seconds=1.5):
    import soundfile as sf

    audio, sr = sf.read(sample_data / "speech" / "psphinx_goforward.wav", dtype="float32")
    assert sr == 16000
    return audio[: int(seconds * sr)]


def test_trainable():
    torch.manual_seed(0)
    model = ParallelWaveGANGenerator(ParallelWaveGANConfig.tiny()).train()
    z, c, target = torch.randn(2, 1, 5 * 256), torch.randn(2, 80, 5 + 4), torch.randn(2, 1, 5 * 256) * 0.1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    F.l1_loss(model(z, c), target).backward()
    # As in the release, the last block's residual output (conv1x1_out) feeds nothing.
    unused = {"conv_layers.3.conv1x1_out.weight", "conv_layers.3.conv1x1_out.bias"}
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert {k for k, g in grads.items() if g is None} == unused
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(before) - unused


@pytest.mark.parametrize("causal", [False, True])
def test_shapes(causal):
    voc = ParallelWaveGAN(replace(ParallelWaveGANConfig.tiny(), use_causal_conv=causal))
    c = torch.randn(2, 80, 11)
    assert voc.model(torch.randn(2, 1, 11 * 256), F.pad(c, (2, 2), mode="replicate")).shape == (2, 1, 11 * 256)
    y = voc.generate(c)
    assert y.shape == (2, 11 * 256) and y.dtype == torch.float32 and torch.isfinite(y).all()


def test_generate_is_release_inference():
    """Noise randn(B, 1, T * hop) (seeded), features replicate-padded by aux_context_window."""
    voc = ParallelWaveGAN(ParallelWaveGANConfig.tiny())
    c = torch.randn(2, 80, 7)
    z = torch.randn(2, 1, 7 * 256, generator=torch.Generator().manual_seed(0))
    padded = torch.cat([c[:, :, :1], c[:, :, :1], c, c[:, :, -1:], c[:, :, -1:]], dim=2)
    torch.testing.assert_close(voc.generate(c), voc.model(z, padded).squeeze(1))
    assert torch.equal(voc.generate(c), voc.generate(c))  # reproducible conversions


@pytest.mark.parametrize("zipfile", [True, False])
def test_load_release_checkpoint(tmp_path, zipfile):
    torch.manual_seed(0)
    ref = release_weight_normed(ParallelWaveGANGenerator(ParallelWaveGANConfig()))
    ckpt = release_checkpoint(ref)
    sd = ckpt["model"]["generator"]
    for key, shape in RELEASE_KEYS.items():
        assert tuple(sd[key].shape) == shape, key
    assert not set(NO_BIAS) & set(sd)
    path = tmp_path / "checkpoint-400000steps.pkl"
    torch.save(ckpt, path, _use_new_zipfile_serialization=zipfile)
    (tmp_path / "config.yml").write_text(yaml.dump(V1_CONFIG, Dumper=yaml.Dumper))
    mean, scale = write_stats(tmp_path)
    torch.load(path, weights_only=True)  # optimizer (RAdam), StepLR and MultiStepLR states: plain data
    voc = ParallelWaveGAN.from_checkpoint(path)
    assert voc.config == ParallelWaveGANConfig(stats_mean=tuple(mean.tolist()), stats_scale=tuple(scale.tolist()))
    assert voc.mel == get_convention("parallel_wavegan")
    z, c = torch.randn(2, 1, 3 * 256), torch.randn(2, 80, 3 + 4)
    with torch.no_grad():
        expected = ref(z, c)
    assert expected.std() > 1e-3
    torch.testing.assert_close(voc.model(z, c), expected, rtol=1e-4, atol=1e-5)


def test_load_reads_config_yml_and_stats_npy(tmp_path):
    """Another generator_params and feature settings in config.yml, stats.npy, `module.` prefix."""
    torch.manual_seed(0)
    cfg = {**V1_CONFIG, "fmin": 0, "fmax": None, "win_length": 800, "generator_params": TINY_PARAMS}
    ref = release_weight_normed(ParallelWaveGANGenerator(ParallelWaveGANConfig.from_generator_params(TINY_PARAMS)))
    ckpt = release_checkpoint(ref)
    ckpt["model"]["generator"] = {f"module.{k}": v for k, v in ckpt["model"]["generator"].items()}
    path = tmp_path / "checkpoint-5000steps.pkl"
    torch.save(ckpt, path)
    (tmp_path / "config.yml").write_text(yaml.dump(cfg))
    mean, _ = write_stats(tmp_path, kind="npy")
    voc = ParallelWaveGAN.from_checkpoint(path)
    assert (voc.config.layers, voc.config.residual_channels, voc.config.aux_context_window) == (4, 8, 1)
    assert np.allclose(voc.config.stats_mean, mean)
    assert voc.mel == get_convention("parallel_wavegan").replace(fmin=0.0, fmax=None, win_length=800)
    z, c = torch.randn(1, 1, 4 * 256), torch.randn(1, 80, 4 + 2)
    with torch.no_grad():
        torch.testing.assert_close(voc.model(z, c), ref(z, c), rtol=1e-4, atol=1e-5)


def test_numpy_scalar_in_checkpoint_is_allowed(tmp_path):
    """A training loop that stores a NumPy step counter: weights_only refuses it, our restricted
    allow-list (NumPy scalars only) loads it."""
    ref = ParallelWaveGANGenerator(ParallelWaveGANConfig.from_generator_params(TINY_PARAMS))
    path = tmp_path / "checkpoint-100steps.pkl"
    torch.save({"model": {"generator": ref.state_dict()}, "steps": np.int64(100)}, path)
    write_stats(tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    (tmp_path / "config.yml").write_text(yaml.dump({**V1_CONFIG, "generator_params": TINY_PARAMS}))
    voc = ParallelWaveGAN.from_checkpoint(path)
    assert voc.config.layers == 4


def test_stats_registered_as_buffers(tmp_path):
    """A generator saved after register_stats() holds mean/scale buffers: used when no stats file."""
    ref = ParallelWaveGANGenerator(ParallelWaveGANConfig.from_generator_params(TINY_PARAMS))
    ref.register_buffer("mean", torch.full((80,), -2.0))
    ref.register_buffer("scale", torch.full((80,), 0.5))
    path = tmp_path / "checkpoint-100steps.pkl"
    torch.save(release_checkpoint(ref), path)
    (tmp_path / "config.yml").write_text(yaml.dump({**V1_CONFIG, "generator_params": TINY_PARAMS}))
    voc = ParallelWaveGAN.from_checkpoint(path)
    assert voc.config.stats_mean == (-2.0,) * 80 and voc.config.stats_scale == (0.5,) * 80


def test_missing_stats_and_other_generators_are_refused(tmp_path):
    ref = ParallelWaveGANGenerator(ParallelWaveGANConfig.tiny())
    path = tmp_path / "checkpoint-100steps.pkl"
    torch.save(release_checkpoint(ref), path)
    (tmp_path / "config.yml").write_text(yaml.dump({**V1_CONFIG, "generator_params": TINY_PARAMS}))
    with pytest.raises(CheckpointError, match="stats.h5"):
        ParallelWaveGAN.from_checkpoint(path)
    write_stats(tmp_path)
    (tmp_path / "config.yml").write_text(yaml.dump({**V1_CONFIG, "generator_type": "HiFiGANGenerator"}))
    with pytest.raises(CheckpointError, match="HiFiGANGenerator"):
        ParallelWaveGAN.from_checkpoint(path)


def test_save_round_trip(tmp_path):
    torch.manual_seed(1)
    voc = ParallelWaveGAN(replace(ParallelWaveGANConfig.tiny(), stats_mean=(-3.0,) * 80, stats_scale=(2.0,) * 80))
    path = tmp_path / "pwg.pt"
    voc.save(path)
    assert torch.load(path, weights_only=True)["vocoder"] == "parallel_wavegan"
    back = ParallelWaveGAN.from_checkpoint(path)  # no config.yml / stats beside it: all in the file
    assert back.config == voc.config and back.mel == voc.mel
    wav = torch.randn(2, 3000) * 0.1
    assert torch.equal(back.features(wav), voc.features(wav))
    c = voc.features(wav)
    assert torch.equal(back.generate(c), voc.generate(c))


def test_features_match_librosa_logmelfilterbank(sample_data, tmp_path):
    """bin/preprocess.py logmelfilterbank (librosa stft, reflect, fmin 80, fmax 7600,
    log10(max(1e-10, mel))), then (x - mean) / scale, on real speech."""
    import librosa

    mean, scale = np.linspace(-4, -1, 80), np.linspace(0.5, 1.5, 80)
    voc = ParallelWaveGAN(replace(ParallelWaveGANConfig.tiny(), stats_mean=tuple(mean), stats_scale=tuple(scale)))
    y = librosa.resample(real_speech(sample_data), orig_sr=16000, target_sr=22050)
    spc = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, win_length=None, window="hann", pad_mode="reflect")).T
    basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=80, fmax=7600)
    logmel = np.log10(np.maximum(1e-10, spc @ basis.T)).T
    raw = voc.mel(torch.from_numpy(y)[None])[0].numpy()
    assert raw.shape == logmel.shape
    assert np.abs(raw - logmel).max() < 1e-3
    got = voc.features(torch.from_numpy(y)[None])[0].numpy()
    assert np.abs(got - (logmel - mean[:, None]) / scale[:, None]).max() < 2e-3


def test_load_vocoder_needs_checkpoint():
    with pytest.raises(CheckpointError, match="--checkpoint"):
        load_vocoder("parallel_wavegan")


def test_copy_synthesize_keeps_length(sample_data):
    audio = real_speech(sample_data, seconds=1.3)
    batch = np.stack([audio, audio[::-1].copy()])
    voc = ParallelWaveGAN(replace(ParallelWaveGANConfig.tiny(), stats_mean=(-3.0,) * 80, stats_scale=(1.5,) * 80))
    out = voc.copy_synthesize(batch, 16000)
    assert out.shape == batch.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.std() > 0
