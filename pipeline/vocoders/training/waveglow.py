"""Training WaveGlow: the flow's negative log-likelihood of real audio given its mel.

Facts from NVIDIA/waveglow: ``glow.py`` ``WaveGlowLoss`` (``z^2 / (2 sigma^2) - sum log s -
sum log|det W|``, averaged over all dimensions; training sigma 1.0), ``config.json``
``train_config`` (Adam, learning rate 1e-4, batch 12, ``segment_length`` 16000 samples,
fp16) and ``waveglow_config`` (12 flows, 8 layers of 256 channels). ``config.json`` counts
epochs, not steps; the WaveGlow paper reports training the released model for 580k iterations,
which the ``base`` preset uses.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from ..waveglow import WaveGlowConfig, waveglow_loss
from .objective import Objective, update


class WaveGlowObjective(Objective):
    vocoder = "waveglow"

    @staticmethod
    def preset(name: str) -> tuple[dict, dict]:
        if name == "base":
            return asdict(WaveGlowConfig()), dict(max_steps=580_000, batch_size=12, segment_samples=16000, lr=1e-4,
                                                  validate_every=5000)
        # tiny: 6 flows of 4 layers x 32 channels, the release's upsampler
        return asdict(WaveGlowConfig(n_flows=6, n_early_every=2, n_layers=4, n_channels=32)), dict(
            max_steps=1500, batch_size=4, segment_samples=8192, lr=5e-4, grad_norm=5.0, validate_every=300)

    def segment_length(self, samples: int) -> int:
        unit = self.voc.mel.hop_length * self.voc.config.n_group
        return max(unit, samples // unit * unit)

    def losses(self, wav: torch.Tensor, step: int) -> dict[str, float]:
        loss = waveglow_loss(self.generator(self.features(wav), wav), sigma=1.0)
        update(loss, self.generator, self.opts["generator"], self.scheds["generator"], self.cfg.grad_norm)
        return {"nll": loss.item()}


OBJECTIVE = WaveGlowObjective
