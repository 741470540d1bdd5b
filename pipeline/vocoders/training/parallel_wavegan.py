"""Training Parallel WaveGAN: multi-resolution STFT loss, then the release's discriminator with
least-squares adversarial loss (plus feature matching), on z-normalised log-mel features.

Facts from kan-bayashi ParallelWaveGAN (``egs/ljspeech/voc1/conf/parallel_wavegan.v1.yaml``,
``models/parallel_wavegan.py`` ``ParallelWaveGANDiscriminator``): discriminator of ``layers=10``
convolutions (kernel 3, 64 channels, dilation 1 for the first and ``i`` for layer ``i``
(``dilation_factor 1``), LeakyReLU(0.2) after each but the last, which outputs the score);
``lambda_adv 4.0``; RAdam, generator lr 1e-4 / discriminator 5e-5, eps 1e-6, StepLR(200k, 0.5),
gradient norms 10 / 1; batch 6 x ``batch_max_steps`` 25600 samples; 400k steps, discriminator
from 100k. Feature statistics (``bin/compute_statistics.py``): per-band mean and standard
deviation of the log-mel frames of the training set, saved as ``stats.npy`` = ``[mean, scale]``
beside the checkpoints (read by :func:`pipeline.vocoders.parallel_wavegan.read_stats`). The
release trains without feature matching; here it is added with weight ``lambda_fm = 1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..parallel_wavegan import ParallelWaveGANConfig
from .gan import GANObjective


@dataclass
class PWGDiscriminatorConfig:
    """``discriminator_params`` of ``parallel_wavegan.v1.yaml``."""

    layers: int = 10
    conv_channels: int = 64
    kernel_size: int = 3


class ParallelWaveGANDiscriminator(nn.Module):
    """(B, 1, N) -> [[feature maps..., score (B, 1, N)]] (one sub-discriminator)."""

    def __init__(self, cfg: PWGDiscriminatorConfig):
        super().__init__()
        k, c = cfg.kernel_size, cfg.conv_channels
        self.conv_layers = nn.ModuleList()
        for i in range(cfg.layers - 1):
            dilation = 1 if i == 0 else i
            self.conv_layers.append(nn.Sequential(
                nn.Conv1d(1 if i == 0 else c, c, k, padding=(k - 1) // 2 * dilation, dilation=dilation),
                nn.LeakyReLU(0.2)))
        self.last = nn.Conv1d(c, 1, k, padding=(k - 1) // 2)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for f in self.conv_layers:
            x = f(x)
            out.append(x)
        out.append(self.last(x))
        return [out]


class ParallelWaveGANObjective(GANObjective):
    vocoder = "parallel_wavegan"
    adversarial = "mse"

    @staticmethod
    def preset(name: str) -> tuple[dict, dict]:
        if name == "base":  # parallel_wavegan.v1.yaml (see the module docstring)
            return asdict(ParallelWaveGANConfig()), dict(
                max_steps=400_000, disc_start=100_000, batch_size=6, segment_samples=25600, optimizer="radam",
                lr=1e-4, lr_d=5e-5, eps=1e-6, grad_norm=10.0, grad_norm_d=1.0, lr_step=200_000, lr_gamma=0.5,
                lambda_adv=4.0, lambda_fm=1.0, validate_every=5000, discriminator=asdict(PWGDiscriminatorConfig()))
        # tiny: 10 layers of 16 channels; discriminator from a quarter of the steps, as the release.
        return asdict(ParallelWaveGANConfig(layers=10, stacks=2, residual_channels=16, gate_channels=32,
                                            skip_channels=16)), dict(
            max_steps=600, disc_start=150, batch_size=2, segment_samples=4096, optimizer="radam", lr=2e-3,
            lr_d=2e-4, eps=1e-6, grad_norm=10.0, grad_norm_d=1.0, lambda_adv=4.0, lambda_fm=1.0,
            validate_every=200, discriminator=asdict(PWGDiscriminatorConfig(layers=6, conv_channels=16)))

    @classmethod
    def prepare(cls, voc, train_audio):
        """Fit the z-norm statistics on the training audio (unless the config carries them)."""
        if voc.config.stats_mean is not None:
            return voc
        mean, scale = feature_stats(voc, train_audio)
        config = dataclasses.replace(voc.config, stats_mean=tuple(mean), stats_scale=tuple(scale))
        new = type(voc)(config, voc.mel, device=str(voc.device))
        new.model.load_state_dict(voc.model.state_dict())
        return new

    def build_discriminator(self, params: dict) -> nn.Module:
        return ParallelWaveGANDiscriminator(PWGDiscriminatorConfig(**params))

    def generate_train(self, feats: torch.Tensor, n_samples: int) -> torch.Tensor:
        """As ``ParallelWaveGAN.generate`` with gradients: the frames covering the segment,
        replicate-padded by ``aux_context_window``, and Gaussian noise from torch's RNG."""
        hop, a = self.voc.config.hop_length, self.voc.config.aux_context_window
        c = feats[:, :, : n_samples // hop]
        if a > 0:
            c = F.pad(c, (a, a), mode="replicate")
        z = torch.randn(feats.shape[0], 1, n_samples, device=feats.device)
        return self.generator(z, c).squeeze(1)


def feature_stats(voc, train_audio: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (mean, standard deviation) of the unnormalised log-mel frames of the training
    audio (``compute_statistics.py``: sklearn StandardScaler over all frames)."""
    total, total_sq, n = 0.0, 0.0, 0
    with torch.no_grad():
        for a in train_audio:
            m = voc.mel(torch.as_tensor(a, dtype=torch.float32)[None])[0].double()  # (n_mels, T)
            total, total_sq, n = total + m.sum(1), total_sq + (m * m).sum(1), n + m.shape[1]
    mean = total / n
    std = torch.sqrt(torch.clamp(total_sq / n - mean * mean, min=1e-12))
    return mean.numpy(), std.numpy()


OBJECTIVE = ParallelWaveGANObjective
