"""Mel spectrogram front-ends in the conventions that vocoder checkpoints expect.

A vocoder only sounds right on the features it was trained on: the same sample rate, STFT,
filterbank and log compression. :class:`MelSpec` describes one such convention and computes it
with torch (batched, on any device); :data:`CONVENTIONS` holds the ones of the widely used
public releases. Every convention is checked against librosa on real speech in the tests.

Shapes: waveforms ``(B, N)`` float in [-1, 1] at ``sample_rate``; mels ``(B, n_mels, T)``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MelSpec:
    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int | None = None  # None: n_fft
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    # "center": reflect-pad n_fft // 2 on both sides (librosa center=True, Tacotron2's STFT)
    # "half":   reflect-pad (n_fft - hop) // 2 on both sides, no centring (descript MelGAN)
    padding: str = "center"
    mel_norm: str | None = "slaney"  # librosa.filters.mel norm
    htk: bool = False  # librosa.filters.mel htk
    # "ln":    natural log of max(mel, floor)            (Tacotron2 / NVIDIA)
    # "log10": log10 of max(mel, floor)                  (descript MelGAN, ParallelWaveGAN)
    # "db":    20 log10(max(mel, floor)) - ref_db, then clip((S - min_db) / -min_db, 0, 1)
    compression: str = "ln"
    floor: float = 1e-5
    ref_db: float = 0.0
    min_db: float = -100.0
    preemphasis: float = 0.0  # y[t] - k y[t-1] before the STFT when k > 0

    @property
    def win(self) -> int:
        return self.win_length or self.n_fft

    @property
    def f_max(self) -> float:
        return self.fmax if self.fmax is not None else self.sample_rate / 2

    def replace(self, **kw) -> "MelSpec":
        return dataclasses.replace(self, **kw)

    def n_frames(self, n_samples: int) -> int:
        if self.padding == "center":
            return n_samples // self.hop_length + 1
        pad = (self.n_fft - self.hop_length) // 2
        return (n_samples + 2 * pad - self.n_fft) // self.hop_length + 1

    def filterbank(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(n_mels, n_fft // 2 + 1) mel filterbank (librosa's)."""
        return torch.as_tensor(_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.f_max,
                                           self.htk, self.mel_norm), dtype=dtype, device=device)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, n_fft // 2 + 1, T) STFT magnitude with this convention's padding."""
        if self.preemphasis > 0:
            wav = torch.cat([wav[:, :1], wav[:, 1:] - self.preemphasis * wav[:, :-1]], dim=1)
        if self.padding == "center":
            pad = self.n_fft // 2
        elif self.padding == "half":
            pad = (self.n_fft - self.hop_length) // 2
        else:
            raise ValueError(f"Unknown padding {self.padding!r}; expected 'center' or 'half'")
        x = F.pad(wav.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        window = torch.hann_window(self.win, periodic=True, device=wav.device, dtype=wav.dtype)
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win, window, center=False, return_complex=True)
        return spec.abs()

    def compress(self, mel: torch.Tensor) -> torch.Tensor:
        if self.compression == "ln":
            return torch.log(torch.clamp(mel, min=self.floor))
        if self.compression == "log10":
            return torch.log10(torch.clamp(mel, min=self.floor))
        if self.compression == "db":
            s = 20 * torch.log10(torch.clamp(mel, min=self.floor)) - self.ref_db
            return torch.clamp((s - self.min_db) / -self.min_db, 0, 1)
        raise ValueError(f"Unknown compression {self.compression!r}; expected 'ln', 'log10' or 'db'")

    def decompress(self, feat: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`compress` (up to the floor and clipping): linear mel magnitude."""
        if self.compression == "ln":
            return torch.exp(feat)
        if self.compression == "log10":
            return torch.pow(10.0, feat)
        if self.compression == "db":
            s = feat.clamp(0, 1) * -self.min_db + self.min_db + self.ref_db
            return torch.pow(10.0, s / 20)
        raise ValueError(f"Unknown compression {self.compression!r}")

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) waveform -> (B, n_mels, T) compressed mel spectrogram."""
        mag = self.magnitude(wav)
        mel = torch.matmul(self.filterbank(wav.device, mag.dtype), mag)
        return self.compress(mel)


@functools.lru_cache(maxsize=32)
def _filterbank(sr, n_fft, n_mels, fmin, fmax, htk, norm) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)


# The conventions of the public releases our vocoders mirror (values from their configs).
CONVENTIONS: dict[str, MelSpec] = {
    # NVIDIA tacotron2 / waveglow (TacotronSTFT): 22.05 kHz, 1024/256/1024, fmax 8 kHz,
    # Slaney filterbank, natural log of clamp(mel, 1e-5). seungwonpark's MelGAN uses it too.
    "tacotron2": MelSpec(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0.0,
                         fmax=8000.0, padding="center", compression="ln", floor=1e-5),
    # descript MelGAN (Audio2Mel): reflect-pad (n_fft - hop) / 2, no centring, fmax sr / 2, log10.
    "melgan": MelSpec(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0.0,
                      fmax=None, padding="half", compression="log10", floor=1e-5),
    # kan-bayashi ParallelWaveGAN (ljspeech_parallel_wavegan.v1): librosa STFT (centred, reflect),
    # fmin 80, fmax 7600, log10 of max(mel, 1e-10); then z-normalised with the checkpoint's stats.
    "parallel_wavegan": MelSpec(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
                                fmin=80.0, fmax=7600.0, padding="center", compression="log10", floor=1e-10),
    # fatchord WaveRNN (hparams.py): 2048/275/1100, fmin 40, 20 log10 mel, clip((S + 100) / 100, 0, 1).
    "wavernn": MelSpec(sample_rate=22050, n_fft=2048, hop_length=275, win_length=1100, n_mels=80, fmin=40.0,
                       fmax=None, padding="center", compression="db", floor=1e-5, ref_db=0.0, min_db=-100.0),
    # r9y9 wavenet_vocoder (LJSpeech preset): 1024/256, fmin 125, fmax 7600,
    # 20 log10 mel - 20 dB, clip((S + 100) / 100, 0, 1).
    "wavenet": MelSpec(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=125.0,
                       fmax=7600.0, padding="center", compression="db", floor=1e-5, ref_db=20.0, min_db=-100.0),
}


def get_convention(name: str) -> MelSpec:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"Unknown mel convention {name!r}; known: {', '.join(sorted(CONVENTIONS))}") from None
