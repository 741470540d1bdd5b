"""WaveNet vocoder (r9y9 wavenet_vocoder): training step, shapes, incremental == naive generation,
release checkpoint layouts, round trip, lws mel front-end, copy synthesis mechanics."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from pipeline.vocoders import load_vocoder
from pipeline.vocoders.checkpoint import CheckpointError
from pipeline.vocoders.wavenet import LWS_MEL, LwsMelSpec, WaveNet, WaveNetConfig, WaveNetVocoder, nll_loss

TINY = WaveNetConfig.tiny()
# dilations 1..32 in one stack: receptive field 127, so 3 frames (768 steps) wrap every ring many times
DEEP = dataclasses.replace(TINY, layers=6, stacks=1)
# v0.2 layout: ConvInUpsampleNetwork with 2 context frames, single Gaussian output
V02 = dataclasses.replace(TINY, upsample_net="ConvInUpsampleNetwork", cin_pad=2, freq_axis_kernel_size=1,
                          legacy=False, output_distribution="Normal", out_channels=2, log_scale_min=-9.0)
MULAW = dataclasses.replace(TINY, input_type="mulaw-quantize", quantize_channels=32, out_channels=32)

# Exact keys and shapes of the LJSpeech release (20180510_mixture_lj_checkpoint_step000320000_ema.pth),
# from r9y9 wavenet_vocoder wavenet.py / modules.py at git 2092a64 (weight_norm(dim=0) on every conv).
LJ_RELEASE_KEYS = {
    "first_conv.weight_g": (512, 1, 1), "first_conv.weight_v": (512, 1, 1), "first_conv.bias": (512,),
    "conv_layers.0.conv.weight_g": (512, 1, 1), "conv_layers.0.conv.weight_v": (512, 512, 3),
    "conv_layers.0.conv.bias": (512,), "conv_layers.0.conv1x1c.weight_v": (512, 80, 1),
    "conv_layers.23.conv1x1_out.weight_v": (512, 256, 1), "conv_layers.23.conv1x1_skip.weight_v": (256, 256, 1),
    "conv_layers.23.conv1x1_skip.bias": (256,), "last_conv_layers.1.weight_v": (256, 256, 1),
    "last_conv_layers.3.weight_g": (30, 1, 1), "last_conv_layers.3.weight_v": (30, 256, 1),
    "last_conv_layers.3.bias": (30,), "upsample_conv.0.weight_g": (1, 1, 1, 1),
    "upsample_conv.0.weight_v": (1, 1, 3, 4), "upsample_conv.6.bias": (1,),
}
# v0.2 (wavenet_vocoder/upsample.py): ConvInUpsampleNetwork, here with cin_pad 2 and freq kernel 1
V02_KEYS = {"upsample_net.conv_in.weight": (80, 80, 5), "upsample_net.upsample.up_layers.1.weight_g": (1, 1, 1, 1),
            "upsample_net.upsample.up_layers.1.weight_v": (1, 1, 1, 9),
            "upsample_net.upsample.up_layers.7.weight_v": (1, 1, 1, 9),
            "last_conv_layers.3.weight_v": (2, 8, 1)}


def _randomize(module, std=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.data = torch.randn(p.shape, generator=g) * std
    return module


def _tiny_vocoder(cfg=TINY, seed=0):
    voc = WaveNetVocoder(cfg)
    _randomize(voc.model, seed=seed)
    return voc


@pytest.mark.parametrize("cfg", [TINY, V02, MULAW], ids=["mol", "v02-normal", "mulaw-quantize"])
def test_trainable(cfg):
    torch.manual_seed(0)
    net = WaveNet(cfg).train()
    wav = torch.rand(2, 512) * 1.6 - 0.8
    target = (wav + 1) / 2 * (cfg.quantize_channels - 1) if cfg.input_type == "mulaw-quantize" else wav
    x = (torch.nn.functional.one_hot(target.round().long(), cfg.out_channels).transpose(1, 2).float()
         if cfg.input_type == "mulaw-quantize" else wav.unsqueeze(1))
    y_hat = net(x, torch.rand(2, 80, 2))
    assert y_hat.shape == (2, cfg.out_channels, 512)
    loss = nll_loss(cfg, y_hat[:, :, :-1], target.round()[:, 1:] if cfg.input_type == "mulaw-quantize" else wav[:, 1:])
    assert torch.isfinite(loss)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    loss.backward()
    # as in the release, the last layer's residual output is discarded: only its skip output is used
    unused = {k for k, p in net.named_parameters() if p.grad is None}
    assert unused == {f"conv_layers.{cfg.layers - 1}.conv1x1_out.{n}" for n in ("weight", "bias")}
    assert all(torch.isfinite(p.grad).all() for k, p in net.named_parameters() if k not in unused)
    opt.step()
    assert all(not torch.equal(before[k], p) for k, p in net.named_parameters() if k not in unused)


@pytest.mark.parametrize("cfg", [TINY, V02], ids=["v01", "v02-cin-pad"])
def test_output_length_is_frames_times_hop(cfg):
    voc = _tiny_vocoder(cfg)
    for incremental in (True, False):
        y = voc.generate(torch.rand(2, 80, 3), incremental=incremental, seed=0)
        assert y.shape == (2, 3 * 256) and y.dtype == torch.float32
        assert torch.isfinite(y).all() and y.abs().max() <= 1
    assert voc.model.upsample(torch.rand(2, 80, 5)).shape == (2, 80, 5 * 256)


@pytest.mark.parametrize("cfg", [TINY, DEEP, V02, MULAW], ids=["mol", "deep", "v02-normal", "mulaw"])
def test_incremental_and_naive_generation_give_the_same_samples(cfg):
    voc = _tiny_vocoder(cfg, seed=1)
    mel = torch.rand(2, 80, 3)
    fast = voc.generate(mel, incremental=True, seed=7)
    naive = voc.generate(mel, incremental=False, seed=7)
    assert (fast - naive).abs().max() < 1e-4  # float32: same draws, rounding only
    assert fast.std(1).min() > 1e-3 and not torch.equal(fast[0], fast[1])  # a batch of two real signals
    assert (voc.generate(mel, incremental=True, seed=8) - fast).abs().max() > 1e-2  # the seed matters
    torch.manual_seed(3)
    again = voc.generate(mel)
    torch.manual_seed(3)
    assert torch.equal(voc.generate(mel), again)  # seed=None follows torch.manual_seed
    voc.model.double()  # in float64 the two algorithms agree to rounding of 1e-16
    d = voc.generate(mel.double(), incremental=True, seed=7) - voc.generate(mel.double(), incremental=False, seed=7)
    assert d.abs().max() < 1e-9


def _weight_normed_state_dict(net):
    """The state_dict the release's modules hold: every conv weight-normed (dim=0), except v0.2 conv_in."""
    wn = _randomize(WaveNet(net.cfg), seed=5)
    for name, m in list(wn.named_modules()):
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and "conv_in" not in name:
            torch.nn.utils.weight_norm(m)
            m.weight_g.data.uniform_(0.5, 1.5)
    return wn, {k: v.detach().clone() for k, v in wn.state_dict().items()}


