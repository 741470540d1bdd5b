"""The {2+1}-stream network of Zhou & Lim (ICCV 2021) and its single-stream baselines.

:class:`AVDetector` = video stream + audio stream + sync stream, trained jointly; three outputs:
P(video fake), P(audio fake) and the sync stream's P(sequence fake). :class:`VideoOnly` and
:class:`AudioOnly` are one stream with its head.

Choices the paper leaves open, and why they were made so:

- **Video stream**: R(2+1)D-18 layout (Tran et al. 2018; the paper builds on (2+1)D convolutions),
  mid widths by Tran's parameter-matching rule, stem without max-pool. Temporal strides come
  from the config, default (1, 1, 2, 2) instead of R(2+1)D-18's (1, 2, 2, 2), so the levels the
  sync stream reads keep enough time steps (32 frames -> 32, 32, 16, 8). Trained from scratch:
  no Kinetics weights can be downloaded here. Inputs normalised with ImageNet mean/std.
- **Audio stream**: log-mel as the shards' cache (80 bands, 25 ms window, 10 ms hop), so cached
  and on-the-fly mels are interchangeable; each clip's bands normalised over time by default
  (cepstral mean/variance normalisation: a codec's or microphone's fixed colouring otherwise
  passes for a cue and held-out recordings score off; measured in tests/detector), mild
  SpecAugment; a ResNet-18-style 2D network whose stem keeps full resolution and whose 4 stages
  each halve frequency and time, which puts audio stages 2-4 at the frame rates of video stages
  2-4 (25, 12.5, 6.25 frames/s for 25 fps video): the sync stream then barely resamples.
- **Sync stream** (see ``models/sync.py``): levels concatenated along channels (one token per
  time step; attention maps are over time), one positional embedding shared by both modalities
  (same time grid), a modality embedding, per-round self- then cross-attention with separate
  weights per modality and direction, pre-norm layers with 4x GELU feed-forward, mean pooling
  and an MLP head. Its gradients flow into both streams (joint training is the paper's point;
  nothing is detached).
- **No-attention ablation**: the same aligned sequences, concatenated per time step, an MLP per
  step, mean over time, the same head: it isolates attention rather than alignment.
- **Heads**: global average pooling + dropout + linear on each stream; logits out, the loss
  (``detector/losses.py``) is BCE-with-logits, modality heads masked by ``has_video`` /
  ``has_audio``, default weights 1 : 1 : 1.
- **Init**: He init for convs, BN to identity, truncated normal (0.02) for the sync stream's
  linear layers and embeddings.

Forward contract of every model: ``forward(batch) -> dict``. Reads ``batch["video"]`` float
(B, F, 3, H, W) in [0, 1] (uint8 accepted) and/or ``batch["audio"]`` float (B, L) at 16 kHz.
Returns ``logit_<m>`` and ``p_<m>`` (B,) for each output m of the model ("video", "audio",
"sync"), ``features`` {``video.stage<i>``, ``audio.mel``, ``audio.stage<i>``, and for av models
``sync.video``, ``sync.audio`` (B, steps, dim)} and ``attention`` {``layer<r>.<direction>``:
(B, heads, steps, steps)} (empty for all but "av").
"""

from __future__ import annotations

import dataclasses

import torch

from ..config import ModelConfig
from .audio import AudioStream
from .base import Detector
from .sync import SyncStream
from .video import VideoStream


def _prefixed(prefix: str, features: dict) -> dict:
    return {f"{prefix}.{k}": v for k, v in features.items()}


def _head(name: str, logit: torch.Tensor) -> dict:
    return {f"logit_{name}": logit, f"p_{name}": torch.sigmoid(logit)}


class AVDetector(Detector):
    """The {2+1}-stream network (``cfg.sync.attention`` must be on; :class:`AVNoAttention` is the
    ablation without it).

    Forward: batch with ``video`` (B, F, 3, H, W) and ``audio`` (B, L) -> ``logit_video``,
    ``p_video``, ``logit_audio``, ``p_audio``, ``logit_sync``, ``p_sync`` (B,), ``features``,
    ``attention`` (see the module docstring).
    """

    modalities = ("video", "audio")
    outputs = ("video", "audio", "sync")
    main_output = "sync"
    modes = ("sync", "two_stream")

    @staticmethod
    def resolve_config(cfg: ModelConfig) -> ModelConfig:
        """The config this class builds from (an error where it contradicts the class)."""
        if not cfg.sync.attention:
            raise ValueError("Model 'av' has sync.attention=False: name it 'av-noatt' for the no-attention ablation")
        return cfg

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.video = VideoStream(cfg.video)
        self.audio = AudioStream(cfg.audio)
        self.sync = SyncStream(cfg.sync, self.video.widths, self.audio.widths)

    def forward(self, batch: dict) -> dict:
        v = self.video(batch["video"])
        a = self.audio(batch["audio"])
        if v["logit"].shape[0] != a["logit"].shape[0]:
            raise ValueError(f"Video and audio batch sizes differ: {v['logit'].shape[0]} vs {a['logit'].shape[0]}")
        s = self.sync(v["features"], a["features"])
        features = {**_prefixed("video", v["features"]), **_prefixed("audio", a["features"]),
                    "sync.video": s["video"], "sync.audio": s["audio"]}
        return {**_head("video", v["logit"]), **_head("audio", a["logit"]), **_head("sync", s["logit"]),
                "features": features, "attention": s["attention"]}


class AVNoAttention(AVDetector):
    """The "av-noatt" ablation: the {2+1}-stream network whose sync stream concatenates and
    pools instead of attending (its ``sync.attention`` is always off)."""

    @staticmethod
    def resolve_config(cfg: ModelConfig) -> ModelConfig:
        return dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, attention=False))


class _OneStream(Detector):
    """One stream alone, kept under its modality's name (so its weights are named as in the AV
    model). Forward: batch with ``<m>`` -> ``logit_<m>``, ``p_<m>``, ``features``."""

    modality: str = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.modalities = cls.outputs = cls.modes = (cls.modality,)
        cls.main_output = cls.modality

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        m = self.modality
        self.add_module(m, VideoStream(cfg.video) if m == "video" else AudioStream(cfg.audio))

    def forward(self, batch: dict) -> dict:
        m = self.modality
        out = getattr(self, m)(batch[m])
        return {**_head(m, out["logit"]), "features": _prefixed(m, out["features"]), "attention": {}}


class VideoOnly(_OneStream):
    """The video stream alone."""

    modality = "video"


class AudioOnly(_OneStream):
    """The audio stream alone."""

    modality = "audio"
