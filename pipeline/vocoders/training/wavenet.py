"""Training the WaveNet vocoder (r9y9): teacher forcing on the lws mel of each segment.

Facts from r9y9 wavenet_vocoder (``train.py``, ``presets/ljspeech_mixture.json``,
``mixture.py``): the input is the waveform delayed by one sample, the output the parameters of
a discretized mixture of logistics (or, v0.2, a single Gaussian: ``out_channels`` 2 with
``output_distribution`` Normal) of the next sample; audio peak-normalised to ``rescaling_max``;
Adam 1e-3 (noam warm-up 4000), batch 2, ``max_time_steps`` 8000; the LJSpeech release is the
step-320000 checkpoint. Conditioning as :meth:`WaveNetVocoder.copy_synthesize` aligns it: the
upsampled mel from ``lead_samples`` on (the lws left padding).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from ..wavenet import WaveNetConfig, nll_loss
from .objective import Objective, update


class WaveNetObjective(Objective):
    vocoder = "wavenet"

    @staticmethod
    def preset(name: str) -> tuple[dict, dict]:
        if name == "base":
            return asdict(WaveNetConfig()), dict(max_steps=320_000, batch_size=2, segment_samples=8000, lr=1e-3,
                                                 validate_every=10_000)
        # tiny: 10 layers x 32 channels, 2 logistics; dropout off for the short run
        return asdict(WaveNetConfig(layers=10, stacks=2, residual_channels=32, gate_channels=64,
                                    skip_out_channels=32, out_channels=6, dropout=0.0)), dict(
            max_steps=1500, batch_size=4, segment_samples=4096, lr=1e-3, grad_norm=10.0, validate_every=500,
            val_seconds=1.5)

    @staticmethod
    def normalize_audio(voc, audio: np.ndarray) -> np.ndarray:
        """r9y9 preprocessing: each utterance peak-normalised to ``rescaling_max``."""
        if not voc.config.rescaling:
            return audio
        return (audio * (voc.config.rescaling_max / max(float(np.abs(audio).max()), 1e-6))).astype(np.float32)

    def losses(self, wav: torch.Tensor, step: int) -> dict[str, float]:
        cfg, net, n = self.voc.config, self.generator, wav.shape[1]
        lead = self.voc.lead_samples
        c = net.upsample(self.features(wav))[:, :, lead:lead + n]
        if cfg.scalar_input:
            x = F.pad(wav[:, :-1], (1, 0)).unsqueeze(1)
            target = wav
        else:  # mulaw-quantize: one-hot of the previous class
            target = ((torch.sign(wav) * torch.log1p(cfg.mu * wav.abs()) / math.log1p(cfg.mu) + 1) / 2 * cfg.mu).round()
            x = F.one_hot(F.pad(target[:, :-1].long(), (1, 0), value=cfg.mu // 2), cfg.out_channels)
            x = x.float().transpose(1, 2)
        loss = nll_loss(cfg, net.stack(x, c), target)
        update(loss, net, self.opts["generator"], self.scheds["generator"], self.cfg.grad_norm)
        return {"nll": loss.item()}


OBJECTIVE = WaveNetObjective
