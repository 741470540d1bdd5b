"""Griffin-Lim: phase reconstruction from a mel spectrogram, batched in torch (CPU or GPU).

The mel is mapped back to a linear magnitude spectrogram (pseudo-inverse of the filterbank,
clamped at 0, or non-negative least squares), then the phase is estimated with the fast
Griffin-Lim algorithm (Perraudin, Balazs & Sondergaard, "A fast Griffin-Lim algorithm",
WASPAA 2013): alternate projections between consistent spectrograms and the target magnitude,
with a momentum term (0.99 by default, as librosa's ``griffinlim``).

It runs at 16 kHz on its own mel convention, so copy synthesis of the store's audio needs no
resampling. All clips of a batch go through every FFT together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Vocoder
from .mel import MelSpec

# 16 kHz, 64 ms windows, 16 ms hop, 80 Slaney mel bands up to 8 kHz, natural log.
GRIFFINLIM_MEL = MelSpec(sample_rate=16000, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0.0,
                         fmax=8000.0, padding="center", compression="ln", floor=1e-5)


@dataclass(frozen=True)
class GriffinLimConfig:
    n_iter: int = 32  # phase-reconstruction iterations (librosa's default)
    momentum: float = 0.99  # fast Griffin-Lim momentum; 0 gives the original algorithm
    inverse: str = "pinv"  # mel -> linear magnitude: "pinv" (clamped pseudo-inverse) or "nnls"
    nnls_iter: int = 100  # projected-gradient steps for "nnls"
    seed: int = 0  # random initial phase (seeded: conversions are reproducible)


def mel_to_linear(mel_mag: torch.Tensor, fb: torch.Tensor, method: str = "pinv", n_iter: int = 100) -> torch.Tensor:
    """(B, n_mels, T) linear-amplitude mel -> (B, n_fft // 2 + 1, T) non-negative magnitude.

    The pseudo-inverse of the small filterbank is taken on the CPU in float64 whatever the device:
    the same matrix everywhere, and no GPU solver to start up for an 80 x 513 SVD."""
    pinv = torch.linalg.pinv(fb.detach().to("cpu", torch.float64)).to(fb)
    s = torch.clamp(pinv @ mel_mag, min=0)
    if method == "pinv":
        return s
    if method != "nnls":
        raise ValueError(f"Unknown mel inverse {method!r}; expected 'pinv' or 'nnls'")
    # min ||fb s - mel||^2 s.t. s >= 0, by projected gradient from the clamped pseudo-inverse
    gram = fb.T @ fb
    step = 1.0 / torch.linalg.matrix_norm(gram, ord=2)
    target = fb.T @ mel_mag
    for _ in range(n_iter):
        s = torch.clamp(s - step * (gram @ s - target), min=0)
    return s


def griffin_lim(mag: torch.Tensor, n_fft: int, hop: int, win: int, n_iter: int = 32, momentum: float = 0.99,
                length: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, n_fft // 2 + 1, T) magnitude -> (B, N) waveform by fast Griffin-Lim. The random initial
    phase is drawn on the CPU (``generator`` is a CPU generator), so a seed gives the same start on
    every device."""
    window = torch.hann_window(win, periodic=True, device=mag.device, dtype=mag.dtype)
    stft = lambda x: torch.stft(x, n_fft, hop, win, window, center=True, pad_mode="reflect",  # noqa: E731
                                return_complex=True)
    istft = lambda s: torch.istft(s, n_fft, hop, win, window, center=True, length=length)  # noqa: E731
    phase = torch.rand(mag.shape, generator=generator, dtype=mag.dtype).to(mag.device) * 2 * torch.pi
    angles = torch.polar(torch.ones_like(mag), phase)
    previous = torch.zeros_like(angles)
    alpha = momentum / (1 + momentum)
    mag_r = mag.unsqueeze(-1)  # complex arithmetic on real views: several times faster on CPU
    for _ in range(n_iter):
        rebuilt = stft(istft(torch.view_as_complex(torch.view_as_real(angles) * mag_r)))
        angles = torch.sgn(torch.view_as_complex(torch.view_as_real(rebuilt).sub(torch.view_as_real(previous),
                                                                                  alpha=alpha)))
        previous = rebuilt
    return istft(torch.view_as_complex(torch.view_as_real(angles) * mag_r))


class GriffinLimVocoder(Vocoder):
    name = "griffinlim"

    def __init__(self, config: GriffinLimConfig | None = None, mel: MelSpec | None = None, device: str = "cpu",
                 **options):
        super().__init__(mel or GRIFFINLIM_MEL, device)
        self.config = config or GriffinLimConfig(**options)

    def config_dict(self) -> dict:
        import dataclasses

        return {**super().config_dict(), "griffinlim": dataclasses.asdict(self.config)}

    def generate(self, mel: torch.Tensor) -> torch.Tensor:
        m = self.mel
        fb = m.filterbank(mel.device, mel.dtype)
        mag = mel_to_linear(m.decompress(mel), fb, self.config.inverse, self.config.nnls_iter)
        gen = torch.Generator().manual_seed(self.config.seed)
        length = (mel.shape[-1] - 1) * m.hop_length
        return griffin_lim(mag, m.n_fft, m.hop_length, m.win, self.config.n_iter, self.config.momentum,
                           length=length, generator=gen)


VOCODER = GriffinLimVocoder
