"""Training augmentations and the robustness corruptions of the detector's inputs.

Corruptions (deterministic given their parameters and a ``numpy.random.Generator``; each takes and
returns a torch tensor or a numpy array, whichever it was given):

- video, float (F, 3, H, W) in [0, 1]: :func:`gaussian_noise`, :func:`jpeg` (every frame
  re-encoded), :func:`video_compression` (the clip through H.264 with ffmpeg);
- audio, float (L,): :func:`gain`, :func:`add_noise` (white noise at an SNR).

:class:`Augment` is the Dataset transform (uint8 crops -> float, random crop/flip and corruptions
while training, centre crop in evaluation); :class:`Corrupt` applies the robustness protocol's
corruptions (each with probability p) to evaluation inputs. Both draw their randomness from
(seed, [epoch,] sample index) only, so results do not depend on DataLoader workers.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import warnings

import numpy as np
import torch
from PIL import Image

try:  # deprecated in torchvision 0.29 (moving to torchcodec) but twice as fast as PIL, same bytes
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg
except ImportError:  # pragma: no cover - a torchvision without them
    encode_jpeg = decode_jpeg = ImageReadMode = None

from detector.config import AugmentConfig

VIDEO_CORRUPTIONS = ("gaussian_noise", "jpeg", "video_compression")  # also the order they are applied in
_AUGMENT_TAG, _CORRUPT_TAG = 0xA06, 0xC022  # keep Augment's and Corrupt's random streams apart


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$AVDD_FFMPEG``, else ``ffmpeg`` on PATH, else imageio-ffmpeg's.

    The same rule as ``pipeline.media.ffmpeg_exe``, kept apart on purpose: the detector never
    imports the pipeline (DESIGN.md), so both sides find the same binary without sharing code."""
    env = os.environ.get("AVDD_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _like(a: np.ndarray, x):
    """``a`` as the kind (tensor or array) of ``x``."""
    return torch.from_numpy(np.ascontiguousarray(a)) if torch.is_tensor(x) else a


def _check_video(video, name: str) -> None:
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"{name}: expected a video (F, 3, H, W), found shape {tuple(video.shape)}")


def _to_uint8(video: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)


# --- video corruptions --------------------------------------------------------------------------

def gaussian_noise(video, std: float, rng: np.random.Generator):
    """``video`` (F, 3, H, W) float in [0, 1] plus N(0, std^2) noise per value, clipped to [0, 1]."""
    _check_video(video, "gaussian_noise")
    v = _numpy(video).astype(np.float32, copy=False)
    noisy = v + rng.standard_normal(v.shape, dtype=np.float32) * np.float32(std)
    return _like(np.clip(noisy, 0.0, 1.0), video)


def jpeg(video, quality: int):
    """Every frame of ``video`` (F, 3, H, W) float in [0, 1] JPEG-encoded at ``quality`` (1-100)
    and decoded (libjpeg through torchvision, else PIL; 4:2:0 chroma); float32, same shape."""
    _check_video(video, "jpeg")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, found {quality}")
    frames = _to_uint8(_numpy(video))
    if encode_jpeg is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            coded = encode_jpeg(list(torch.from_numpy(frames)), quality=int(quality))
            decoded = torch.stack(decode_jpeg(coded, mode=ImageReadMode.RGB)).numpy()
    else:
        decoded = np.stack([_pil_jpeg(f, int(quality)) for f in frames])
    return _like(decoded.astype(np.float32) / 255.0, video)


def _pil_jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    """One (3, H, W) uint8 frame through JPEG with PIL (libjpeg, 4:2:0 like torchvision)."""
    buf = io.BytesIO()
    Image.fromarray(frame.transpose(1, 2, 0)).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)


_LOOPBACK: dict[str, bool] = {}  # ffmpeg binary -> whether it has loopback decoders (-dec, ffmpeg >= 7)