def test_release_key_layout_for_the_lj_preset():
    with torch.device("meta"):
        plain = WaveNet(WaveNetConfig()).state_dict()
    expected = {}
    for k, v in plain.items():
        if k.endswith(".weight") and "conv_in" not in k:
            expected[k[:-7] + ".weight_v"] = tuple(v.shape)
            expected[k[:-7] + ".weight_g"] = (v.shape[0],) + (1,) * (v.dim() - 1)
        else:
            expected[k] = tuple(v.shape)
    assert {k: expected.get(k) for k in LJ_RELEASE_KEYS} == LJ_RELEASE_KEYS
    assert len([k for k in plain if k.startswith("conv_layers.") and k.endswith("conv.weight")]) == 24
    assert WaveNetConfig().receptive_field() == 505


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # the release's (old) weight_norm names
@pytest.mark.parametrize("layout", ["v01-json", "v01-module-prefix-no-json", "v02-json"])
def test_loads_release_checkpoints(tmp_path, layout):
    cfg = {"v01-json": TINY, "v02-json": V02}.get(layout, dataclasses.replace(TINY, layers=8, stacks=4))
    wn, sd = _weight_normed_state_dict(WaveNet(cfg))
    if layout == "v02-json":
        assert {k: tuple(sd[k].shape) for k in V02_KEYS} == V02_KEYS
    if "module" in layout:
        sd = {f"module.{k}": v for k, v in sd.items()}
    path = tmp_path / "checkpoint_step000320000_ema.pth"
    # train.py save_checkpoint; written in the pre-1.6 (torch 0.4 era) serialization
    torch.save({"state_dict": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
                "global_step": 320000, "global_epoch": 77, "global_test_step": 0}, path,
               _use_new_zipfile_serialization=False)
    if "json" in layout and "no-json" not in layout:  # the hparams json the release ships beside the .pth
        hp = {"name": "wavenet_vocoder", "input_type": "raw", "quantize_channels": 65536, "sample_rate": 22050,
              "num_mels": 80, "fmin": 125, "fmax": 7600, "fft_size": 1024, "hop_size": 256, "min_level_db": -100,
              "ref_level_db": 20, "layers": cfg.layers, "stacks": cfg.stacks, "log_scale_min": cfg.log_scale_min,
              "out_channels": cfg.out_channels, "rescaling": True, "rescaling_max": 0.999}
        if layout == "v02-json":
            hp.update(output_distribution="Normal", cin_pad=2, upsample_net="ConvInUpsampleNetwork",
                      upsample_params={"upsample_scales": [4, 4, 4, 4]}, win_length=1024, rescaling=False)
        path.with_suffix(".json").write_text(json.dumps(hp))
    voc = WaveNetVocoder.from_checkpoint(path)
    assert voc.config == cfg if layout != "v02-json" else dataclasses.replace(cfg, rescaling=False) == voc.config
    assert isinstance(voc.mel, LwsMelSpec) == (layout != "v02-json")
    if layout == "v02-json":
        assert (voc.mel.padding, voc.mel.compression, voc.mel.fmin) == ("center", "log10", 125.0)
    wn.eval()
    x, mel = torch.rand(2, 1, 1024) * 2 - 1, torch.rand(2, 80, 4)
    with torch.no_grad():
        assert torch.allclose(voc.model(x, mel), wn(x, mel), atol=1e-5)
    assert voc.checkpoint == str(path) and len(voc.checkpoint_hash) == 16


