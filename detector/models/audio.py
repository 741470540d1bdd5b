"""The audio stream: a front-end (log-mel by default; LFCC, linear spectrogram or a learned sinc
filterbank on the raw waveform), SpecAugment, and a 2D ResNet over the time-frequency map.

The log-mel front-end computes exactly the shards' cached log-mel (docs/shards-format.md), so a
model may be fed either. The front-end's map (B, bands, T) is normalised per band (by default
each clip over time, ``mel_norm="instance"``; or a learned global BatchNorm), masked by
SpecAugment while training, and read by a ResNet-18-style network: a 3 x 3 stem at full
resolution (cheap with one input channel; keeps the finest spectral detail, where vocoder
artefacts live), then 4 stages each halving frequency and time. Every front-end has 100 frames/s
(hop 160 at 16 kHz), so the stages run at 50, 25, 12.5 and 6.25 frames/s: stages 2-4 have the
frame rates of the video stream's stages 2-4 at 25 fps, which the sync stream fuses.

Front-ends (``AudioStreamConfig.frontend``):

- ``logmel``: 80 Slaney mel bands of the power spectrum, natural log.
- ``lfcc``: ``n_lfcc`` cepstra of ``lfcc_filters`` linear-frequency bands (log), with deltas and
  double deltas (ASVspoof 2019's LFCC baseline: 20 coefficients, 20 ms windows, deltas; Todisco
  et al. 2019). Linear bands keep as much resolution at 7 kHz as at 200 Hz, where mel bands
  thin out; WaveFake (Frank & Schoenherr 2021) found LFCC more robust than MFCC across vocoders.
- ``linear``: the log power spectrogram, all ``n_fft // 2 + 1`` bins.
- ``sinc``: ``sinc_filters`` learned band-pass filters (SincNet, Ravanelli & Bengio 2018; the
  first layer of RawNet2 and AASIST), rectified, max-pooled to 100 frames/s and log-compressed:
  the network learns which bands to look at from the waveform itself.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn

from ..config import AudioStreamConfig
from ..modules.conv import ResBlock2d, finish_stream

LOG_OFFSET = 1e-6  # log-mel = ln(mel power + LOG_OFFSET), as the shards' cached mel


class MelFrontend(nn.Module):
    """Waveform -> natural-log mel power spectrogram, the shards' cached-mel definition.

    ``torchaudio.transforms.MelSpectrogram`` with the config's sample rate, n_fft, window (periodic
    Hann), hop, mel bands and range; power 2, centred frames with reflect padding, Slaney
    normalisation and Slaney mel scale; then ``ln(x + 1e-6)``. Always computed in float32 (also
    under autocast).

    Shapes: (B, L) -> (B, n_mels, L // hop_length + 1).
    """

    def __init__(self, cfg: AudioStreamConfig):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
            f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, center=True, pad_mode="reflect",
            norm="slaney", mel_scale="slaney")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_wave(wave)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return torch.log(self.mel(wave.float()) + LOG_OFFSET)


class LfccFrontend(nn.Module):
    """Waveform -> LFCC with deltas and double deltas, (B, L) -> (B, 3 x n_lfcc, L // hop + 1).

    ``torchaudio.transforms.LFCC`` on the config's STFT (n_fft, window, hop, centred, reflect
    padded, power 2), ``lfcc_filters`` triangular linear-frequency filters from f_min to f_max,
    natural log, orthonormal DCT-II; deltas over 5 frames. Float32 under autocast.
    """

    def __init__(self, cfg: AudioStreamConfig):
        super().__init__()
        self.lfcc = torchaudio.transforms.LFCC(
            sample_rate=cfg.sample_rate, n_filter=cfg.lfcc_filters, f_min=cfg.f_min, f_max=cfg.f_max,
            n_lfcc=cfg.n_lfcc, log_lf=True,
            speckwargs={"n_fft": cfg.n_fft, "win_length": cfg.win_length, "hop_length": cfg.hop_length,
                        "center": True, "pad_mode": "reflect", "power": 2.0})

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_wave(wave)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            c = self.lfcc(wave.float())
            d = torchaudio.functional.compute_deltas(c)
            return torch.cat([c, d, torchaudio.functional.compute_deltas(d)], dim=1)


class LinearFrontend(nn.Module):
    """Waveform -> natural-log power spectrogram, (B, L) -> (B, n_fft // 2 + 1, L // hop + 1)."""

    def __init__(self, cfg: AudioStreamConfig):
        super().__init__()
        self.spec = torchaudio.transforms.Spectrogram(n_fft=cfg.n_fft, win_length=cfg.win_length,
                                                      hop_length=cfg.hop_length, center=True, pad_mode="reflect",
                                                      power=2.0)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_wave(wave)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return torch.log(self.spec(wave.float()) + LOG_OFFSET)


class SincFrontend(nn.Module):
    """A learned band-pass filterbank on the waveform, (B, L) -> (B, sinc_filters, L // hop + 1).

    Each filter is the difference of two windowed sinc low-passes, i.e. an ideal band-pass
    between a learned low cut-off and a learned bandwidth (SincNet), initialised on the mel scale
    from f_min to f_max (at least 50 Hz wide), Hamming windowed, ``sinc_kernel`` taps. The
    filtered signals are rectified, max-pooled over each hop (the band's peak envelope at 100
    frames/s) and log-compressed. Two parameters per filter: the low cut-offs and bandwidths.
    """

    MIN_HZ, MIN_BAND_HZ = 30.0, 50.0

    def __init__(self, cfg: AudioStreamConfig):
        super().__init__()
        if cfg.sinc_kernel % 2 == 0 or cfg.sinc_kernel < 3:
            raise ValueError(f"sinc_kernel must be odd and >= 3, not {cfg.sinc_kernel}")
        self.sr, self.hop, self.kernel = cfg.sample_rate, cfg.hop_length, cfg.sinc_kernel
        top = min(cfg.f_max, cfg.sample_rate / 2) - self.MIN_HZ
        mel = torch.linspace(_hz_to_mel(max(cfg.f_min, self.MIN_HZ)), _hz_to_mel(top), cfg.sinc_filters + 1)
        edges = _mel_to_hz(mel)
        self.low_hz = nn.Parameter((edges[:-1] - self.MIN_HZ).clamp(min=0.0)[:, None])
        self.band_hz = nn.Parameter((edges[1:] - edges[:-1]).clamp(min=self.MIN_BAND_HZ)[:, None])
        half = (cfg.sinc_kernel - 1) // 2
        n = torch.arange(-half, half + 1, dtype=torch.float32) / cfg.sample_rate  # seconds
        self.register_buffer("t", n[None, :], persistent=False)
        self.register_buffer("window", torch.hamming_window(cfg.sinc_kernel, periodic=False)[None, :],
                             persistent=False)

    def filters(self) -> torch.Tensor:
        """(sinc_filters, sinc_kernel) impulse responses, each of unit peak gain."""
        nyquist = self.sr / 2
        low = self.MIN_HZ + self.low_hz.abs()
        high = (low + self.MIN_BAND_HZ + self.band_hz.abs()).clamp(max=nyquist)

        def lowpass(f):  # 2 f sinc(2 pi f t): an ideal low-pass at f Hz
            return 2 * f * torch.special.sinc(2 * f * self.t)

        h = (lowpass(high) - lowpass(low)) * self.window
        return h / (h.abs().amax(dim=1, keepdim=True) + 1e-8)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        _check_wave(wave)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = nn.functional.pad(wave.float()[:, None, :], (self.hop // 2, self.hop // 2), mode="reflect")
            y = nn.functional.conv1d(x, self.filters()[:, None, :], padding=self.kernel // 2)
            y = nn.functional.max_pool1d(y.abs(), kernel_size=self.hop, stride=self.hop)
            return torch.log(y + 1e-4)


def _hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


def _check_wave(wave: torch.Tensor) -> None:
    if wave.ndim != 2:
        raise ValueError(f"Expected mono audio of shape (B, L), but found {tuple(wave.shape)}")


FRONTENDS = {"logmel": MelFrontend, "lfcc": LfccFrontend, "linear": LinearFrontend, "sinc": SincFrontend}


def frontend_bands(cfg: AudioStreamConfig) -> int:
    """Rows of the front-end's map (what the band normalisation sees)."""
    return {"logmel": cfg.n_mels, "lfcc": 3 * cfg.n_lfcc, "linear": cfg.n_fft // 2 + 1,
            "sinc": cfg.sinc_filters}[cfg.frontend]


def build_frontend(cfg: AudioStreamConfig) -> nn.Module:
    if cfg.frontend not in FRONTENDS:
        raise ValueError(f"Unknown audio front-end {cfg.frontend!r}; choose from {', '.join(FRONTENDS)}")
    return FRONTENDS[cfg.frontend](cfg)


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019) of a normalised spectrogram, in training only.

    Each example gets ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks``
    spans of up to ``time_fraction`` of its frames, drawn independently, set to ``value`` (0: the
    band mean after normalisation). The default widths are mild (10 % of bands, 10 % of a clip
    of ~1 s) since the clip is short and artefacts may be local.

    Shapes: (B, F, T) -> (B, F, T); the identity in eval mode.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_fraction: float = 0.1,
                 value: float = 0.0):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_fraction = time_masks, time_fraction
        self.value = value

    @staticmethod
    def _masks(b: int, size: int, n: int, width: int, device) -> torch.Tensor:
        """(b, size) bool: n random spans of width in [0, width] per row."""
        pos = torch.arange(size, device=device)
        w = (torch.rand(b, n, 1, device=device) * (width + 1)).floor()
        start = (torch.rand(b, n, 1, device=device) * (size - w + 1)).floor()
        return ((pos >= start) & (pos < start + w)).any(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        b, f, t = x.shape
        mask = self._masks(b, f, self.freq_masks, min(self.freq_width, f), x.device)[:, :, None]
        width_t = min(t, int(self.time_fraction * t))
        mask = mask | self._masks(b, t, self.time_masks, width_t, x.device)[:, None, :]
        return x.masked_fill(mask, self.value)


class InstanceNorm(nn.Module):
    """Each clip's mel bands to zero mean and unit variance over time. (B, F, T) -> (B, F, T)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + 1e-5)


class AudioStream(nn.Module):
    """2D ResNet over the log-mel spectrogram of a 16 kHz waveform.

    Args:
        cfg: front-end values, stage widths and blocks, stem width, SpecAugment switch, dropout.

    Forward: wave (B, L) float -> dict with
        ``features``: ``mel`` (B, bands, T) the front-end's map (the log-mel, or the LFCC,
        linear or sinc map: the key stays ``mel``), before normalisation and masking,
        ``stage1`` ... ``stageN`` each (B, C_i, n_mels / 2^i, T / 2^i) (rounded up),
        with T = L // hop_length + 1;
        ``logit``: (B,) the audio-fake logit.
    """

    def __init__(self, cfg: AudioStreamConfig):
        super().__init__()
        if len(cfg.widths) != len(cfg.blocks):
            raise ValueError(f"Audio stream: widths and blocks need one entry per stage, but found "
                             f"{cfg.widths} and {cfg.blocks}")
        self.frontend = build_frontend(cfg)
        if cfg.mel_norm not in ("batch", "instance"):
            raise ValueError(f"mel_norm must be 'batch' or 'instance', not {cfg.mel_norm!r}")
        self.norm = nn.BatchNorm1d(frontend_bands(cfg)) if cfg.mel_norm == "batch" else InstanceNorm()
        self.spec_augment = SpecAugment() if cfg.spec_augment else nn.Identity()
        self.stem = nn.Sequential(nn.Conv2d(1, cfg.stem_width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cfg.stem_width), nn.ReLU(inplace=True))
        stages, c = [], cfg.stem_width
        for width, blocks in zip(cfg.widths, cfg.blocks):
            layers = [ResBlock2d(c, width, stride=2)] + [ResBlock2d(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            c = width
        finish_stream(self, stages, cfg.widths, cfg.dropout)

    def forward(self, wave: torch.Tensor) -> dict:
        mel = self.frontend(wave)
        x = self.spec_augment(self.norm(mel)).unsqueeze(1)  # (B, 1, n_mels, T)
        x = self.stem(x)
        features = {"mel": mel}
        for i, stage in enumerate(self.stages, 1):
            x = stage(x)
            features[f"stage{i}"] = x
        logit = self.head(self.dropout(x.mean(dim=(2, 3)))).squeeze(-1)
        return {"features": features, "logit": logit}
