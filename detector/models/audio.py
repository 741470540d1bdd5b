"""The audio stream: log-mel front-end, SpecAugment, and a 2D ResNet over the spectrogram.

The front-end computes exactly the shards' cached log-mel (docs/shards-format.md), so a model may
be fed either. The spectrogram (B, n_mels, T) is normalised per mel band (by default each clip
over time, ``mel_norm="instance"``; or a learned global BatchNorm), masked by SpecAugment while
training, and read by a
ResNet-18-style network: a 3 x 3 stem at full resolution (cheap with one input channel; keeps the
finest spectral detail, where vocoder artefacts live), then 4 stages each halving frequency and
time. At 100 mel frames/s the stages run at 50, 25, 12.5 and 6.25 frames/s: stages 2-4 have the
frame rates of the video stream's stages 2-4 at 25 fps, which the sync stream fuses.
"""

from __future__ import annotations

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
        if wave.ndim != 2:
            raise ValueError(f"Expected mono audio of shape (B, L), but found {tuple(wave.shape)}")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return torch.log(self.mel(wave.float()) + LOG_OFFSET)


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
        ``features``: ``mel`` (B, n_mels, T) the log-mel (before normalisation and masking),
        ``stage1`` ... ``stageN`` each (B, C_i, n_mels / 2^i, T / 2^i) (rounded up),
        with T = L // hop_length + 1;
        ``logit``: (B,) the audio-fake logit.
    """

    def __init__(self, cfg: AudioStreamConfig):
        super().__init__()
        if len(cfg.widths) != len(cfg.blocks):
            raise ValueError(f"Audio stream: widths and blocks need one entry per stage, but found "
                             f"{cfg.widths} and {cfg.blocks}")
        self.frontend = MelFrontend(cfg)
        if cfg.mel_norm not in ("batch", "instance"):
            raise ValueError(f"mel_norm must be 'batch' or 'instance', not {cfg.mel_norm!r}")
        self.norm = nn.BatchNorm1d(cfg.n_mels) if cfg.mel_norm == "batch" else InstanceNorm()
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
