"""WaveRNN: model, fused recurrence, folding, both releases' checkpoints, mel convention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.vocoders import load_vocoder
from pipeline.vocoders.checkpoint import CheckpointError
from pipeline.vocoders.wavernn import (
    WaveRNN,
    WaveRNNConfig,
    WaveRNNVocoder,
    crossfade,
    decode,
    fold_with_overlap,
    recurrence,
    xfade_and_unfold,
)

# fatchord WaveRNN, models/fatchord_version.py with hparams.py (master: voc_mode 'MOL'), as saved by
# WaveRNN.save (torch.save(self.state_dict())): key -> shape for the default config.
FATCHORD_KEYS = {
    "upsample.resnet.conv_in.weight": (128, 80, 5),
    "upsample.resnet.batch_norm.running_var": (128,),
    "upsample.resnet.layers.0.conv1.weight": (128, 128, 1),
    "upsample.resnet.layers.9.batch_norm2.weight": (128,),
    "upsample.resnet.conv_out.bias": (128,),
    "upsample.up_layers.1.weight": (1, 1, 1, 11),
    "upsample.up_layers.5.weight": (1, 1, 1, 23),
    "I.weight": (512, 113),
    "rnn1.weight_hh_l0": (1536, 512),
    "rnn2.weight_ih_l0": (1536, 544),
    "fc1.weight": (512, 544),
    "fc2.weight": (512, 544),
    "fc3.weight": (30, 512),
    "step": (1,),
}
# torchaudio models/wavernn.py with the WAVERNN_10K_EPOCHS_8BITS_LJSPEECH parameters
# (pipelines/_tts/utils.py::_get_wrnn_params), as downloaded by the bundle (a bare state_dict).
TORCHAUDIO_KEYS = {
    "upsample.resnet.melresnet_model.0.weight": (128, 80, 5),
    "upsample.resnet.melresnet_model.1.running_mean": (128,),
    "upsample.resnet.melresnet_model.3.resblock_model.0.weight": (128, 128, 1),
    "upsample.resnet.melresnet_model.12.resblock_model.4.running_var": (128,),
    "upsample.resnet.melresnet_model.13.weight": (128, 128, 1),
    "upsample.resnet.melresnet_model.13.bias": (128,),
    "upsample.upsample_layers.3.weight": (1, 1, 1, 11),
    "upsample.upsample_layers.5.weight": (1, 1, 1, 23),
    "fc.weight": (512, 113),
    "rnn2.weight_ih_l0": (1536, 544),
    "fc3.weight": (256, 512),
}
TORCHAUDIO_BUNDLE = {"upsample_scales": [5, 5, 11], "n_classes": 256, "hop_length": 275, "n_res_block": 10,
                     "n_rnn": 512, "n_fc": 512, "kernel_size": 5, "n_freq": 80, "n_hidden": 128, "n_output": 128}


def randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def teacher_forced(model, frames=2, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    mels = torch.rand(batch, model.I.in_features - model.aux_dims - 1, frames + 2 * model.pad, generator=g)
    x = torch.rand(batch, frames * 275, generator=g) * 2 - 1
    with torch.no_grad():
        return model.eval()(x, mels)


def test_default_config_is_the_release():
    c = WaveRNNConfig()
    assert (c.rnn_dims, c.fc_dims, c.compute_dims, c.res_out_dims, c.res_blocks) == (512, 512, 128, 128, 10)
    assert (c.upsample_factors, c.hop_length, c.pad, c.bits, c.mode, c.mu_law) == ((5, 5, 11), 275, 2, 9, "MOL", True)
    assert (c.target, c.overlap, c.sample_rate) == (11000, 550, 22050)


def test_trainable_tiny():
    torch.manual_seed(0)
    model = WaveRNN(WaveRNNConfig.tiny()).train()
    mels, x = torch.rand(2, 80, 3 + 4), torch.rand(2, 3 * 275) * 2 - 1
    target = torch.randint(0, 512, (2, 3 * 275))
    logits = model(x, mels)
    assert logits.shape == (2, 3 * 275, 512)
    loss = F.cross_entropy(logits.transpose(1, 2), target)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.named_parameters()}
    loss.backward()
    opt.step()
    assert all(p.grad is not None for p in model.parameters())
    assert all(not torch.equal(before[k], v) for k, v in model.named_parameters())
    assert model.step.item() == 1


@pytest.mark.parametrize("mode", ["RAW", "MOL"])
def test_fused_recurrence_matches_teacher_forcing(mode):
    """The fused sample-by-sample step computes what the GRU layers compute."""
    torch.manual_seed(0)
    cfg = WaveRNNConfig.tiny()
    cfg.mode = mode
    model = randomize_bn(WaveRNN(cfg)).eval()
    mel = torch.rand(2, 80, 3)
    m, aux = model.condition(mel)
    y, logits = recurrence(model, m, aux, chunk_elems=3000, return_logits=True)  # several chunks
    assert y.shape == (2, 3 * 275)
    x = 2 * y.float() / 511 - 1 if mode == "RAW" else y
    assert x.abs().max() <= 1
    x_prev = torch.cat([torch.zeros(2, 1), x[:, :-1]], 1)
    with torch.no_grad():
        ref = model(x_prev, F.pad(mel, (2, 2)))
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["RAW", "MOL"])
def test_recurrence_half_precision_path(mode):
    """The float16 path (taken on CUDA) keeps its dtypes consistent; run here on CPU."""
    cfg = WaveRNNConfig.tiny()
    cfg.mode = mode
    model = WaveRNN(cfg).eval()
    m, aux = model.condition(torch.rand(1, 80, 1))
    y, logits = recurrence(model, m.half(), aux.half(), return_logits=True)
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()
    assert y.dtype == (torch.long if mode == "RAW" else torch.float16) and decode(y, cfg).abs().max() <= 1


@pytest.mark.parametrize("mode", ["RAW", "MOL"])
def test_generate_shapes_folded_and_unfolded(mode):
    cfg = WaveRNNConfig.tiny()
    cfg.mode = mode
    voc = WaveRNNVocoder(cfg)
    mel = torch.rand(2, 80, 4)
    for folded in (True, False):
        y = voc.generate(mel, folded=folded, target=300, overlap=50)  # 4 folds per utterance
        assert y.shape == (2, 4 * 275) and y.dtype == torch.float32
        # equal-power cross-fade gains sum to at most sqrt(2) (fatchord's window)
        assert torch.isfinite(y).all() and y.abs().max() <= (math.sqrt(2) + 1e-6 if folded else 1)


def test_fold_matches_fatchord_example():
    """fatchord fold_with_overlap docstring: target=2, overlap=1, 10 steps -> [h1..h4], [h4..h7], [h7..h10]."""
    x = torch.arange(1, 11, dtype=torch.float32).view(1, 10, 1)
    folds = fold_with_overlap(x, target=2, overlap=1)
    assert folds[0, :, :, 0].tolist() == [[1, 2, 3, 4], [4, 5, 6, 7], [7, 8, 9, 10]]
    padded = fold_with_overlap(x[:, :9], target=2, overlap=1)  # 9 steps: last fold zero-padded
    assert padded[0, -1, :, 0].tolist() == [7, 8, 9, 0]


def test_fold_xfade_round_trip_known_signal():
    t = torch.arange(5000, dtype=torch.float64)
    sig = (torch.sin(2 * math.pi * t / 97) + t / 5000).view(1, -1).repeat(2, 1)
    sig[1] *= -0.5
    target, overlap = 600, 80
    folds = fold_with_overlap(sig.unsqueeze(-1), target, overlap)[..., 0]
    assert folds.shape == (2, math.ceil((5000 - overlap) / (target + overlap)), target + 2 * overlap)
    rec = xfade_and_unfold(folds, overlap, "linear")[:, :5000]
    torch.testing.assert_close(rec, sig, atol=1e-12, rtol=0)
    # fatchord's equal-power fade: exact outside the fading halves, and the powers sum to one
    rec = xfade_and_unfold(folds, overlap, "equal_power")[:, :5000]
    step = target + overlap
    exact = torch.ones(5000, dtype=torch.bool)
    for start in range(step, 5000, step):
        exact[start + overlap // 2:start + overlap] = False
    torch.testing.assert_close(rec[:, exact], sig[:, exact], atol=1e-12, rtol=0)
    assert not torch.allclose(rec, sig)
    fin, fout = crossfade(overlap, "equal_power", torch.float64)
    torch.testing.assert_close(fin[overlap // 2:] ** 2 + fout[overlap // 2:] ** 2, torch.ones(overlap - overlap // 2,
                               dtype=torch.float64))


def test_decode_raw_mu_law():
    cfg = WaveRNNConfig(mode="RAW", bits=9)
    labels = torch.tensor([[0, 255, 511]])
    y = decode(labels, cfg)
    mu = 511
    lin = 2 * labels.double() / mu - 1
    expected = torch.sign(lin) / mu * ((1 + mu) ** lin.abs() - 1)  # fatchord dsp.decode_mu_law
    torch.testing.assert_close(y, expected.float())
    assert y[0, 0] == -1 and y[0, 2] == 1
    cfg.mu_law = False
    torch.testing.assert_close(decode(labels, cfg), lin.float())


@pytest.mark.parametrize("mode,n_out", [("MOL", 30), ("RAW", 512)])
def test_load_fatchord_checkpoint(tmp_path, mode, n_out):
    torch.manual_seed(0)
    src = randomize_bn(WaveRNN(WaveRNNConfig(mode=mode)))
    sd = src.state_dict()
    for k, shape in {**FATCHORD_KEYS, "fc3.weight": (n_out, 512)}.items():
        assert tuple(sd[k].shape) == shape, k
    assert len(sd) == 148
    path = tmp_path / "latest_weights.pyt"
    torch.save(sd, path)  # fatchord WaveRNN.save
    voc = WaveRNNVocoder.from_checkpoint(path)
    assert voc.config.mode == mode and voc.config.bits == 9 and voc.config.upsample_factors == (5, 5, 11)
    assert torch.equal(teacher_forced(voc.model), teacher_forced(src))


def _torchaudio_wavernn(**params):
    models = pytest.importorskip("torchaudio.models")
    torch.manual_seed(0)
    return randomize_bn(models.WaveRNN(**params)).eval()


def test_load_torchaudio_bundle_checkpoint(tmp_path):
    ta = _torchaudio_wavernn(**TORCHAUDIO_BUNDLE)
    sd = ta.state_dict()
    for k, shape in TORCHAUDIO_KEYS.items():
        assert tuple(sd[k].shape) == shape, k
    path = tmp_path / "wavernn_10k_epochs_8bits_ljspeech.pth"
    torch.save(sd, path)  # the bundle's file: load_state_dict_from_url -> model.load_state_dict
    voc = WaveRNNVocoder.from_checkpoint(path)
    assert (voc.config.mode, voc.config.bits, voc.config.mu_law) == ("RAW", 8, True)
    mels, x = torch.rand(1, 80, 6), torch.rand(1, 2 * 275) * 2 - 1
    with torch.no_grad():
        ref = ta(x.view(1, 1, -1), mels.unsqueeze(1))[:, 0]
        torch.testing.assert_close(voc.model(x, mels), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(voc.model.condition(mels[..., 2:-2])[1],
                                   ta.upsample(F.pad(mels[..., 2:-2], (2, 2)))[1].transpose(1, 2))


def test_load_torchaudio_training_checkpoint(tmp_path):
    """examples/pipeline_wavernn/main.py: DataParallel model, {"epoch", "state_dict", "best_loss", "optimizer"}."""
    ta = _torchaudio_wavernn(upsample_scales=[5, 5, 11], n_classes=512, hop_length=275, n_res_block=2, n_rnn=32,
                             n_fc=32, kernel_size=5, n_freq=80, n_hidden=16, n_output=16)
    opt = torch.optim.Adam(ta.parameters())
    ta(torch.rand(1, 1, 275), torch.rand(1, 1, 80, 5)).sum().backward()
    opt.step()
    ta.eval()
    state = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ta.state_dict().items()}, "best_loss": 1.5,
             "optimizer": opt.state_dict()}
    torch.save(state, tmp_path / "checkpoint.pth.tar")
    voc = WaveRNNVocoder.from_checkpoint(tmp_path / "checkpoint.pth.tar")
    assert (voc.config.rnn_dims, voc.config.res_blocks, voc.config.res_out_dims, voc.config.bits) == (32, 2, 16, 9)
    mels, x = torch.rand(1, 80, 6), torch.rand(1, 2 * 275) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(voc.model(x, mels), ta(x.view(1, 1, -1), mels.unsqueeze(1))[:, 0])


def test_unknown_layout_is_rejected(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="fatchord"):
        WaveRNNVocoder.from_checkpoint(tmp_path / "x.pt")


def test_save_round_trip(tmp_path):
    torch.manual_seed(0)
    voc = WaveRNNVocoder(WaveRNNConfig.tiny())
    randomize_bn(voc.model)
    voc.save(tmp_path / "w.pt")
    assert "state_dict" in torch.load(tmp_path / "w.pt", weights_only=True)
    again = WaveRNNVocoder.from_checkpoint(tmp_path / "w.pt")
    assert again.config == voc.config and again.mel == voc.mel
    assert torch.equal(teacher_forced(again.model), teacher_forced(voc.model))
    mel = torch.rand(1, 80, 3)
    torch.manual_seed(5)
    a = voc.generate(mel)
    torch.manual_seed(5)
    assert torch.equal(again.generate(mel), a)


def _speech(sample_data, seconds):
    sf = pytest.importorskip("soundfile")
    x, sr = sf.read(sample_data / "speech/psphinx_numbers.wav", dtype="float32")
    assert sr == 16000
    return x[4000:4000 + int(seconds * sr)], sr


def test_mel_convention_matches_librosa_and_torchaudio(sample_data):
    librosa = pytest.importorskip("librosa")
    import torchaudio

    x, sr = _speech(sample_data, 1.5)
    y = torchaudio.functional.resample(torch.from_numpy(x), sr, 22050).numpy()
    mel = WaveRNNVocoder.default_mel
    ours = mel(torch.from_numpy(y)[None].float())[0].numpy()
    # fatchord utils/dsp.py::melspectrogram (librosa 0.7: stft pad_mode reflect, mel norm slaney)
    spec = np.abs(librosa.stft(y, n_fft=2048, hop_length=275, win_length=1100, center=True, pad_mode="reflect"))
    s = librosa.feature.melspectrogram(S=spec, sr=22050, n_fft=2048, n_mels=80, fmin=40)
    ref = np.clip((20 * np.log10(np.maximum(1e-5, s)) + 100) / 100, 0, 1)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-3
    # torchaudio examples/pipeline_wavernn: MelSpectrogram(slaney) + NormalizeDB(-100)
    ta = torchaudio.transforms.MelSpectrogram(22050, n_fft=2048, win_length=1100, hop_length=275, f_min=40.0,
                                              n_mels=80, power=1, mel_scale="slaney", norm="slaney")
    t = ta(torch.from_numpy(y))
    t = torch.clamp((-100 - 20 * torch.log10(torch.clamp(t, min=1e-5))) / -100, 0, 1).numpy()
    assert np.abs(ours - t).max() < 1e-3
    assert ref.std() > 0.05  # real speech, not silence


def test_load_vocoder_needs_checkpoint():
    with pytest.raises(CheckpointError, match="wavernn"):
        load_vocoder("wavernn")


def test_copy_synthesize_keeps_length(sample_data):
    x, sr = _speech(sample_data, 0.4)
    voc = WaveRNNVocoder(WaveRNNConfig.tiny())
    out = voc.copy_synthesize(np.stack([x, x[::-1].copy()]), sr)
    assert out.shape == (2, len(x)) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.abs(out).max() > 0
