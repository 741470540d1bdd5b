"""The detector's networks: trainable tests per model, shapes, attention weights, the log-mel
front-end against the shards' cached mel, and the masked loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.builder import MODELS, build_model, model_class
from detector.config import ModelConfig, base, from_dict, tiny
from detector.losses import compute_loss
from detector.models.audio import MelFrontend, SpecAugment
from detector.models.sync import align
from tests.conftest import torch_threads

FRAMES, CROP, SAMPLES = 16, 64, 10240  # tiny clips: 16 frames at 25 fps = 0.64 s of 16 kHz audio
OUTPUTS = {"av": ("video", "audio", "sync"), "av-noatt": ("video", "audio", "sync"), "video": ("video",),
           "audio": ("audio",)}


one_thread = torch_threads(1)


def make_batch(b: int = 2, frames: int = FRAMES, crop: int = CROP, samples: int = SAMPLES, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.rand(b, frames, 3, crop, crop, generator=g),
            "audio": 0.1 * torch.randn(b, samples, generator=g),
            "video_fake": torch.tensor([0.0, 1.0] * (b // 2) + [1.0] * (b % 2)),
            "audio_fake": torch.tensor([1.0, 0.0] * (b // 2) + [0.0] * (b % 2)),
            "sequence_fake": torch.ones(b),
            "has_video": torch.ones(b, dtype=torch.long), "has_audio": torch.ones(b, dtype=torch.long)}


def build(name: str):
    torch.manual_seed(0)
    cfg = tiny(name).model
    return build_model(cfg), cfg


def test_registry_lists_the_valid_names_and_the_classes_declare_their_outputs():
    assert list(MODELS) == [*OUTPUTS, "mouth", "lfcc-lr", "lfcc-gmm"]
    with pytest.raises(ValueError, match="valid models: av, av-noatt, video, audio, mouth"):
        build_model(ModelConfig(name="transformer"))
    with pytest.raises(ValueError, match="Unknown model 'transformer'; valid models: av, av-noatt"):
        from_dict({"model": {"name": "transformer"}})
    for name, outputs in OUTPUTS.items():
        cls = model_class(name)
        assert cls.outputs == outputs and cls.main_output in outputs and cls.modes[0] in (*outputs, "two_stream")
        assert set(cls.modalities) == set(outputs) - {"sync"}
    mouth = model_class("mouth")
    assert mouth.modalities == ("mouth",) and mouth.outputs == mouth.modes == ("video",)
    with pytest.raises(ValueError, match="av-noatt"):
        cfg = tiny("av").model
        cfg.sync.attention = False
        build_model(cfg)
    # "av-noatt" switches attention off even when a hand-made config leaves it on
    cfg = tiny("av").model
    cfg.name = "av-noatt"
    assert not build_model(cfg).sync.attention


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_trainable(name):
    model, cfg = build(name)
    model.train()
    batch = make_batch()
    out = model(batch)
    total, parts = compute_loss(out, batch, cfg.loss_weights)
    assert set(parts) == set(OUTPUTS[name])
    assert torch.isfinite(total) and total.ndim == 0
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    for stream in {"av": ("video", "audio", "sync"), "av-noatt": ("video", "audio", "sync")}.get(name, (name,)):
        assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith(stream + ".")), stream
    if name.startswith("av"):  # the sync loss alone reaches both streams' stems
        model.zero_grad()
        model(batch)["logit_sync"].sum().backward()
        for stream in ("video", "audio"):
            stem = [p.grad for n, p in model.named_parameters() if n.startswith(f"{stream}.stem")]
            assert all(g is not None and g.abs().sum() > 0 for g in stem), stream
        out = model(batch)
        total, _ = compute_loss(out, batch, cfg.loss_weights)
        model.zero_grad()
        total.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before), f"unchanged: {sorted(set(before) - set(changed))[:5]}"


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_tiny_shapes(name):
    model, cfg = build(name)
    model.eval()
    with torch.inference_mode():
        out = model(make_batch())
    for m in OUTPUTS[name]:
        assert out[f"logit_{m}"].shape == (2,) and out[f"p_{m}"].shape == (2,)
        assert ((out[f"p_{m}"] > 0) & (out[f"p_{m}"] < 1)).all()
    f = out["features"]
    if "video" in OUTPUTS[name]:  # stem /2 spatially, stages (1, 2, 2, 2) spatially and (1, 1, 2, 2) in time
        assert [tuple(f[f"video.stage{i}"].shape) for i in range(1, 5)] == [
            (2, 8, 16, 32, 32), (2, 16, 16, 16, 16), (2, 32, 8, 8, 8), (2, 64, 4, 4, 4)]
    if "audio" in OUTPUTS[name] and name != "audio":  # 65 mel frames, each stage halves frequency and time
        assert f["audio.mel"].shape == (2, 80, SAMPLES // 160 + 1)
        assert [tuple(f[f"audio.stage{i}"].shape) for i in range(1, 5)] == [
            (2, 8, 40, 33), (2, 16, 20, 17), (2, 32, 10, 9), (2, 64, 5, 5)]
    if name == "audio":  # the audio model's default front-end: 60 LFCC rows (20 with deltas)
        assert cfg.audio.frontend == "lfcc" and f["audio.mel"].shape == (2, 60, SAMPLES // 160 + 1)
        assert [tuple(f[f"audio.stage{i}"].shape) for i in range(1, 5)] == [
            (2, 8, 30, 33), (2, 16, 15, 17), (2, 32, 8, 9), (2, 64, 4, 5)]
    if name.startswith("av"):
        assert f["sync.video"].shape == f["sync.audio"].shape == (2, cfg.sync.steps, cfg.sync.dim)


def test_base_shapes():
    torch.manual_seed(0)
    model = build_model(base("av").model).eval()
    with torch.inference_mode():  # batch 1, 16 frames of 112 x 112 and 0.64 s of audio
        out = model(make_batch(b=1, frames=16, crop=112, samples=10240))
    f = out["features"]
    assert [tuple(f[f"video.stage{i}"].shape) for i in range(1, 5)] == [
        (1, 64, 16, 56, 56), (1, 128, 16, 28, 28), (1, 256, 8, 14, 14), (1, 512, 4, 7, 7)]
    assert [tuple(f[f"audio.stage{i}"].shape) for i in range(1, 5)] == [
        (1, 64, 40, 33), (1, 128, 20, 17), (1, 256, 10, 9), (1, 512, 5, 5)]
    assert f["sync.video"].shape == (1, 8, 256)
    assert len(out["attention"]) == 4 * 2
    assert all(w.shape == (1, 4, 8, 8) for w in out["attention"].values())
    assert all(out[f"p_{m}"].shape == (1,) for m in ("video", "audio", "sync"))


def test_attention_weights():
    model, cfg = build("av")
    model.eval()
    with torch.inference_mode():
        att = model(make_batch())["attention"]
    directions = ("video_self", "audio_self", "video_audio", "audio_video")
    assert set(att) == {f"layer{r}.{d}" for r in range(cfg.sync.layers) for d in directions}
    for w in att.values():
        assert w.shape == (2, cfg.sync.heads, cfg.sync.steps, cfg.sync.steps)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    # rows still sum to 1 with attention dropout in training: the returned weights are pre-dropout
    model.train()
    for w in model(make_batch())["attention"].values():
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    for name in ("av-noatt", "video", "audio"):
        with torch.inference_mode():
            assert build(name)[0].eval()(make_batch())["attention"] == {}


def test_uint8_video_equals_float():
    model, _ = build("video")
    model.eval()
    batch = make_batch()
    video8 = (batch["video"] * 255).round().to(torch.uint8)
    with torch.inference_mode():
        a = model({"video": video8})["logit_video"]
        b = model({"video": video8.float() / 255})["logit_video"]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"\(B, F, 3, H, W\)"):
        model({"video": batch["video"][0]})


def test_mel_frontend_equals_shards_log_mel(sample_data):
    import soundfile as sf

    from pipeline.shards import log_mel

    wave, sr = sf.read(sample_data / "speech/psphinx_numbers.wav", dtype="float32")
    assert sr == 16000 and wave.ndim == 1
    wave = wave[: 3 * 16000]
    expected = log_mel(wave[None])
    got = MelFrontend(tiny().model.audio)(torch.from_numpy(wave)[None]).numpy()
    assert got.shape == expected.shape == (1, 80, len(wave) // 160 + 1)
    # two implementations of one definition (torchaudio here, the pipeline's MelSpec there: the
    # detector does not import the pipeline); float32 rounding of the filterbanks, far below the
    # float16 the shards cache it in
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert got.max() > 0 and got.min() < -5  # speech and near-silence: a real spectrogram


def test_spec_augment_only_in_training():
    torch.manual_seed(0)
    aug = SpecAugment(freq_masks=2, freq_width=8, time_masks=2, time_fraction=0.2)
    x = torch.randn(4, 80, 65)
    assert torch.equal(aug.eval()(x), x)
    y = aug.train()(x)
    masked = y == 0
    assert masked.any() and masked.float().mean() < 0.5
    assert torch.equal(y[~masked], x[~masked])


def test_align():
    x = torch.arange(16.0).view(1, 1, 16)
    torch.testing.assert_close(align(x, 4), torch.tensor([[[1.5, 5.5, 9.5, 13.5]]]))
    assert align(torch.ones(2, 3, 5), 8).shape == (2, 3, 8)


def test_loss_masks_missing_modalities():
    torch.manual_seed(0)
    outputs = {"logit_video": torch.tensor([2.0, -1.0, 0.5]), "logit_audio": torch.tensor([0.3, 1.5, -2.0]),
               "logit_sync": torch.tensor([1.0, -1.0, 0.0])}
    batch = {"video_fake": torch.tensor([1.0, 0.0, 1.0]), "audio_fake": torch.tensor([0.0, 1.0, 1.0]),
             "sequence_fake": torch.tensor([1.0, 1.0, 1.0]),
             "has_video": torch.tensor([1, 0, 1]), "has_audio": torch.tensor([0, 1, 1])}

    def bce(z, y):
        return -(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))

    want_video = (bce(2.0, 1) + bce(0.5, 1)) / 2  # sample 1 has no video
    want_audio = (bce(1.5, 1) + bce(-2.0, 1)) / 2  # sample 0 has no audio
    want_sync = (bce(1.0, 1) + bce(-1.0, 1) + bce(0.0, 1)) / 3
    total, parts = compute_loss(outputs, batch, {"video": 1.0, "audio": 0.5, "sync": 2.0})
    assert parts == pytest.approx({"video": want_video, "audio": want_audio, "sync": want_sync}, rel=1e-5)
    assert float(total) == pytest.approx(want_video + 0.5 * want_audio + 2.0 * want_sync, rel=1e-5)
    # changing a masked-out sample's logit or label changes nothing
    outputs2 = {**outputs, "logit_video": torch.tensor([2.0, 9.0, 0.5])}
    batch2 = {**batch, "audio_fake": torch.tensor([1.0, 1.0, 1.0])}
    assert compute_loss(outputs2, batch2, {})[1] == pytest.approx(parts, rel=1e-6)
    # no sample with the modality: the part is 0 and still differentiable
    logit = torch.tensor([0.7, -0.2], requires_grad=True)
    total, parts = compute_loss({"logit_audio": logit},
                                {"audio_fake": torch.ones(2), "has_audio": torch.zeros(2)}, {})
    total.backward()
    assert parts == {"audio": 0.0} and torch.equal(logit.grad, torch.zeros(2))
    with pytest.raises(ValueError, match="Unknown loss weight"):
        compute_loss(outputs, batch, {"mouth": 1.0})


FRONTEND_BANDS = {"logmel": 80, "lfcc": 60, "linear": 257, "sinc": 70}


def _audio_model(frontend: str):
    torch.manual_seed(0)
    cfg = from_dict({"model": {"audio": {"frontend": frontend}}}, preset="tiny", model="audio").model
    return build_model(cfg), cfg


@pytest.mark.parametrize("frontend", list(FRONTEND_BANDS))
def test_audio_frontends_are_trainable_and_keep_100_frames_per_second(frontend):
    model, cfg = _audio_model(frontend)
    model.train()
    batch = make_batch()
    out = model(batch)
    assert out["features"]["audio.mel"].shape == (2, FRONTEND_BANDS[frontend], SAMPLES // 160 + 1)
    total, _ = compute_loss(out, batch, cfg.loss_weights)
    assert torch.isfinite(total)
    total.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, unchanged[:5]
    if frontend == "sinc":  # the filterbank itself learns
        assert {"audio.frontend.low_hz", "audio.frontend.band_hz"} <= set(before)


def test_frontends_put_a_tone_in_its_band():
    """A 3 kHz tone: the linear spectrogram peaks in bin 3000 / 31.25 = 96; the sinc filter whose
    band holds 3 kHz responds most; a gain moves only the LFCC's c0 (the log's offset)."""
    t = torch.arange(16000) / 16000
    hiss = 1e-3 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))  # every band above the log's floor
    tone = 0.1 * torch.sin(2 * torch.pi * 3000 * t)[None] + hiss
    _, cfg = _audio_model("linear")
    from detector.models.audio import LfccFrontend, LinearFrontend, SincFrontend

    lin = LinearFrontend(cfg.audio)(tone)[0, :, 10:-10].mean(dim=1)
    assert int(lin.argmax()) == 96
    sinc = SincFrontend(cfg.audio)
    low = (sinc.MIN_HZ + sinc.low_hz.abs()).squeeze(1)
    high = low + sinc.MIN_BAND_HZ + sinc.band_hz.abs().squeeze(1)
    holds = torch.nonzero((low <= 3000) & (high >= 3000)).flatten()
    response = sinc(tone)[0, :, 10:-10].mean(dim=1)
    assert int(response.argmax()) in holds.tolist()
    # the cepstra of a 3 kHz and a 300 Hz tone differ; of the tone and itself 6 dB louder, only in c0
    lfcc = LfccFrontend(cfg.audio)
    a, louder = lfcc(tone)[0, :20, 10:-10].mean(1), lfcc(2 * tone)[0, :20, 10:-10].mean(1)
    low_tone = lfcc(0.1 * torch.sin(2 * torch.pi * 300 * t)[None] + hiss)[0, :20, 10:-10].mean(1)
    assert (a - low_tone)[1:].abs().max() > 1.0 and (a - louder)[1:].abs().max() < 0.05 * (a - louder)[0].abs()


def test_lfcc_logistic_regression_is_trainable():
    torch.manual_seed(0)
    cfg = tiny("lfcc-lr").model
    model = build_model(cfg).train()
    batch = make_batch(b=4)
    out = model(batch)
    assert out["logit_audio"].shape == (4,) and out["features"]["audio.mel"].shape == (4, 60, SAMPLES // 160 + 1)
    total, parts = compute_loss(out, batch, cfg.loss_weights)
    assert set(parts) == {"audio"} and torch.isfinite(total)
    total.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.AdamW(model.parameters(), lr=1e-2).step()
    assert sorted(n for n, p in model.named_parameters() if not torch.equal(p, before[n])) == ["linear.bias",
                                                                                              "linear.weight"]
    one = model({"audio": batch["audio"][:1]})  # an epoch's last batch may hold one clip
    assert torch.isfinite(one["logit_audio"]).all()


def test_lfcc_gmm_likelihood_matches_a_direct_computation():
    """The expanded quadratic form equals the mixture density evaluated term by term."""
    torch.manual_seed(0)
    cfg = tiny("lfcc-gmm").model
    cfg.baseline.gmm_components = 3
    model = build_model(cfg)
    d = 3 * cfg.audio.n_lfcc
    model.real_mean.copy_(torch.randn(3, d))
    model.real_log_var.copy_(0.3 * torch.randn(3, d))
    model.real_log_weight.copy_(torch.log_softmax(torch.randn(3), 0))
    x = torch.randn(5, d)
    direct = torch.logsumexp(torch.stack([
        model.real_log_weight[k] + torch.distributions.Normal(model.real_mean[k], torch.exp(0.5 * model.real_log_var[k]))
        .log_prob(x).sum(-1) for k in range(3)]), dim=0)
    torch.testing.assert_close(model.log_likelihood(x, "real"), direct, rtol=1e-4, atol=1e-3)
