"""Losses of the GAN vocoders: multi-resolution STFT, adversarial (hinge, least squares),
feature matching.

Multi-resolution STFT loss (Yamamoto et al., ICASSP 2020, section 2.2; ParallelWaveGAN
``losses/stft_loss.py``): per resolution, spectral convergence ``||S - S'||_F / ||S||_F`` plus
the mean absolute difference of log magnitudes, magnitudes ``sqrt(max(|X|^2, 1e-7))``, hann
window; each term averaged over the resolutions. Resolutions of the recipes
(``parallel_wavegan.v1.yaml`` ``stft_loss_params``): FFT 1024/2048/512, hops 120/240/50,
windows 600/1200/240 -- the same values in the 22.05 kHz LJSpeech and 24 kHz recipes, so they
are not scaled with the sample rate here either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FFT_SIZES = (1024, 2048, 512)
HOP_SIZES = (120, 240, 50)
WIN_LENGTHS = (600, 1200, 240)


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """(B, N) -> (B, frames, n_fft // 2 + 1), centred reflect-padded frames."""
    window = torch.hann_window(win, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, win, window, center=True, pad_mode="reflect", return_complex=True)
    return torch.sqrt(torch.clamp(spec.real ** 2 + spec.imag ** 2, min=1e-7)).transpose(1, 2)


class MultiResolutionSTFTLoss(nn.Module):
    """(fake (B, N), real (B, N)) -> (spectral convergence, log-magnitude L1), each a scalar."""

    def __init__(self, fft_sizes=FFT_SIZES, hop_sizes=HOP_SIZES, win_lengths=WIN_LENGTHS):
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must have the same length")
        self.resolutions = list(zip(fft_sizes, hop_sizes, win_lengths))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sc, mag = 0.0, 0.0
        for n_fft, hop, win in self.resolutions:
            f, r = stft_magnitude(fake, n_fft, hop, win), stft_magnitude(real, n_fft, hop, win)
            sc = sc + torch.linalg.vector_norm(r - f) / torch.linalg.vector_norm(r).clamp(min=1e-7)
            mag = mag + F.l1_loss(torch.log(f), torch.log(r))
        n = len(self.resolutions)
        return sc / n, mag / n


def feature_matching(fake_feats: list[list[torch.Tensor]], real_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 distance between the discriminators' intermediate feature maps (the last entry of
    each list, the score, excluded) for generated and (detached) real audio."""
    total, n = 0.0, 0
    for fake, real in zip(fake_feats, real_feats):
        for f, r in zip(fake[:-1], real[:-1]):
            total = total + F.l1_loss(f, r.detach())
            n += 1
    return total / max(n, 1)


def generator_adversarial(kind: str, fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """Generator side: hinge ``-D(G(s))`` (descript MelGAN) or least squares ``(1 - D(G(s)))^2``
    (ParallelWaveGAN), averaged over the discriminators."""
    scores = [f[-1] for f in fake_feats]
    if kind == "hinge":
        return sum(-s.mean() for s in scores) / len(scores)
    if kind == "mse":
        return sum(F.mse_loss(s, torch.ones_like(s)) for s in scores) / len(scores)
    raise ValueError(f"Unknown adversarial loss {kind!r}; expected 'hinge' or 'mse'")


def discriminator_adversarial(kind: str, real_feats, fake_feats) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator side: (real term, fake term), hinge ``relu(1 - D(x))``, ``relu(1 + D(G(s)))``
    or least squares ``(1 - D(x))^2``, ``D(G(s))^2``."""
    real_s, fake_s = [f[-1] for f in real_feats], [f[-1] for f in fake_feats]
    n = len(real_s)
    if kind == "hinge":
        return (sum(F.relu(1 - s).mean() for s in real_s) / n, sum(F.relu(1 + s).mean() for s in fake_s) / n)
    if kind == "mse":
        return (sum(F.mse_loss(s, torch.ones_like(s)) for s in real_s) / n,
                sum(F.mse_loss(s, torch.zeros_like(s)) for s in fake_s) / n)
    raise ValueError(f"Unknown adversarial loss {kind!r}; expected 'hinge' or 'mse'")
