"""MelGAN: training mechanics, shapes, loading both public releases' checkpoints, round trip,
mel conventions against librosa on real speech, copy synthesis mechanics."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from pipeline.vocoders import load_vocoder
from pipeline.vocoders.checkpoint import CheckpointError
from pipeline.vocoders.mel import get_convention
from pipeline.vocoders.melgan import MelGAN, MelGANConfig, MelGANGenerator
from tests.pipeline.vocoders.util import weight_normed

# Keys and shapes of the default generators, read off the releases' module code:
# descript melgan-neurips mel2wav/modules.py Generator(80, 32, 3) (weight_norm on every conv;
# ConvTranspose1d weight is (in, out, k) and weight_norm(dim=0) keeps g as (in, 1, 1)) ...
DESCRIPT_KEYS = {
    "model.1.weight_g": (512, 1, 1),
    "model.1.weight_v": (512, 80, 7),
    "model.1.bias": (512,),
    "model.3.weight_g": (512, 1, 1),
    "model.3.weight_v": (512, 256, 16),
    "model.4.block.2.weight_v": (256, 256, 3),
    "model.4.block.4.weight_v": (256, 256, 1),
    "model.4.shortcut.weight_v": (256, 256, 1),
    "model.8.weight_v": (256, 128, 16),
    "model.18.weight_v": (64, 32, 4),
    "model.21.block.2.weight_v": (32, 32, 3),
    "model.24.weight_v": (1, 32, 7),
    "model.24.bias": (1,),
}
# ... and seungwonpark melgan model/generator.py + model/res_stack.py (v0.3-alpha layout).
SEUNGWONPARK_KEYS = {
    "generator.1.weight_g": (512, 1, 1),
    "generator.1.weight_v": (512, 80, 7),
    "generator.3.weight_v": (512, 256, 16),
    "generator.4.blocks.0.2.weight_v": (256, 256, 3),
    "generator.4.blocks.2.4.weight_v": (256, 256, 1),
    "generator.4.shortcuts.1.weight_g": (256, 1, 1),
    "generator.6.weight_v": (256, 128, 16),
    "generator.12.weight_v": (64, 32, 4),
    "generator.13.shortcuts.2.weight_v": (32, 32, 1),
    "generator.16.weight_v": (1, 32, 7),
    "generator.16.bias": (1,),
}
# seungwonpark config/default.yaml, as train.py stores it in hp_str.
HP_STR = """data:
  train: ''
  validation: ''
---
train:
  rep_discriminator: 1
  batch_size: 16
  adam: {lr: 0.0001, beta1: 0.5, beta2: 0.9}
---
audio:
  n_mel_channels: 80
  segment_length: 16000
  pad_short: 2000
  filter_length: 1024
  hop_length: 256 # WARNING: this can't be changed.
  win_length: 1024
  sampling_rate: 22050
  mel_fmin: 0.0
  mel_fmax: 8000.0
