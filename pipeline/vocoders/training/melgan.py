"""Training MelGAN: the descript release's multi-scale discriminator with its hinge loss and
feature matching, plus the multi-resolution STFT loss and a generator-only warm-up.

Discriminator (descript ``mel2wav/modules.py``): ``Discriminator(num_D=3, ndf=16, n_layers=4,
downsampling_factor=4)``: three ``NLayerDiscriminator`` on the waveform, then on it average-pooled
once and twice (``AvgPool1d(4, stride=2, padding=1, count_include_pad=False)``). Each:
``ReflectionPad1d(7)`` + conv(1, ndf, 15) + LeakyReLU(0.2); per layer conv(kernel
``10 s + 1``, stride s, padding ``5 s``, groups ``in / 4``) to ``min(in * s, 1024)`` channels +
LeakyReLU(0.2); conv(k 5, padding 2) to ``min(2 nf, 1024)`` + LeakyReLU(0.2); conv(k 3, padding
1) to 1 = the score. Losses (``scripts/train.py``): hinge, feature matching L1 weighted by
``lambda_feat = 10``; Adam(lr 1e-4, betas 0.5, 0.9), batch 16, ``seq_len`` 8192.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..melgan import MelGANConfig
from .gan import GANObjective


@dataclass
class MelGANDiscriminatorConfig:
    """descript ``Discriminator`` arguments (defaults: its ``scripts/train.py``)."""

    num_D: int = 3
    ndf: int = 16
    n_layers: int = 4
    downsampling_factor: int = 4


class NLayerDiscriminator(nn.Module):
    """(B, 1, N) -> [feature maps..., score (B, 1, N')]."""

    def __init__(self, ndf: int, n_layers: int, stride: int):
        super().__init__()
        layers = [nn.Sequential(nn.ReflectionPad1d(7), nn.Conv1d(1, ndf, 15), nn.LeakyReLU(0.2))]
        nf = ndf
        for _ in range(n_layers):
            prev, nf = nf, min(nf * stride, 1024)
            layers.append(nn.Sequential(
                nn.Conv1d(prev, nf, stride * 10 + 1, stride=stride, padding=stride * 5, groups=max(prev // 4, 1)),
                nn.LeakyReLU(0.2)))
        layers.append(nn.Sequential(nn.Conv1d(nf, min(nf * 2, 1024), 5, padding=2), nn.LeakyReLU(0.2)))
        layers.append(nn.Conv1d(min(nf * 2, 1024), 1, 3, padding=1))
        self.model = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self.model:
            x = layer(x)
            out.append(x)
        return out


class MultiScaleDiscriminator(nn.Module):
    """(B, 1, N) -> one [feature maps..., score] list per scale."""

    def __init__(self, cfg: MelGANDiscriminatorConfig):
        super().__init__()
        self.model = nn.ModuleList(NLayerDiscriminator(cfg.ndf, cfg.n_layers, cfg.downsampling_factor)
                                   for _ in range(cfg.num_D))
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for d in self.model:
            out.append(d(x))
            x = self.downsample(x)
        return out


class MelGANObjective(GANObjective):
    vocoder = "melgan"
    adversarial = "hinge"

    @staticmethod
    def preset(name: str) -> tuple[dict, dict]:
        if name == "base":
            # Generator: descript Generator(80, ngf=32, n_residual_layers=3). Training: descript
            # scripts/train.py (Adam 1e-4, betas 0.5/0.9, batch 16, seq_len 8192, lambda_feat 10)
            # for the ParallelWaveGAN MelGAN recipe's schedule (egs/ljspeech/voc1/conf/melgan.v1.yaml:
            # 400k steps, discriminator from 100k, STFT loss + lambda_adv 4).
            return asdict(MelGANConfig()), dict(
                max_steps=400_000, disc_start=100_000, batch_size=16, segment_samples=8192, lr=1e-4, lr_d=1e-4,
                betas=(0.5, 0.9), lambda_adv=4.0, lambda_fm=10.0, validate_every=5000,
                discriminator=asdict(MelGANDiscriminatorConfig()))
        # tiny: a narrow generator (ngf 8, 2 residual units per stage) and a small discriminator,
        # about 15 minutes on one idle CPU core (benchmarks/train_vocoders.md). Generator-only for
        # half the run: started at a quarter (step 250) with the release's lambda_adv 4 and a
        # discriminator rate of 3e-4, the tiny generator collapsed to silence; lambda_adv 1 and
        # 1e-4 from step 3000 trained without collapse.
        return asdict(MelGANConfig(ngf=8, n_residual_layers=2)), dict(
            max_steps=6000, disc_start=3000, batch_size=2, segment_samples=8192, lr=3e-3, lr_d=1e-4,
            betas=(0.5, 0.9), lambda_adv=1.0, lambda_fm=10.0, validate_every=1000,
            discriminator=asdict(MelGANDiscriminatorConfig(num_D=2, ndf=4, n_layers=3)))

    def build_discriminator(self, params: dict) -> nn.Module:
        return MultiScaleDiscriminator(MelGANDiscriminatorConfig(**params))

    def generate_train(self, feats: torch.Tensor, n_samples: int) -> torch.Tensor:
        return self.generator(feats).squeeze(1)[:, :n_samples]


OBJECTIVE = MelGANObjective
