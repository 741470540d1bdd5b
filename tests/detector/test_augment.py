import dataclasses
import itertools
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from detector import augment as A
from detector.augment import Augment, Corrupt, add_noise, gain, gaussian_noise, jpeg, video_compression
from detector.config import AugmentConfig

torch.set_num_threads(1)
NONE = {"noise_std": 0.0, "jpeg_quality": 0, "crf": -1}


@pytest.fixture(scope="module")
def face_clip(sample_data) -> torch.Tensor:
    """A 16-frame uint8 (F, 3, 128, 128) clip of a real face that drifts a pixel per frame."""
    img = Image.open(sample_data / "faces/skimage_astronaut.png").convert("RGB")
    face = np.asarray(img.crop((120, 10, 376, 266)).resize((144, 144), Image.BICUBIC))
    frames = np.stack([face[i // 2:i // 2 + 128, i:i + 128] for i in range(16)])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def clip(face_clip) -> torch.Tensor:
    """The face clip as float in [0, 1], centre 112 px."""
    return face_clip[:, :, 8:120, 8:120].float() / 255.0


@pytest.fixture(scope="module")
def speech(sample_data) -> np.ndarray:
    audio, sr = sf.read(sample_data / "speech/psphinx_numbers.wav", dtype="float32")
    assert sr == 16000 and audio.ndim == 1
    return audio[:3 * sr]


def psnr(a, b) -> float:
    return float(10 * torch.log10(1.0 / torch.mean((torch.as_tensor(a) - torch.as_tensor(b)) ** 2)))


def sample(face_clip, index, speech=None):
    s = {"video": face_clip, "index": index, "has_video": 1, "has_audio": 1, "video_fake": torch.tensor(0.0)}
    if speech is not None:
        s["audio"] = torch.from_numpy(speech)
    return s


def quiet(**kw) -> AugmentConfig:
    """Every random choice off, except those named."""
    off = {"p_gaussian_noise": 0.0, "p_jpeg": 0.0, "p_video_compression": 0.0, "p_flip": 0.0,
           "random_crop": False, "p_audio_gain": 0.0, "p_audio_noise": 0.0}
    return AugmentConfig(**{**off, **kw})


# --- corruptions ----------------------------------------------------------------------------------

def test_gaussian_noise_psnr_falls_with_std(clip):
    scores = []
    for std in (0.01, 0.03, 0.1):
        out = gaussian_noise(clip, std, np.random.default_rng(0))
        assert out.shape == clip.shape and out.dtype == torch.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        scores.append(psnr(out, clip))
    assert scores[0] == pytest.approx(40.0, abs=0.5)  # -20 log10(std), slightly above where clipped
    assert scores[0] > scores[1] > scores[2] > 19.0
    again = gaussian_noise(clip.numpy(), 0.03, np.random.default_rng(0))
    assert isinstance(again, np.ndarray) and np.array_equal(again, gaussian_noise(clip, 0.03, np.random.default_rng(0)).numpy())


def test_jpeg_psnr_falls_with_quality(clip):
    scores = [psnr(jpeg(clip, q), clip) for q in (95, 75, 50, 25, 10)]
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert 36 < scores[0] < 50 and 22 < scores[-1] < 32
    out = jpeg(clip, 50)
    assert out.shape == clip.shape and out.dtype == torch.float32
    with pytest.raises(ValueError, match="quality"):
        jpeg(clip, 0)


def test_jpeg_pil_fallback_is_identical(clip, monkeypatch):
    fast = jpeg(clip[:4], 40)
    monkeypatch.setattr(A, "encode_jpeg", None)
    assert torch.equal(jpeg(clip[:4], 40), fast)


def test_video_compression_psnr_falls_with_crf(clip):
    scores = [psnr(video_compression(clip, crf), clip) for crf in (18, 28, 38, 48)]
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    out = video_compression(clip, 23)
    assert out.shape == clip.shape and out.dtype == torch.float32
    assert not torch.equal(out, clip) and 30 < psnr(out, clip) < 45
    assert torch.equal(out, video_compression(clip, 23))  # single-threaded x264: deterministic


def test_video_compression_odd_size_and_numpy(clip):
    odd = clip[:5, :, :57, :43].numpy()
    out = video_compression(odd, 23)
    assert isinstance(out, np.ndarray) and out.shape == odd.shape and out.dtype == np.float32
    assert 28 < psnr(out, odd) < 50


def test_video_compression_two_process_fallback_matches(clip, monkeypatch):
    exe = A.ffmpeg_exe()
    one = video_compression(clip[:8], 30)
    monkeypatch.setitem(A._LOOPBACK, exe, False)
    assert torch.equal(video_compression(clip[:8], 30), one)


def test_ffmpeg_lookup_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AVDD_FFMPEG", str(tmp_path / "my-ffmpeg"))
    assert A.ffmpeg_exe() == str(tmp_path / "my-ffmpeg")
    monkeypatch.delenv("AVDD_FFMPEG")
    monkeypatch.setenv("PATH", str(tmp_path))
    import imageio_ffmpeg

    assert A.ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    (tmp_path / "ffmpeg").write_text("#!/bin/sh\n")
    (tmp_path / "ffmpeg").chmod(0o755)
    assert A.ffmpeg_exe() == str(tmp_path / "ffmpeg")


def test_audio_gain_scales(speech):
    for db, factor in ((6.0, 1.99526), (-20.0, 0.1), (0.0, 1.0)):
        np.testing.assert_allclose(gain(speech, db), speech * factor, rtol=1e-5)
    t = gain(torch.from_numpy(speech), -6.0)
    assert torch.is_tensor(t) and np.allclose(t.numpy(), speech * 0.501187, rtol=1e-5)


def test_audio_noise_hits_snr_and_keeps_silence(speech):
    rng = np.random.default_rng(1)
    for snr in (0.0, 10.0, 20.0, 35.0):
        noisy = add_noise(speech, snr, rng)
        noise = noisy - speech
        measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert measured == pytest.approx(snr, abs=0.5)
        assert noisy.dtype == np.float32 and noisy.shape == speech.shape
    silent = torch.zeros(16000)
    assert torch.equal(add_noise(silent, 20.0, rng), silent)


# --- Augment --------------------------------------------------------------------------------------

def test_eval_is_centre_crop_only(face_clip, speech):
    aug = Augment(AugmentConfig(), crop=112, train=False, seed=3)
    out = aug(sample(face_clip, 7, speech))
    assert out["video"].shape == (16, 3, 112, 112) and out["video"].dtype == torch.float32
    assert torch.equal(out["video"], face_clip[:, :, 8:120, 8:120].float() / 255.0)
    assert torch.equal(out["audio"], torch.from_numpy(speech))
    assert out["augment"] == {"flip": 0, "crop_y": 8, "crop_x": 8, **NONE, "gain_db": 0.0, "snr_db": math.inf,
                              **A.AUDIO_NONE}
    with pytest.raises(ValueError, match="smaller than"):
        Augment(AugmentConfig(), crop=160, train=False)(sample(face_clip, 0))


def test_resize_shows_a_small_model_the_whole_face(face_clip):
    """tiny models read 64 px: the 128 px crops are scaled to 72 first, so the centre 64 px hold
    what the centre 114 px of the stored crop hold (not a 64 px close-up of the nose)."""
    mouth = face_clip[:, :, 16:112, 16:112].contiguous()  # 96 px
    out = Augment(AugmentConfig(), crop=64, train=False, resize=72)({**sample(face_clip, 0), "mouth": mouth})
    assert out["video"].shape == (16, 3, 64, 64) and out["mouth"].shape == (16, 3, 48, 48)  # 96 -> 54, window 48
    ref = Image.fromarray(face_clip[3, :, 7:121, 7:121].permute(1, 2, 0).numpy()).resize((64, 64), Image.BILINEAR)
    got = out["video"][3].permute(1, 2, 0).numpy() * 255
    assert np.abs(got - np.asarray(ref, np.float32)).mean() < 4  # same content up to resampling
    close_up = face_clip[3, :, 32:96, 32:96].permute(1, 2, 0).float().numpy()
    assert np.abs(got - close_up).mean() > 15
    # a model config carries it; the default (0) keeps the stored size
    from detector import config as C

    assert Augment.for_model(C.tiny("video"), train=False).resize == 72
    assert Augment.for_model(C.base("video"), train=False).resize == 0


def test_train_crop_and_flip(face_clip):
    for index in range(6):
        out = Augment(quiet(random_crop=True, p_flip=0.5), crop=96, train=True)(sample(face_clip, index))
        plan, v = out["augment"], out["video"]
        assert v.shape == (16, 3, 96, 96) and plan.items() >= NONE.items()
        y, x = plan["crop_y"], plan["crop_x"]
        window = face_clip[:, :, y:y + 96, x:x + 96].float() / 255.0
        assert torch.equal(v, window.flip(-1) if plan["flip"] else window)
    flips = [Augment(quiet(p_flip=1.0), 112, True)(sample(face_clip, i))["video"] for i in range(2)]
    centre = face_clip[:, :, 8:120, 8:120].float() / 255.0
    assert torch.equal(flips[0], centre.flip(-1)) and torch.equal(flips[0][..., 0], centre[..., -1])
    assert not torch.equal(flips[0], centre)  # a real face is not mirror-symmetric


def test_mouth_gets_the_scaled_window(face_clip):
    mouth = face_clip[:, :, ::4, ::4].contiguous()  # 32 px, a quarter of the face
    s = {**sample(face_clip, 4), "mouth": mouth}
    out = Augment(quiet(random_crop=True, p_flip=1.0), crop=96, train=True)(s)
    y, x = out["augment"]["crop_y"], out["augment"]["crop_x"]
    my, mx = round(y / 32 * 8), round(x / 32 * 8)
    assert torch.equal(out["mouth"], (mouth[:, :, my:my + 24, mx:mx + 24].float() / 255.0).flip(-1))


def test_corruptions_applied_while_training(face_clip, speech):
    cfg = AugmentConfig(p_gaussian_noise=1.0, p_jpeg=1.0, p_video_compression=1.0, p_audio_gain=1.0, p_audio_noise=1.0)
    out = Augment(cfg, 112, True, seed=5)(sample(face_clip, 2, speech))
    plan = out["augment"]
    assert 0.01 <= plan["noise_std"] <= 0.05 and 30 <= plan["jpeg_quality"] <= 90 and 23 <= plan["crf"] <= 40
    assert -6 <= plan["gain_db"] <= 6 and 20 <= plan["snr_db"] <= 40
    y, x = plan["crop_y"], plan["crop_x"]
    window = face_clip[:, :, y:y + 112, x:x + 112].float() / 255.0
    window = window.flip(-1) if plan["flip"] else window
    assert 20 < psnr(out["video"], window) < 38
    scaled = speech * 10 ** (plan["gain_db"] / 20)
    noise = out["audio"].numpy() - scaled
    assert 10 * np.log10(np.mean(scaled ** 2) / np.mean(noise ** 2)) == pytest.approx(plan["snr_db"], abs=0.5)
    silent = {**sample(face_clip, 2), "audio": torch.zeros(16000), "has_audio": 0, "has_video": 0}
    out = Augment(cfg, 112, True, seed=5)(silent)
    assert torch.equal(out["audio"], torch.zeros(16000)) and out["augment"]["crf"] == -1


def test_same_seed_epoch_index_same_output(face_clip, speech):
    cfg = dataclasses.replace(AugmentConfig(), p_video_compression=0.0)

    def run(index, epoch=0, seed=0):
        a = Augment(cfg, 112, True, seed=seed)
        a.set_epoch(epoch)
        out = a(sample(face_clip, index, speech))
        return torch.cat([out["video"].flatten(), out["audio"]])

    base = run(3)
    assert torch.equal(base, run(3))
    for other in (run(4), run(3, epoch=1), run(3, seed=1)):
        assert not torch.equal(base, other)


class Clips(Dataset):
    def __init__(self, clip, transform):
        self.clip, self.transform = clip, transform

    def __len__(self):
        return 6

    def __getitem__(self, i):
        s = {"video": self.clip[:, :, i:i + 120, i:i + 120], "index": 10 + i, "audio": torch.ones(800) * 0.1 * (i + 1)}
        return self.transform(s)


def test_dataloader_workers_do_not_change_results(face_clip):
    cfg = AugmentConfig(p_video_compression=0.3)

    def epochs(workers):
        aug = Augment(cfg, 112, True, seed=11)
        loader = DataLoader(Clips(face_clip[:4], aug), batch_size=2, num_workers=workers,
                            persistent_workers=workers > 0)
        out = []
        for e in range(2):
            aug.set_epoch(e)
            out.append([batch for batch in loader])
        return out

    serial, parallel = epochs(0), epochs(2)
    for e in range(2):
        for a, b in zip(serial[e], parallel[e]):
            assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
            assert a["augment"]["crop_x"].shape == (2,) and torch.equal(a["augment"]["crf"], b["augment"]["crf"])
    assert not torch.equal(serial[0][0]["video"], serial[1][0]["video"])


# --- Corrupt --------------------------------------------------------------------------------------

def test_corrupt_protocol(clip, face_clip):
    with pytest.raises(ValueError, match="choose from"):
        Corrupt("blur", 0)
    every = Corrupt("all", seed=0, p=0.5)
    plans = [every.plan(i) for i in range(400)]
    for key, off in NONE.items():
        share = np.mean([p[key] != off for p in plans])
        assert 0.4 < share < 0.6, (key, share)
    only = [Corrupt("jpeg", seed=0).plan(i) for i in range(50)]
    assert all(p["noise_std"] == 0 and p["crf"] == -1 for p in only) and any(p["jpeg_quality"] for p in only)

    always = Corrupt("jpeg", seed=2, p=1.0)
    out = always(clip, index=9)
    assert torch.equal(out, always(clip, 9)) and torch.equal(out, jpeg(clip, always.plan(9)["jpeg_quality"]))
    with pytest.raises(ValueError, match="index"):
        always(clip)
    evaluated = Augment(AugmentConfig(), 112, train=False)(sample(face_clip, 9))
    corrupted = always(evaluated)
    assert torch.equal(corrupted["video"], out) and corrupted["corrupt"] == always.plan(9)
    assert torch.equal(Corrupt("all", 0, p=0.0)(clip, 3), clip)


# --- anti-spoofing audio augmentations, on real speech --------------------------------------------

def _band_db(x, lo, hi, sr=16000) -> float:
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return 10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-20)


def _corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def test_reverb_smears_speech_in_time_and_keeps_length_and_level(speech):
    wet = A.reverb(speech, 0.6, np.random.default_rng(0))
    assert wet.shape == speech.shape and wet.dtype == np.float32
    assert A._rms(wet) == pytest.approx(A._rms(speech), rel=1e-4)
    assert 0.2 < _corr(wet, speech) < 0.95
    # the room's response to a click falls by 60 dB in rt60: the slope of its energy envelope
    click = np.zeros(16000, np.float32)
    click[100] = 1.0
    ir = A.reverb(click, 0.5, np.random.default_rng(0), direct_db=0.0).astype(np.float64)
    env = 10 * np.log10(np.square(ir[200:6600]).reshape(-1, 160).mean(1) + 1e-30)  # 10 ms frames from 6 ms to 0.41 s
    slope = np.polyfit(np.arange(len(env)) * 0.01, env, 1)[0]
    assert slope == pytest.approx(-60 / 0.5, rel=0.2)
    assert np.array_equal(A.reverb(speech, 0.6, np.random.default_rng(0)), wet)  # seeded


def test_rawboost_each_kind_changes_speech_keeps_length_and_peak(speech):
    peak = np.abs(speech).max()
    outs = {}
    for kind in ("lnl", "isd", "ssi"):
        y = A.rawboost(speech, np.random.default_rng(3), kinds=(kind,))
        assert y.shape == speech.shape and np.abs(y).max() == pytest.approx(peak, rel=1e-4)
        outs[kind] = y
        assert not np.allclose(y, speech)
    # impulsive noise touches few samples; coloured noise at >= 10 dB SNR keeps the speech
    y, x = outs["isd"].astype(np.float64), speech.astype(np.float64)
    scale = np.median(y[np.abs(x) > 1e-3] / x[np.abs(x) > 1e-3])  # the renormalisation to the peak
    assert 0.0 < np.mean(np.abs(y - scale * x) > 1e-5) < 0.15
    assert _corr(outs["ssi"], speech) > 0.9
    assert np.array_equal(A.rawboost(speech, np.random.default_rng(3)), A.rawboost(speech, np.random.default_rng(3)))


@pytest.mark.parametrize("name", ["mp3", "aac", "opus"])
def test_codecs_round_trip_real_speech_aligned_and_same_length(speech, name):
    y = A.codec(speech, name, 32)
    assert y.shape == speech.shape and y.dtype == np.float32
    assert not np.allclose(y, speech, atol=1e-4)
    assert _corr(y, speech) > 0.8  # aligned: the codec's delay is taken out


def test_band_limit_removes_the_band_above_the_cutoff(speech):
    y = A.band_limit(speech, 3400.0)
    assert y.shape == speech.shape
    assert _band_db(y, 4000, 8000) < _band_db(speech, 4000, 8000) - 30
    assert abs(_band_db(y, 100, 3000) - _band_db(speech, 100, 3000)) < 0.5


def test_augment_applies_the_new_audio_augmentations_seeded(face_clip, speech):
    cfg = quiet(p_reverb=1.0, p_rawboost=1.0, p_codec=1.0, p_band_limit=1.0, codecs=("mp3",),
                band_limit_hz=(3400.0, 4000.0))  # a band where the speech has energy to remove
    aug = Augment(cfg, crop=112, train=True, seed=5)
    a, b = aug(sample(face_clip, 7, speech)), aug(sample(face_clip, 7, speech))
    plan = a["augment"]
    assert plan["rt60"] > 0 and plan["rawboost_seed"] >= 0 and plan["codec"] == "mp3" and plan["cutoff_hz"] >= 3400
    assert torch.equal(a["audio"], b["audio"]) and a["audio"].shape == (len(speech),)
    assert _band_db(a["audio"].numpy(), plan["cutoff_hz"] + 600, 8000) < _band_db(speech, plan["cutoff_hz"] + 600, 8000) - 20
    other = aug(sample(face_clip, 8, speech))
    assert not torch.equal(other["audio"], a["audio"])
    # evaluation, and a sample without audio, get none of them
    ev = Augment(cfg, crop=112, train=False, seed=5)(sample(face_clip, 7, speech))
    assert torch.equal(ev["audio"], torch.from_numpy(speech)) and ev["augment"]["codec"] == ""


def test_uint8_resize_matches_the_float_path(face_clip):
    """The fast uint8 resampling of the tiny models' crops gives what resampling through float
    gives, within one grey level."""
    aug = Augment(AugmentConfig(), crop=64, train=False, resize=72)
    fast = aug._resized({"video": face_clip})["video"]
    slow = aug._resized({"video": face_clip.float()})["video"]
    assert fast.dtype == torch.uint8 and fast.shape == (16, 3, 72, 72) and fast.is_contiguous()
    assert int((fast.int() - slow.int()).abs().max()) <= 1


def test_augmentation_statistics_follow_the_config():
    """Over many samples, each augmentation is applied with its probability and its parameter
    covers its whole range, evenly: what any faster input pipeline must keep."""
    cfg, n = AugmentConfig(), 4000
    aug = Augment(cfg, crop=64, train=True, seed=11, resize=72)
    video = torch.zeros((1, 3, 72, 72), dtype=torch.uint8)
    plans = [aug._plan(A._streams(A._AUGMENT_TAG, 11, 0, i)[0], {"video": video, "index": i}) for i in range(n)]
    col = {k: np.array([p[k] for p in plans], dtype=np.float64) for k in plans[0] if k != "codec"}
    tol = 4 * math.sqrt(0.25 / n)  # four standard deviations of a binomial fraction at p = 0.5
    applied = {"flip": col["flip"] == 1, "noise": col["noise_std"] > 0, "jpeg": col["jpeg_quality"] > 0,
               "h264": col["crf"] >= 0, "gain": col["gain_db"] != 0, "snr": np.isfinite(col["snr_db"])}
    probs = {"flip": cfg.p_flip, "noise": cfg.p_gaussian_noise, "jpeg": cfg.p_jpeg, "h264": cfg.p_video_compression,
             "gain": cfg.p_audio_gain, "snr": cfg.p_audio_noise}
    for k, on in applied.items():
        assert abs(on.mean() - probs[k]) < tol, (k, on.mean())
    # independent of each other: both applied about p^2 of the time
    assert abs((applied["jpeg"] & applied["h264"]).mean() - cfg.p_jpeg * cfg.p_video_compression) < tol
    for key, on, (lo, hi), integer in (("noise_std", "noise", cfg.noise_std, False),
                                       ("jpeg_quality", "jpeg", cfg.jpeg_quality, True),
                                       ("crf", "h264", cfg.video_crf, True), ("gain_db", "gain", cfg.audio_gain_db, False),
                                       ("snr_db", "snr", cfg.audio_snr_db, False)):
        v = col[key][applied[on]]
        assert v.min() >= lo and v.max() <= hi, key
        width = hi - lo
        assert v.mean() == pytest.approx((lo + hi) / 2, abs=0.03 * width), key  # uniform: centred
        if integer:
            assert set(np.unique(v).astype(int)) == set(range(int(lo), int(hi) + 1)), key  # every value drawn
        else:
            assert v.min() < lo + 0.01 * width and v.max() > hi - 0.01 * width, key
    counts = np.bincount(col["crop_y"].astype(int), minlength=9)  # windows of 64 in 72: offsets 0..8
    assert len(counts) == 9 and counts.min() > 0.7 * n / 9
