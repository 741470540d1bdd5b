"""Training WaveRNN (fatchord): teacher-forced, on the "wavernn" mel of each segment.

Facts from fatchord WaveRNN (``hparams.py``, ``train_wavernn.py``, ``utils/distribution.py``):
RAW mode: softmax over the ``2 ** bits`` (9) mu-law labels, cross-entropy; the network's input
is the previous sample's label as a float ``2 k / (2 ** bits - 1) - 1``. MOL mode: a
discretized mixture of 10 logistics over 65536 bins of the previous-sample-in, sample-out
waveform (the same likelihood as WaveNet's, :func:`pipeline.vocoders.wavenet.mol_nll`). Adam,
learning rate 1e-4, batch 32, ``voc_seq_len`` 5 hops, gradient norm 4, 1M steps. The mel is
zero-padded by ``pad`` frames as :meth:`WaveRNN.condition` does at generation.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from ..wavenet import mol_nll
from ..wavernn import LOG_SCALE_MIN, WaveRNNConfig
from .objective import Objective, update

MOL_BINS = 2 ** 16  # fatchord MOL: num_classes 65536


class WaveRNNObjective(Objective):
    vocoder = "wavernn"

    @staticmethod
    def preset(name: str) -> tuple[dict, dict]:
        if name == "base":  # fatchord hparams.py (voc_mode MOL, as the released model)
            return asdict(WaveRNNConfig()), dict(max_steps=1_000_000, batch_size=32, segment_samples=5 * 275,
                                                 lr=1e-4, grad_norm=4.0, validate_every=25_000)
        # tiny: RAW 9-bit (fatchord's other mode) with 96-unit GRUs
        return asdict(WaveRNNConfig(rnn_dims=96, fc_dims=96, compute_dims=32, res_out_dims=32, res_blocks=2,
                                    mode="RAW", target=2750, overlap=275)), dict(
            max_steps=1200, batch_size=8, segment_samples=4 * 275, lr=1e-3, grad_norm=4.0, validate_every=300)

    def losses(self, wav: torch.Tensor, step: int) -> dict[str, float]:
        cfg, hop = self.voc.config, self.voc.mel.hop_length
        mels = F.pad(self.features(wav)[:, :, : wav.shape[1] // hop], (cfg.pad, cfg.pad))
        if cfg.mode == "RAW":
            mu = cfg.n_classes - 1
            x = wav.clamp(-1, 1)
            labels = AF.mu_law_encoding(x, cfg.n_classes) if cfg.mu_law else ((x + 1) / 2 * mu).round().long()
            prev = F.pad(2 * labels[:, :-1].float() / mu - 1, (1, 0))
            logits = self.generator(prev, mels)
            loss = F.cross_entropy(logits.transpose(1, 2), labels)
        else:
            prev = F.pad(wav[:, :-1], (1, 0))
            loss = mol_nll(self.generator(prev, mels), wav, MOL_BINS, LOG_SCALE_MIN)
        update(loss, self.generator, self.opts["generator"], self.scheds["generator"], self.cfg.grad_norm)
        return {"nll": loss.item(), "nll_bits": loss.item() / math.log(2)}


OBJECTIVE = WaveRNNObjective
