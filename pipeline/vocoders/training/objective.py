"""What every vocoder's training objective offers the trainer.

An :class:`Objective` wraps a :class:`~pipeline.vocoders.base.NeuralVocoder` (whose ``model`` is
the generator that is trained, and whose ``features`` is the front-end the convert stage uses),
adds what training needs besides (a discriminator, optimizers, schedulers), and turns a batch of
real waveform segments into one optimisation step: :meth:`step`. The trainer knows nothing of
the losses; an objective knows nothing of run directories.

Subclasses set :attr:`vocoder` (the registry name), implement :meth:`preset` and :meth:`losses`
and may add networks in ``__init__`` (``self.nets``, ``self.opts``, ``self.scheds``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from ..base import NeuralVocoder
from .config import TrainConfig

OPTIMIZERS = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam}


def make_optimizer(params, cfg: TrainConfig, lr: float, name: str | None = None) -> torch.optim.Optimizer:
    name = name or cfg.optimizer
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr, betas=cfg.betas, eps=cfg.eps)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """StepLR(lr_step, lr_gamma), or a constant rate when ``lr_step`` is 0."""
    if cfg.lr_step > 0:
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def update(loss: torch.Tensor, net: nn.Module, opt, sched, clip: float) -> None:
    """One optimizer step on ``loss`` for ``net`` (gradients zeroed first, clipped to ``clip``)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()
    sched.step()


class Objective:
    vocoder: ClassVar[str] = ""
    # segment lengths are rounded down to a multiple of this times the hop length
    segment_multiple: ClassVar[int] = 1

    def __init__(self, voc: NeuralVocoder, cfg: TrainConfig):
        self.voc, self.cfg = voc, cfg
        self.generator = voc.model
        self.nets: dict[str, nn.Module] = {"generator": self.generator}
        self.opts = {"generator": make_optimizer(self.generator.parameters(), cfg, cfg.lr)}
        self.scheds = {"generator": make_scheduler(self.opts["generator"], cfg)}

    @staticmethod
    def preset(name: str) -> tuple[dict, dict]:
        """(model config fields, training config fields) of preset ``name``."""
        raise NotImplementedError

    @classmethod
    def prepare(cls, voc: NeuralVocoder, train_audio: list) -> NeuralVocoder:
        """A hook to fit what the features need to the training audio (e.g. z-norm statistics);
        ``train_audio``: float32 arrays at the vocoder's rate. Default: nothing to fit."""
        return voc

    @staticmethod
    def normalize_audio(voc: NeuralVocoder, audio):
        """A hook for the release's per-utterance preprocessing of training audio (e.g. WaveNet's
        peak rescaling, which its ``copy_synthesize`` applies too). Default: unchanged."""
        return audio

    def segment_length(self, samples: int) -> int:
        unit = self.voc.mel.hop_length * self.segment_multiple
        return max(unit, samples // unit * unit)

    @torch.no_grad()
    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) segments -> their features by the convert stage's front-end."""
        return self.voc.features(wav).float()

    def losses(self, wav: torch.Tensor, step: int) -> dict[str, float]:
        """One optimisation step on (B, N) real segments; returns the losses (floats)."""
        raise NotImplementedError

    def step(self, wav: torch.Tensor, step: int) -> dict[str, float]:
        self.train(True)
        out = self.losses(wav.to(self.voc.device), step)
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"{self.vocoder}: non-finite loss {bad} at step {step}: {out}")
        return out

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.train(mode)

    def state_dict(self) -> dict:
        return {"nets": {k: v.state_dict() for k, v in self.nets.items()},
                "opts": {k: v.state_dict() for k, v in self.opts.items()},
                "scheds": {k: v.state_dict() for k, v in self.scheds.items()}}

    def load_state_dict(self, state: dict) -> None:
        for group, objs in (("nets", self.nets), ("opts", self.opts), ("scheds", self.scheds)):
            missing = sorted(set(objs) - set(state[group]))
            if missing:
                raise ValueError(f"Resume state lacks {group} {missing}")
            for k, obj in objs.items():
                obj.load_state_dict(state[group][k])