def test_foreign_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"generator.conv.weight": torch.zeros(2, 2, 1)}}, path)
    with pytest.raises(CheckpointError, match="r9y9 WaveNet"):
        WaveNetVocoder.from_checkpoint(path)


def test_save_round_trip(tmp_path):
    voc = _tiny_vocoder(V02)
    path = tmp_path / "wavenet.pt"
    voc.save(path)
    raw = torch.load(path, weights_only=True)
    assert raw["vocoder"] == "wavenet" and raw["avdd_config"]["upsample_net"] == "ConvInUpsampleNetwork"
    back = WaveNetVocoder.from_checkpoint(path)
    mel = torch.rand(1, 80, 2)
    assert back.config == voc.config and back.mel == voc.mel
    assert torch.equal(back.generate(mel, seed=3), voc.generate(mel, seed=3))
    lws = _tiny_vocoder()
    lws.save(path)
    assert isinstance(WaveNetVocoder.from_checkpoint(path).mel, LwsMelSpec)


def _speech(sample_data, name="psphinx_goforward.wav"):
    import soundfile as sf

    return sf.read(sample_data / "speech" / name, dtype="float32")


def _lws_reference(y: np.ndarray) -> np.ndarray:
    """r9y9 audio.melspectrogram, with lws.lws(1024, 256, mode="speech").stft written out in numpy /
    librosa: zero-pad n_fft - hop on the left, frames every hop, window sqrt(hann_sym * 2 hop / n_fft)."""
    import librosa

    n_fft, hop = 1024, 256
    pad = n_fft - hop
    frames = (len(y) + 2 * pad - n_fft) // hop + (1 if len(y) % hop == 0 else 2)  # audio.lws_num_frames
    x = np.concatenate([np.zeros(pad), y, np.zeros((frames - 1) * hop + n_fft - len(y) - pad)])
    hann_sym = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, 2 * n_fft, 2) / (2 * n_fft)))
    spec = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window=np.sqrt(hann_sym * 2 * hop / n_fft),
                               center=False))
    fb = librosa.filters.mel(sr=22050, n_fft=n_fft, n_mels=80, fmin=125, fmax=7600)
    s = 20 * np.log10(np.maximum(1e-5, fb @ spec)) - 20
    return np.clip((s + 100) / 100, 0, 1)


def test_lws_mel_matches_reference_on_real_speech(sample_data):
    import torchaudio.functional as AF

    wav, sr = _speech(sample_data)
    y = AF.resample(torch.from_numpy(wav)[None], sr, 22050)[0].double().numpy()
    y = y / np.abs(y).max() * 0.999
    voc = WaveNetVocoder(TINY)
    for n in (len(y), len(y) // 256 * 256):  # a partial last hop, and whole hops
        ref = _lws_reference(y[:n])
        ours = voc.features(torch.from_numpy(y[:n]).float()[None])[0].numpy()
        assert ours.shape == ref.shape == (80, LWS_MEL.n_frames(n))
        assert np.abs(ours - ref).max() < 1e-3
    assert 0.2 < ref.mean() < 0.9  # real speech, not clipped to a constant


def test_needs_checkpoint_and_copy_synthesis_keeps_length(sample_data):
    with pytest.raises(CheckpointError, match="checkpoint"):
        load_vocoder("wavenet")
    wav, sr = _speech(sample_data)
    clips = np.stack([wav[8000:10400], wav[16000:18400]])  # 2 x 0.15 s at 16 kHz
    voc = _tiny_vocoder()
    torch.manual_seed(0)
    out = voc.copy_synthesize(clips, sr)
    assert out.shape == clips.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert out.std() > 0
    # features see the peak-normalised clip (rescaling_max 0.999); the gain is undone on the output
    torch.manual_seed(0)
    quiet = voc.copy_synthesize(clips * 0.1, sr)
    assert np.allclose(quiet, out * 0.1, atol=1e-5)
