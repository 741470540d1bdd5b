"""WaveGlow: the flow itself, every checkpoint layout of NVIDIA's releases, and the pickle path.

Release facts used here: NVIDIA/waveglow glow.py (module names, weight norm on every WN conv
but ``end``), config.json (default sizes), train.py (``{'model': <glow.WaveGlow>, 'iteration',
'optimizer', 'learning_rate'}``), and DeepLearningExamples' waveglow/model.py + train.py
(per-layer ``cond_layers``, ``{'state_dict', 'config', ...}`` with a ``module.`` prefix).
"""

import dataclasses
import os
import sys
import types
import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from pipeline.vocoders import load_vocoder
from pipeline.vocoders.checkpoint import CheckpointError
from pipeline.vocoders.waveglow import (
    WaveGlow,
    WaveGlowConfig,
    WaveGlowVocoder,
    config_from_state_dict,
    release_state_dict,
    resave_plain,
    waveglow_loss,
)

TINY = WaveGlowConfig.tiny()
NORMED = (".start.", ".cond_layer.", ".in_layers.", ".res_skip_layers.")  # weight-normed in glow.py

# Exact keys and shapes of NVIDIA/waveglow glow.py for config.json's waveglow_config (256 channels):
# flows 0-3 carry 8 channels (halves of 4), 4-7 carry 6, 8-11 carry 4; cond_layer is 2*256*8 x 80*8.
RELEASE_KEYS = {
    "upsample.weight": (80, 80, 1024), "upsample.bias": (80,),
    "convinv.0.conv.weight": (8, 8, 1), "convinv.4.conv.weight": (6, 6, 1), "convinv.11.conv.weight": (4, 4, 1),
    "WN.0.start.weight_g": (256, 1, 1), "WN.0.start.weight_v": (256, 4, 1), "WN.0.start.bias": (256,),
    "WN.0.cond_layer.weight_g": (4096, 1, 1), "WN.0.cond_layer.weight_v": (4096, 640, 1),
    "WN.0.in_layers.0.weight_v": (512, 256, 3), "WN.0.in_layers.7.bias": (512,),
    "WN.0.res_skip_layers.0.weight_v": (512, 256, 1), "WN.0.res_skip_layers.7.weight_v": (256, 256, 1),
    "WN.0.end.weight": (8, 256, 1), "WN.4.end.bias": (6,), "WN.11.start.weight_v": (256, 2, 1),
}
# DeepLearningExamples (waveglow/model.py, saved under DDP): one cond conv per layer.
DLE_KEYS = {"module.WN.0.cond_layers.0.weight_v": (512, 640, 1), "module.WN.0.cond_layers.7.bias": (512,),
            "module.upsample.weight": (80, 80, 1024)}


def source_weights(seed=0):
    """Plain weights of a tiny WaveGlow whose couplings are not the identity (``end`` != 0)."""
    torch.manual_seed(seed)
    sd = WaveGlow(TINY).state_dict()
    for k in sd:
        if ".end." in k:
            sd[k] = 0.1 * torch.randn(sd[k].shape)
    return sd


def to_release(sd, per_layer_cond=False, seed=1):
    """(release-layout state_dict with weight_g/weight_v pairs, the plain weights it amounts to);
    torch's own weight-norm op is the reference for g * v / ||v||."""
    gen = torch.Generator().manual_seed(seed)
    rel, eff = {}, {}

    def normed(base, shape):
        v, g = torch.randn(shape, generator=gen), 0.05 + 0.1 * torch.rand(shape[0], 1, 1, generator=gen)
        rel[base + ".weight_g"], rel[base + ".weight_v"] = g, v
        return torch._weight_norm(v, g, 0)

    for k, w in sd.items():
        base = k[: -len(".weight")]
        if per_layer_cond and ".cond_layer." in k:
            rows, head = 2 * TINY.n_channels, k.split(".cond_layer.")[0]
            parts = range(TINY.n_layers)
            if k.endswith(".weight"):
                eff[k] = torch.cat([normed(f"{head}.cond_layers.{i}", (rows, *w.shape[1:])) for i in parts])
            else:
                eff[k] = w.clone()
                rel.update({f"{head}.cond_layers.{i}.bias": w[i * rows:(i + 1) * rows].clone() for i in parts})
        elif k.endswith(".weight") and any(s in k for s in NORMED):
            eff[k] = normed(base, w.shape)
        else:
            rel[k] = eff[k] = w.clone()
    return rel, eff