"""


def release_generator(layout: str) -> torch.nn.Module:
    """The default generator with weight norm on every conv, as the releases build it, and
    g != ||v|| so that folding is exercised."""
    torch.manual_seed(0)
    config = MelGANConfig() if layout == "descript" else MelGANConfig.seungwonpark()
    return weight_normed(MelGANGenerator(config))


def check_keys(sd: dict, expected: dict) -> None:
    for key, shape in expected.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, (key, tuple(sd[key].shape), shape)


def real_speech(sample_data, seconds=1.5):
    import soundfile as sf

    audio, sr = sf.read(sample_data / "speech" / "psphinx_goforward.wav", dtype="float32")
    assert sr == 16000
    return audio[: int(seconds * sr)]


@pytest.mark.parametrize("layout", ["descript", "seungwonpark"])
def test_trainable(layout):
    torch.manual_seed(0)
    model = MelGANGenerator(MelGANConfig.tiny(layout)).train()
    mel, target = torch.randn(2, 80, 6), torch.rand(2, 1, 6 * 256) * 2 - 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = torch.nn.functional.l1_loss(model(mel), target)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == len(before)  # every weight and bias moved


@pytest.mark.parametrize("layout", ["descript", "seungwonpark"])
def test_shapes(layout):
    voc = MelGAN(MelGANConfig.tiny(layout))
    mel = torch.randn(2, 80, 13)
    assert voc.model(mel).shape == (2, 1, 13 * 256)
    y = voc.generate(mel)
    assert y.shape == (2, 13 * 256) and y.dtype == torch.float32
    assert y.abs().max() <= 1.0


def test_seungwonpark_inference_pads_silence():
    """seungwonpark Generator.inference: 10 frames of -11.5129 appended, 10 hops cut off."""
    voc = MelGAN(MelGANConfig.tiny("seungwonpark"))
    mel = torch.randn(2, 80, 9)
    padded = torch.cat([mel, torch.full((2, 80, 10), -11.5129)], dim=2)
    expected = voc.model(padded).squeeze(1)[:, : 9 * 256]
    torch.testing.assert_close(voc.generate(mel), expected)
    assert not torch.allclose(voc.generate(mel), voc.model(mel).squeeze(1))
    # seungwonpark Generator.forward maps the ln-mel with (mel + 5) / 5 first
    torch.testing.assert_close(voc.model(mel), voc.model.generator((mel + 5.0) / 5.0))


def test_load_descript_best_netG(tmp_path):
    ref = release_generator("descript")
    sd = ref.state_dict()
    check_keys(sd, DESCRIPT_KEYS)
    path = tmp_path / "best_netG.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False)  # a bare state_dict, 2019 (legacy) format
    voc = MelGAN.from_checkpoint(path)
    assert voc.config == MelGANConfig()
    assert voc.mel == get_convention("melgan")
    mel = torch.randn(2, 80, 5) - 3
    with torch.no_grad():
        expected = ref(mel).squeeze(1)
    assert 1e-3 < expected.abs().mean() < 0.9  # not saturated: the comparison means something
    torch.testing.assert_close(voc.generate(mel), expected, rtol=1e-4, atol=1e-5)


def test_load_seungwonpark_training_checkpoint(tmp_path):
    ref = release_generator("seungwonpark")
    check_keys(ref.state_dict(), SEUNGWONPARK_KEYS)
    disc = torch.nn.Conv1d(1, 16, 15)
    optim_g = torch.optim.Adam(ref.parameters(), lr=1e-4, betas=(0.5, 0.9))
    optim_d = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
    for p in ref.parameters():  # one step with zero gradients: Adam state, weights unchanged
        p.grad = torch.zeros_like(p)
    optim_g.step()
    ckpt = {"model_g": ref.state_dict(), "model_d": {"discriminator.0.discriminator.1.weight": disc.weight},
            "optim_g": optim_g.state_dict(), "optim_d": optim_d.state_dict(), "step": 2_000_000, "epoch": 6400,
            "hp_str": HP_STR, "githash": "8f0d9b8"}
    path = tmp_path / "nvidia_tacotron2_LJ11_epoch6400.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)
    torch.load(path, weights_only=True)  # optimizer states are plain data
    voc = MelGAN.from_checkpoint(path)
    assert voc.config == MelGANConfig.seungwonpark()
    assert voc.mel == get_convention("tacotron2")
    mel = torch.randn(2, 80, 4) * 2 - 6  # ln-mel range
    with torch.no_grad():
        padded = torch.cat([mel, torch.full((2, 80, 10), -11.5129)], dim=2)
        expected = ref(padded).squeeze(1)[:, : 4 * 256]
    assert 1e-3 < expected.abs().mean() < 0.9
    torch.testing.assert_close(voc.generate(mel), expected, rtol=1e-4, atol=1e-5)
    # hp_str's audio section sets the mel
    other = dict(ckpt, hp_str=HP_STR.replace("mel_fmax: 8000.0", "mel_fmax: 11025.0"))
    _, mel_spec = MelGAN.config_from_checkpoint(other, path)
    assert mel_spec == get_convention("tacotron2").replace(fmax=11025.0)


def test_old_seungwonpark_layout_is_refused(tmp_path):
    sd = {"generator.0.weight_g": torch.ones(512, 1, 1), "generator.0.weight_v": torch.ones(512, 80, 7),
          "generator.3.layers.0.1.weight_g": torch.ones(256, 1, 1),
          "generator.3.layers.0.1.weight_v": torch.ones(256, 256, 3)}
    path = tmp_path / "nvidia_tacotron2_LJ11_epoch3200.pt"
    torch.save({"model_g": sd, "hp_str": HP_STR}, path)
    with pytest.raises(CheckpointError, match="v0.1-alpha"):
        MelGAN.from_checkpoint(path)


@pytest.mark.parametrize("layout", ["descript", "seungwonpark"])
def test_save_round_trip(tmp_path, layout):
    torch.manual_seed(1)
    voc = MelGAN(MelGANConfig.tiny(layout))
    path = tmp_path / "melgan.pt"
    voc.save(path)
    raw = torch.load(path, weights_only=True)
    assert raw["vocoder"] == "melgan"
    back = MelGAN.from_checkpoint(path)
    assert back.config == voc.config and back.mel == voc.mel
    mel = torch.randn(2, 80, 7)
    assert torch.equal(back.generate(mel), voc.generate(mel))


@pytest.mark.parametrize("convention", ["melgan", "tacotron2"])
def test_mel_convention_matches_librosa(sample_data, convention):
    """descript Audio2Mel (reflect-pad (n_fft - hop) / 2, no centring, log10) and the
    Tacotron2 mel of seungwonpark (centred reflect STFT, fmax 8 kHz, ln), on real speech."""
    import librosa

    layout = "descript" if convention == "melgan" else "seungwonpark"
    voc = MelGAN(MelGANConfig.tiny(layout))
    y = librosa.resample(real_speech(sample_data), orig_sr=16000, target_sr=22050)
    if convention == "melgan":
        pad = (1024 - 256) // 2
        spec = np.abs(librosa.stft(np.pad(y, pad, mode="reflect"), n_fft=1024, hop_length=256, win_length=1024,
                                   window="hann", center=False))
        basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=None)
        expected = np.log10(np.maximum(basis @ spec, 1e-5))
    else:
        spec = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=True,
                                   pad_mode="reflect"))
        basis = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0)
        expected = np.log(np.maximum(basis @ spec, 1e-5))
    got = voc.features(torch.from_numpy(y)[None])[0].numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-3


def test_load_vocoder_needs_checkpoint():
    with pytest.raises(CheckpointError, match="--checkpoint"):
        load_vocoder("melgan")


@pytest.mark.parametrize("layout", ["descript", "seungwonpark"])
def test_copy_synthesize_keeps_length(sample_data, layout):
    audio = real_speech(sample_data, seconds=1.3)
    batch = np.stack([audio, audio[::-1].copy()])
    out = MelGAN(MelGANConfig.tiny(layout)).copy_synthesize(batch, 16000)
    assert out.shape == batch.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.std() > 0