def video_compression(video, crf: int, fps: float = 25.0, preset: str = "medium"):
    """``video`` (F, 3, H, W) float in [0, 1] encoded as H.264 (libx264, yuv420p, constant rate
    factor ``crf``, 0-51) and decoded back; float32, same shape. Odd sizes are edge-padded to even
    for the encoder and cropped back. One single-threaded ffmpeg process (two on ffmpeg < 7)."""
    _check_video(video, "video_compression")
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"H.264 CRF must be in 0..51, found {crf}")
    frames = _to_uint8(_numpy(video)).transpose(0, 2, 3, 1)  # (F, H, W, 3)
    n, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    exe = ffmpeg_exe()
    src = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{frames.shape[2]}x{frames.shape[1]}", "-r", str(fps),
           "-i", "pipe:0"]
    enc = ["-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-threads", "1"]
    raw = ["-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]
    data = np.ascontiguousarray(frames).tobytes()
    out = None
    if _LOOPBACK.get(exe, True):
        loop = [exe, "-v", "error", "-threads", "1", *src, "-map", "0:v", *enc, "-f", "null", "-",
                "-dec", "0:0", "-filter_complex", "[dec:0]null[out]", "-map", "[out]", *raw]
        r = subprocess.run(loop, input=data, capture_output=True, check=False)
        _LOOPBACK[exe] = r.returncode == 0 or _LOOPBACK.get(exe, False)
        if r.returncode == 0:
            out = r.stdout
        elif _LOOPBACK[exe]:
            raise RuntimeError(f"ffmpeg ({exe}) failed to compress a {n}x{h}x{w} clip: {r.stderr.decode()[-500:]}")
    if out is None:  # ffmpeg without loopback decoders: encode, then decode
        bitstream = _ffmpeg([exe, "-v", "error", *src, *enc, "-f", "h264", "pipe:1"], data)
        out = _ffmpeg([exe, "-v", "error", "-threads", "1", "-f", "h264", "-i", "pipe:0", *raw], bitstream)
    got = np.frombuffer(out, np.uint8)
    if got.size != frames.size:
        raise RuntimeError(f"ffmpeg returned {got.size} bytes for a {frames.shape} clip, expected {frames.size}")
    got = got.reshape(frames.shape)[:, :h, :w].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return _like(got, video)


def _ffmpeg(cmd: list[str], data: bytes) -> bytes:
    r = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({' '.join(cmd[:3])} ...): {r.stderr.decode()[-500:]}")
    return r.stdout


# --- audio corruptions --------------------------------------------------------------------------

def gain(audio, db: float):
    """``audio`` scaled by ``db`` decibels (factor 10^(db/20)); not clipped."""
    return audio * (10.0 ** (db / 20.0))


def add_noise(audio, snr_db: float, rng: np.random.Generator):
    """``audio`` (any shape) plus white Gaussian noise whose power is exactly the clip's mean power
    divided by 10^(snr_db/10). A silent clip (zero power) is returned unchanged."""
    a = _numpy(audio).astype(np.float32, copy=False)
    power = float(np.mean(np.square(a, dtype=np.float64))) if a.size else 0.0
    if power == 0.0:
        return _like(a.copy(), audio)
    noise = rng.standard_normal(a.shape)
    noise *= math.sqrt(power / 10.0 ** (snr_db / 10.0) / np.mean(np.square(noise)))
    return _like((a + noise).astype(np.float32), audio)


AUDIO_AUGMENTATIONS = ("reverb", "rawboost", "codec", "band_limit")  # also the order they are applied in
CODECS = {"mp3": ("libmp3lame", "mp3"), "aac": ("aac", "adts"), "opus": ("libopus", "ogg")}


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` cut or zero-padded to ``n`` samples."""
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))) if a.size else 0.0


def reverb(audio, rt60: float, rng: np.random.Generator, sample_rate: int = 16000, direct_db: float = 0.0):
    """``audio`` (L,) in a synthetic room: convolved with an impulse response of a direct path
    plus exponentially decaying Gaussian noise (the late reverberation of a diffuse field) that
    falls by 60 dB in ``rt60`` seconds, its energy ``direct_db`` below the direct path's; the
    result is scaled back to the clip's RMS and keeps its length."""
    a = _numpy(audio).astype(np.float64, copy=False)
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60)  # -60 dB at rt60
    tail[0] = 0.0
    tail *= 10.0 ** (-direct_db / 20.0) / max(np.sqrt(np.sum(tail**2)), 1e-12)
    ir = tail
    ir[0] = 1.0
    wet = np.fft.irfft(np.fft.rfft(a, len(a) + n) * np.fft.rfft(ir, len(a) + n), len(a) + n)[: len(a)]
    before, after = _rms(a), _rms(wet)
    if after > 0:
        wet *= before / after
    return _like(wet.astype(np.float32), audio)


def _random_fir(rng: np.random.Generator, bands: int, taps: int, sample_rate: int) -> np.ndarray:
    """A random linear-phase FIR filter: ``bands`` notch-free pass-bands of random centres and
    widths (windowed-sinc band-passes summed), the filterbank of RawBoost's convolutive noise."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.zeros(taps)
    for _ in range(bands):
        centre = rng.uniform(20.0, sample_rate / 2 - 1000.0)
        width = rng.uniform(100.0, 1000.0)
        lo, hi = max(centre - width / 2, 1.0) / sample_rate, min(centre + width / 2, sample_rate / 2 - 1) / sample_rate
        h += 2 * hi * np.sinc(2 * hi * n) - 2 * lo * np.sinc(2 * lo * n)
    h *= np.hamming(taps)
    return h / max(np.abs(np.fft.rfft(h, 1024)).max(), 1e-12)


def rawboost(audio, rng: np.random.Generator, sample_rate: int = 16000, kinds: tuple[str, ...] = ("lnl", "isd", "ssi"),
             snr_db: tuple[float, float] = (10.0, 40.0)):
    """RawBoost-style data boosting (Tak et al., ICASSP 2022) of ``audio`` (L,), in this order:

    - ``lnl``: linear and non-linear convolutive noise: the clip's first three powers (x, x^2, x^3,
      each normalised to the clip's peak), each through a random multi-band FIR filter, summed
      with decreasing weights (a channel's colouring and its harmonic distortion);
    - ``isd``: impulsive signal-dependent noise: a random 1-10 % of the samples get
      ``x + x * z`` with z uniform in [-1, 1] x a random scale up to 2 (clicks, clipping);
    - ``ssi``: stationary signal-independent coloured noise: white noise through a random FIR
      filter, added at an SNR drawn from ``snr_db``.

    Peak-normalised back to the clip's peak; keeps the length."""
    a = _numpy(audio).astype(np.float64, copy=False)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak == 0.0:
        return _like(a.astype(np.float32), audio)
    x = a / peak
    if "lnl" in kinds:
        out = np.zeros_like(x)
        for j in range(1, 4):
            xj = x**j
            xj /= max(np.abs(xj).max(), 1e-12)
            out += np.convolve(xj, _random_fir(rng, int(rng.integers(1, 6)), 101, sample_rate), mode="same") / j
        x = out / max(np.abs(out).max(), 1e-12)
    if "isd" in kinds:
        hit = rng.random(len(x)) < rng.uniform(0.01, 0.10)
        x = x + hit * x * rng.uniform(-1.0, 1.0, len(x)) * rng.uniform(0.5, 2.0)
    if "ssi" in kinds:
        noise = np.convolve(rng.standard_normal(len(x)), _random_fir(rng, int(rng.integers(1, 6)), 101, sample_rate),
                            mode="same")
        snr = rng.uniform(*snr_db)
        noise *= _rms(x) / max(_rms(noise), 1e-12) / 10.0 ** (snr / 20.0)
        x = x + noise
    x *= peak / max(np.abs(x).max(), 1e-12)
    return _like(x.astype(np.float32), audio)


def codec(audio, name: str, bitrate_kbps: int, sample_rate: int = 16000):
    """``audio`` (L,) encoded with ``name`` (mp3, aac or opus, through ffmpeg) at ``bitrate_kbps``
    and decoded back to ``sample_rate``; the codec's delay is removed by aligning the decoded
    signal to the original (cross-correlation over the first 50 ms), the length kept."""
    if name not in CODECS:
        raise ValueError(f"Unknown codec {name!r}; choose from {', '.join(CODECS)}")
    a = _numpy(audio).astype(np.float32, copy=False)
    lib, fmt = CODECS[name]
    rate = 48000 if name == "opus" else sample_rate  # opus runs at 48 kHz
    encoded = _ffmpeg([ffmpeg_exe(), "-v", "error", "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
                       "-ar", str(rate), "-c:a", lib, "-b:a", f"{bitrate_kbps}k", "-f", fmt, "pipe:1"], a.tobytes())
    decoded = _ffmpeg([ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-ar", str(sample_rate), "-ac", "1", "-f", "f32le",
                       "pipe:1"], encoded)
    y = np.frombuffer(decoded, np.float32)
    max_lag = min(len(y) - 1, int(0.05 * sample_rate) + 2048) if len(y) else 0
    head = a[: min(len(a), sample_rate)]
    if max_lag > 0 and _rms(head) > 0:
        n = 1 << int(np.ceil(np.log2(len(y) + len(head))))
        corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(head, n)), n)[:max_lag]  # sum_t y[t+k] head[t]
        y = y[int(np.argmax(corr)):]
    return _like(_fit_length(y, len(a)).astype(np.float32), audio)


def band_limit(audio, cutoff_hz: float, sample_rate: int = 16000, transition_hz: float = 300.0):
    """``audio`` (L,) low-passed at ``cutoff_hz`` (a telephone's or a low-rate recording's band):
    a zero-phase filter in the frequency domain, flat to ``cutoff_hz - transition_hz / 2``, zero
    from ``cutoff_hz + transition_hz / 2``, a raised-cosine roll-off between; length kept."""
    a = _numpy(audio).astype(np.float64, copy=False)
    if cutoff_hz >= sample_rate / 2 or not a.size:
        return _like(a.astype(np.float32), audio)
    n = len(a) + 1024  # padded: the filter's ringing does not wrap around
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    x = np.clip((f - (cutoff_hz - transition_hz / 2)) / transition_hz, 0.0, 1.0)
    gain_ = 0.5 * (1 + np.cos(np.pi * x))
    y = np.fft.irfft(np.fft.rfft(a, n) * gain_, n)[: len(a)]
    return _like(y.astype(np.float32), audio)


def _draw_audio(rng: np.random.Generator, cfg: AugmentConfig) -> dict:
    """Parameters of the audio augmentations for one sample (empty / 0: not applied); every value
    is drawn whatever is applied."""
    u = rng.random(len(AUDIO_AUGMENTATIONS))
    rt60 = float(rng.uniform(*cfg.reverb_rt60))
    direct = float(rng.uniform(*cfg.reverb_direct_db))
    boost = int(rng.integers(0, 2**31 - 1))
    names = list(cfg.codecs) or list(CODECS)
    name = names[int(rng.integers(0, len(names)))]
    kbps = int(rng.integers(cfg.codec_kbps[0], cfg.codec_kbps[1] + 1))
    cutoff = float(rng.uniform(*cfg.band_limit_hz))
    on = dict(zip(AUDIO_AUGMENTATIONS, (u < np.array([cfg.p_reverb, cfg.p_rawboost, cfg.p_codec, cfg.p_band_limit]))))
    return {"rt60": rt60 if on["reverb"] else 0.0, "direct_db": direct if on["reverb"] else 0.0,
            "rawboost_seed": boost if on["rawboost"] else -1,
            "codec": name if on["codec"] else "", "codec_kbps": kbps if on["codec"] else 0,
            "cutoff_hz": cutoff if on["band_limit"] else 0.0}


AUDIO_NONE = {"rt60": 0.0, "direct_db": 0.0, "rawboost_seed": -1, "codec": "", "codec_kbps": 0, "cutoff_hz": 0.0}


def _apply_audio(audio, plan: dict, rng: np.random.Generator, cfg: AugmentConfig):
    if plan["rt60"] > 0:
        audio = reverb(audio, plan["rt60"], rng, direct_db=plan["direct_db"])
    if plan["rawboost_seed"] >= 0:
        audio = rawboost(audio, np.random.default_rng(plan["rawboost_seed"]), kinds=tuple(cfg.rawboost))
    if plan["codec"]:
        audio = codec(audio, plan["codec"], plan["codec_kbps"])
    if plan["cutoff_hz"] > 0:
        audio = band_limit(audio, plan["cutoff_hz"])
    return audio


# --- shared sampling of video corruptions -------------------------------------------------------

def _draw_video(rng: np.random.Generator, cfg: AugmentConfig, probs: dict[str, float]) -> dict:
    """Parameters of the video corruptions for one sample (0 / -1: not applied). Every value is
    drawn whatever is applied, so one corruption's draw never shifts another's."""
    u = rng.random(len(VIDEO_CORRUPTIONS))
    std = float(rng.uniform(*cfg.noise_std))
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    crf = int(rng.integers(cfg.video_crf[0], cfg.video_crf[1] + 1))
    on = {k: bool(u[i] < probs.get(k, 0.0)) for i, k in enumerate(VIDEO_CORRUPTIONS)}
    return {"noise_std": std if on["gaussian_noise"] else 0.0, "jpeg_quality": quality if on["jpeg"] else 0,
            "crf": crf if on["video_compression"] else -1}


def _apply_video(video, plan: dict, rng: np.random.Generator):
    if plan["noise_std"] > 0:
        video = gaussian_noise(video, plan["noise_std"], rng)
    if plan["jpeg_quality"] > 0:
        video = jpeg(video, plan["jpeg_quality"])
    if plan["crf"] >= 0:
        video = video_compression(video, plan["crf"])
    return video


def _streams(*entropy: int) -> list[np.random.Generator]:
    """Independent generators for: the plan, the video, the mouth, the audio noise and the other
    audio augmentations (spawned children depend on their position only: adding the fifth left
    the first four as they were)."""
    if min(entropy) < 0:
        raise ValueError(f"Seeds, epochs and sample indices must be >= 0, found {entropy}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(list(entropy)).spawn(5)]


# --- transforms ---------------------------------------------------------------------------------

class Augment:
    """Dataset transform: a :class:`~detector.data.ShardDataset` sample dict -> sample dict.

    ``video`` uint8 (F, 3, S, S) -> float32 (F, 3, crop, crop) in [0, 1]: first scaled to
    ``resize`` px when given (a small model's view of the whole face), then while training a random
    window (``cfg.random_crop``; the same for all frames), a horizontal flip with ``p_flip``, then
    Gaussian noise, JPEG and H.264 each with its probability and a parameter drawn from its range;
    in evaluation the centre window and nothing else. ``mouth`` (F, 3, M, M), when present, gets
    the same relative window (size round(M * crop / S)), flip and corruption parameters. While
    training, ``audio`` (L,) gets a gain and white noise with their probabilities (cached ``mel``
    is never augmented). Samples with ``has_video`` / ``has_audio`` 0 are cropped but not corrupted.

    The sample gains ``augment``: a dict of numbers (collates to tensors) saying what was applied:
    ``flip``, ``crop_y``, ``crop_x``, ``noise_std`` (0: none), ``jpeg_quality`` (0: none), ``crf``
    (-1: none), ``gain_db`` (0: none), ``snr_db`` (inf: none).

    The randomness of a sample depends only on (``seed``, epoch, ``sample["index"]``); the epoch
    is set with :meth:`set_epoch` and lives in shared memory, so DataLoader workers (persistent
    ones too) see it. Call it before iterating the epoch.
    """

    def __init__(self, cfg: AugmentConfig, crop: int, train: bool, seed: int = 0, resize: int = 0):
        self.cfg, self.crop, self.train, self.seed = cfg, int(crop), bool(train), int(seed)
        self.resize = int(resize)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._probs = {"gaussian_noise": cfg.p_gaussian_noise, "jpeg": cfg.p_jpeg,
                       "video_compression": cfg.p_video_compression}

    @classmethod
    def for_model(cls, cfg, train: bool) -> "Augment":
        """The transform an experiment config (:class:`~detector.config.ExperimentConfig`) trains
        (``train=True``) or evaluates its model with."""
        return cls(cfg.augment, cfg.model.crop, train=train, seed=cfg.train.seed, resize=cfg.model.resize)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __call__(self, sample: dict) -> dict:
        if self.resize and "video" in sample and int(sample["video"].shape[-1]) != self.resize:
            sample = self._resized(sample)
        out = dict(sample)
        plan_rng, video_rng, mouth_rng, audio_rng, more_rng = _streams(_AUGMENT_TAG, self.seed, self.epoch,
                                                                       int(sample["index"]))
        plan = self._plan(plan_rng, sample)
        for name, rng in (("video", video_rng), ("mouth", mouth_rng)):
            if name in sample:
                out[name] = self._video(sample[name], plan, self._window(plan, sample, name), rng)
        if "audio" in sample:
            audio = _apply_audio(sample["audio"], plan, more_rng, self.cfg)
            if plan["gain_db"] != 0.0:
                audio = gain(audio, plan["gain_db"])
            if math.isfinite(plan["snr_db"]):
                audio = add_noise(audio, plan["snr_db"], audio_rng)
            out["audio"] = audio
        out["augment"] = plan
        return out

    def _plan(self, rng: np.random.Generator, sample: dict) -> dict:
        """All random choices of one sample, drawn in a fixed order whatever is applied."""
        cfg = self.cfg
        size = int(sample["video"].shape[-1]) if "video" in sample else self.crop
        if size < self.crop:
            raise ValueError(f"Face crops of {size} px are smaller than the model's crop of {self.crop} px")
        u = rng.random(3)
        y, x = (int(v) for v in rng.integers(0, size - self.crop + 1, size=2))
        video = _draw_video(rng, cfg, self._probs)
        gain_db, snr_db = float(rng.uniform(*cfg.audio_gain_db)), float(rng.uniform(*cfg.audio_snr_db))
        if not (self.train and cfg.random_crop):
            y = x = (size - self.crop) // 2
        if not self.train or not int(sample.get("has_video", 1)):
            video = {"noise_std": 0.0, "jpeg_quality": 0, "crf": -1}
        audio = self.train and bool(int(sample.get("has_audio", 1)))
        more = _draw_audio(rng, cfg)  # drawn after the others: their draws are as they were
        if not audio:
            more = dict(AUDIO_NONE)
        return {"flip": int(self.train and u[0] < cfg.p_flip), "crop_y": y, "crop_x": x, **video,
                "gain_db": gain_db if audio and u[1] < cfg.p_audio_gain else 0.0,
                "snr_db": snr_db if audio and u[2] < cfg.p_audio_noise else math.inf, **more}

    def _window(self, plan: dict, sample: dict, name: str) -> tuple[int, int, int]:
        """(top, left, size) of the crop of ``name``. The mouth gets the face's window scaled to
        its size, or stays whole when the sample has no face video."""
        if name == "video":
            return plan["crop_y"], plan["crop_x"], self.crop
        m = int(sample[name].shape[-1])
        if "video" not in sample:
            return 0, 0, m
        s = int(sample["video"].shape[-1])
        c = min(m, round(m * self.crop / s))
        if s == self.crop:
            return (m - c) // 2, (m - c) // 2, c
        return round(plan["crop_y"] / (s - self.crop) * (m - c)), round(plan["crop_x"] / (s - self.crop) * (m - c)), c

    def _resized(self, sample: dict) -> dict:
        """Face crops scaled to ``resize`` px (area-averaged when shrinking), mouth crops by the same factor.

        uint8 clips are resampled as uint8 in channels-last layout, torch's vectorized path for
        3-channel images: about 10x faster than through float on a tiny model's 32 x 128 px clip,
        and within one grey level of it (the float path rounds once more)."""
        out = dict(sample)
        scale = self.resize / int(sample["video"].shape[-1])
        for name in ("video", "mouth"):
            if name in sample:
                v = torch.as_tensor(sample[name])
                side = max(1, round(int(v.shape[-1]) * scale))
                if v.dtype == torch.uint8:
                    v = v.contiguous(memory_format=torch.channels_last)
                    out[name] = torch.nn.functional.interpolate(v, size=(side, side), mode="bilinear", antialias=True,
                                                                align_corners=False).contiguous()
                    continue
                r = torch.nn.functional.interpolate(v.float(), size=(side, side), mode="bilinear", antialias=True,
                                                    align_corners=False)
                out[name] = r.round_().clamp_(0, 255).to(torch.uint8)
        return out

    @staticmethod
    def _video(video, plan: dict, window: tuple[int, int, int], rng: np.random.Generator) -> torch.Tensor:
        """Crop, flip, convert to float and corrupt one uint8 (F, 3, S, S) clip."""
        if video.ndim != 4 or video.shape[1] != 3 or video.shape[2] != video.shape[3]:
            raise ValueError(f"Expected a uint8 clip (F, 3, S, S), found {tuple(video.shape)}")
        y, x, c = window
        v = torch.as_tensor(video)[:, :, y:y + c, x:x + c]
        if plan["flip"]:
            v = v.flip(-1)
        v = v.float() / 255.0
        return _apply_video(v, plan, rng).contiguous()


class Corrupt:
    """The robustness protocol: corruptions of evaluation inputs (after :class:`Augment` with
    ``train=False``), each applied with probability ``p`` and a parameter drawn from its range in
    ``cfg`` (default :class:`AugmentConfig`'s training ranges).

    ``kind``: "gaussian_noise", "jpeg", "video_compression", or "all" (the three, in that order,
    each with ``p``; the paper's "each with probability 0.5"). The choice for a sample depends only
    on (``seed``, ``kind``, its index). Call with a sample dict (uses ``sample["index"]``, corrupts
    ``video`` and ``mouth``, adds ``corrupt``: ``noise_std``, ``jpeg_quality``, ``crf`` as in
    :class:`Augment`) or with a float video (F, 3, H, W) and its index.
    """

    KINDS = (*VIDEO_CORRUPTIONS, "all")

    def __init__(self, kind: str, seed: int = 0, p: float = 0.5, cfg: AugmentConfig | None = None):
        if kind not in self.KINDS:
            raise ValueError(f"Unknown corruption {kind!r}; choose from {', '.join(self.KINDS)}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Probability p must be in [0, 1], found {p}")
        self.kind, self.seed, self.p, self.cfg = kind, int(seed), float(p), cfg or AugmentConfig()
        kinds = VIDEO_CORRUPTIONS if kind == "all" else (kind,)
        self._probs = {k: self.p for k in kinds}

    def plan(self, index: int) -> dict:
        """What sample ``index`` gets: ``noise_std`` (0: none), ``jpeg_quality`` (0: none), ``crf`` (-1: none)."""
        return _draw_video(self._rngs(index)[0], self.cfg, self._probs)

    def _rngs(self, index: int) -> list[np.random.Generator]:
        return _streams(_CORRUPT_TAG, self.seed, self.KINDS.index(self.kind), int(index))

    def __call__(self, x, index: int | None = None):
        if isinstance(x, dict):
            index = x["index"] if index is None else index
        elif index is None:
            raise ValueError("Corrupt needs the sample index with a bare video: corrupt(video, index)")
        plan_rng, video_rng, mouth_rng, *_ = self._rngs(index)
        plan = _draw_video(plan_rng, self.cfg, self._probs)
        if not isinstance(x, dict):
            return _apply_video(x, plan, video_rng)
        out = dict(x)
        if int(x.get("has_video", 1)):
            for name, rng in (("video", video_rng), ("mouth", mouth_rng)):
                if name in x:
                    out[name] = _apply_video(x[name], plan, rng)
        else:
            plan = {"noise_std": 0.0, "jpeg_quality": 0, "crf": -1}
        out["corrupt"] = plan
        return out