def vocoder_with(sd, config=TINY):
    voc = WaveGlowVocoder(config)
    voc.model.load_state_dict(sd)
    return voc


MEL = torch.randn(2, 80, 12, generator=torch.Generator().manual_seed(3)) - 4


def make_fake_glow():
    """A throwaway ``glow`` module: nn.Modules with glow.py's attribute names and weight norm."""
    wn = torch.nn.utils.weight_norm
    glow = types.ModuleType("glow")

    class Invertible1x1Conv(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv1d(c, c, 1, bias=False)

    class WN(nn.Module):
        def __init__(self, n_in, n_cond, n_layers, n_channels, kernel_size):
            super().__init__()
            self.n_layers, self.n_channels = n_layers, n_channels
            self.in_layers, self.res_skip_layers = nn.ModuleList(), nn.ModuleList()
            self.start = wn(nn.Conv1d(n_in, n_channels, 1))
            self.end = nn.Conv1d(n_channels, 2 * n_in, 1)
            self.cond_layer = wn(nn.Conv1d(n_cond, 2 * n_channels * n_layers, 1))
            for i in range(n_layers):
                self.in_layers.append(wn(nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=2 ** i,
                                                   padding=2 ** i * (kernel_size - 1) // 2)))
                self.res_skip_layers.append(wn(nn.Conv1d(n_channels, n_channels * (2 if i < n_layers - 1 else 1), 1)))

    class WaveGlow(nn.Module):
        def __init__(self, c: WaveGlowConfig):
            super().__init__()
            self.upsample = nn.ConvTranspose1d(80, 80, c.upsample_kernel, stride=256)
            self.n_flows, self.n_group, self.n_early_every, self.n_early_size = c.n_flows, 8, 2, 2
            self.WN, self.convinv = nn.ModuleList(), nn.ModuleList()
            remaining = 8
            for k in range(c.n_flows):
                remaining -= c.n_early_size if k and k % c.n_early_every == 0 else 0
                self.convinv.append(Invertible1x1Conv(remaining))
                self.WN.append(WN(remaining // 2, 640, c.n_layers, c.n_channels, c.kernel_size))
            self.n_remaining_channels = remaining

    for cls in (Invertible1x1Conv, WN, WaveGlow):
        cls.__module__, cls.__qualname__ = "glow", cls.__name__
        setattr(glow, cls.__name__, cls)
    return glow


@pytest.fixture(scope="module")
def release_pickles(tmp_path_factory):
    """NVIDIA-style pickled checkpoints (zip and pre-1.6 formats) of known weights, made as
    train.py's save_checkpoint does; the ``glow`` module is gone again afterwards."""
    tmp = tmp_path_factory.mktemp("waveglow")
    rel, eff = to_release(source_weights())
    sys.modules["glow"] = glow = make_fake_glow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # weight_norm is deprecated; no source for the fake classes
            model = glow.WaveGlow(TINY)
            model.load_state_dict(rel)  # strict: our release layout is the fake release's layout
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            ckpt = {"model": model, "iteration": 580000, "optimizer": opt.state_dict(), "learning_rate": 1e-4}
            paths = {"zip": tmp / "waveglow_zip.pt", "legacy": tmp / "waveglow_legacy.pt"}
            torch.save(ckpt, paths["zip"])
            torch.save(ckpt, paths["legacy"], _use_new_zipfile_serialization=False)
    finally:
        del sys.modules["glow"]
    return paths, eff


def test_trainable_tiny():
    model = WaveGlow(TINY).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = waveglow_loss(model(MEL, 0.1 * torch.randn(2, 12 * 256)))
    loss.backward()
    assert torch.isfinite(loss) and model.WN[0].end.weight.grad.abs().sum() > 0
    opt.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(".end." in k for k in changed) and any("convinv" in k for k in changed)


def test_shapes_and_flow_inverts():
    model = vocoder_with(source_weights()).model
    audio = 0.1 * torch.randn(2, 12 * 256)
    with torch.no_grad():
        z, log_s, log_det = model(MEL, audio)
        assert z.shape == (2, 8, 12 * 256 // 8) and len(log_s) == len(log_det) == TINY.n_flows
        assert torch.allclose(model.infer(MEL, sigma=1.0, z=z), audio, atol=1e-5)  # early outputs included
    wav = WaveGlowVocoder(TINY).generate(MEL)
    assert wav.shape == (2, 12 * 256) and wav.dtype == torch.float32 and torch.isfinite(wav).all()


def test_release_layout_matches_default_config():
    with torch.device("meta"):
        ours = WaveGlow(WaveGlowConfig()).state_dict()
    rel = {}
    for k, v in ours.items():
        if k.endswith(".weight") and any(s in k for s in NORMED):
            rel[k[:-6] + "weight_g"] = torch.empty(v.shape[0], 1, 1, device="meta")
            rel[k[:-6] + "weight_v"] = v
        else:
            rel[k] = v
    assert {k: tuple(rel[k].shape) for k in RELEASE_KEYS} == RELEASE_KEYS
    assert len(rel) == 12 * (2 * 3 + 8 * 6 + 2 + 1) + 2  # (start, cond, 8 in, 8 res_skip) x (g, v, b), end, convinv
    folded = release_state_dict(rel)
    assert {k: v.shape for k, v in folded.items()} == {k: v.shape for k, v in ours.items()}
    assert config_from_state_dict(folded) == WaveGlowConfig()
    dle = {}  # per-row weight norm: splitting g, v and bias by rows gives the per-layer convs
    for k, v in rel.items():
        if ".cond_layer." in k:
            head, name = k.split(".cond_layer.")
            for i, part in enumerate(v.chunk(8)):
                dle[f"module.{head}.cond_layers.{i}.{name}"] = part
        else:
            dle[f"module.{k}"] = v
    assert {k: tuple(dle[k].shape) for k in DLE_KEYS} == DLE_KEYS
    assert {k: v.shape for k, v in release_state_dict(dle).items()} == {k: v.shape for k, v in ours.items()}


@pytest.mark.parametrize("layout", ["state_dict", "module_prefix", "deeplearningexamples"])
def test_loads_plain_release_checkpoints(layout, tmp_path):
    rel, eff = to_release(source_weights(), per_layer_cond=layout == "deeplearningexamples")
    path = tmp_path / "waveglow.pt"
    if layout == "state_dict":  # waveglow/inference.py: load_state_dict(state_dict) on glow.WaveGlow
        torch.save(rel, path)
    elif layout == "module_prefix":
        torch.save({f"module.{k}": v for k, v in rel.items()}, path)
    else:  # DeepLearningExamples train.py save_checkpoint, model under DistributedDataParallel
        config = {"n_mel_channels": 80, "n_flows": 4, "n_group": 8, "n_early_every": 2, "n_early_size": 2,
                  "WN_config": {"n_layers": 2, "kernel_size": 3, "n_channels": 8}}
        torch.save({"epoch": 3, "config": config, "state_dict": {f"module.{k}": v for k, v in rel.items()},
                    "random_rng_states_all": torch.zeros(1, 5056, dtype=torch.uint8), "optimizer": {}}, path)
    voc = WaveGlowVocoder.from_checkpoint(path)
    assert voc.config == TINY  # read off the shapes
    assert torch.allclose(voc.generate(MEL), vocoder_with(eff).generate(MEL), atol=1e-5)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_release_pickle_needs_trust_and_loads_with_it(fmt, release_pickles, tmp_path):
    paths, eff = release_pickles
    with pytest.raises(CheckpointError, match="trust-pickle"):
        WaveGlowVocoder.from_checkpoint(paths[fmt])
    assert "glow" not in sys.modules
    voc = WaveGlowVocoder.from_checkpoint(paths[fmt], trust_pickle=True)
    expected = vocoder_with(eff).generate(MEL)
    assert torch.allclose(voc.generate(MEL), expected, atol=1e-5)
    plain = resave_plain(paths[fmt], tmp_path / "plain.pt")
    torch.load(plain, weights_only=True)
    assert torch.equal(WaveGlowVocoder.from_checkpoint(plain).generate(MEL), voc.generate(MEL))


class SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class EvalPayload(SystemPayload):
    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


def dotted_payload(marker):
    """A hand-written pickle that names an allowed module but a dotted attribute path
    (``torch.serialization`` + ``os.system``): protocol 4 resolves it to os.system."""
    def s(x):
        return b"\x8c" + bytes([len(x)]) + x.encode() + b"\x94"
    call = b"\x93\x94" + s(f"touch {marker}") + b"\x85\x94R\x94."  # STACK_GLOBAL, arg tuple, REDUCE
    return b"\x80\x04" + s("torch.serialization") + s("os.system") + call


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("kind", ["os.system", "eval", "dotted"])
def test_malicious_pickle_refused_even_when_trusted(kind, tmp_path):
    import zipfile

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if kind == "dotted":  # a torch zip file whose data.pkl is replaced
        torch.save({"a": torch.zeros(1)}, tmp_path / "base.pt")
        with zipfile.ZipFile(tmp_path / "base.pt") as zin, zipfile.ZipFile(path, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item.filename)
                zout.writestr(item, dotted_payload(marker) if item.filename.endswith("data.pkl") else data)
    else:
        payload = SystemPayload(marker) if kind == "os.system" else EvalPayload(marker)
        torch.save({"model": payload, "iteration": 1}, path)
    for trust in (False, True):
        with pytest.raises(CheckpointError):
            WaveGlowVocoder.from_checkpoint(path, trust_pickle=trust)
    assert not marker.exists()


def test_glow_old_layout_refused(tmp_path):
    rel, _ = to_release(source_weights())
    rel["WN.0.res_layers.0.weight"] = rel["WN.0.skip_layers.0.weight"] = torch.zeros(8, 8, 1)
    torch.save(rel, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="glow_old"):
        WaveGlowVocoder.from_checkpoint(tmp_path / "old.pt")


def test_save_round_trip(tmp_path):
    voc = vocoder_with(source_weights(), dataclasses.replace(TINY, sigma=0.5))
    voc.save(tmp_path / "ours.pt")
    raw = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert raw["vocoder"] == "waveglow" and raw["avdd_config"]["sigma"] == 0.5
    back = WaveGlowVocoder.from_checkpoint(tmp_path / "ours.pt")
    assert back.config == voc.config and back.mel == voc.mel
    assert torch.equal(back.generate(MEL), voc.generate(MEL))
    assert not torch.allclose(back.generate(MEL), vocoder_with(source_weights()).generate(MEL))  # sigma kept


def test_tacotron2_mel_matches_librosa(sample_data):
    m = WaveGlowVocoder.default_mel
    assert (m.sample_rate, m.n_fft, m.hop_length, m.win, m.fmin, m.f_max) == (22050, 1024, 256, 1024, 0.0, 8000.0)
    y, sr = sf.read(sample_data / "speech/psphinx_numbers.wav", dtype="float32")
    y = librosa.resample(y[: 3 * sr], orig_sr=sr, target_sr=22050).astype(np.float32)
    # Tacotron2 TacotronSTFT: centred reflect-padded STFT magnitude, Slaney mel, ln(clamp(x, 1e-5))
    mag = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=256, win_length=1024, center=True,
                                         pad_mode="reflect", power=1.0, n_mels=80, fmin=0.0, fmax=8000.0)
    ref = np.log(np.maximum(mag, 1e-5))
    ours = m(torch.from_numpy(y)[None]).numpy()[0]
    assert ours.shape == ref.shape == (80, len(y) // 256 + 1)
    assert np.abs(ours - ref).max() < 1e-3


def test_no_checkpoint_and_copy_synthesis(sample_data):
    with pytest.raises(CheckpointError, match="--checkpoint"):
        load_vocoder("waveglow")
    y, sr = sf.read(sample_data / "speech/psphinx_goforward.wav", dtype="float32")
    clips = np.stack([y[: sr], y[sr: 2 * sr]])
    out = vocoder_with(source_weights()).copy_synthesize(clips, sr)
    assert out.shape == clips.shape and out.dtype == np.float32 and np.isfinite(out).all()


def test_resave_checkpoint_command(release_pickles, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main

    paths, _ = release_pickles
    src, dst = paths["zip"], tmp_path / "plain.pt"
    r = CliRunner().invoke(main, ["resave-checkpoint", "waveglow", str(src), str(dst)])
    assert r.exit_code == 2 and "--trust-pickle" in r.output and not dst.exists()
    r = CliRunner().invoke(main, ["resave-checkpoint", "waveglow", str(src), str(dst), "--trust-pickle"])
    assert r.exit_code == 0, r.output
    torch.load(dst, weights_only=True)
    a = WaveGlowVocoder.from_checkpoint(src, trust_pickle=True).generate(MEL)
    b = WaveGlowVocoder.from_checkpoint(dst).generate(MEL)
    assert torch.equal(a, b)
