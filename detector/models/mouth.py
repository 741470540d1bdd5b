"""The video stream on the mouth crops alone: lip motion, what the sync stream is about (the
paper's attention figures are mouth patches). The shards store the mouth region of every face
clip (``clips/mouth``, 96 px by default); this model reads it in place of the face.

Forward: batch with ``mouth`` (B, F, 3, M, M) uint8 or float in [0, 1] -> ``logit_video``,
``p_video`` (B,) (the clip's video is fake), ``features`` {``video.stage<i>``}, ``attention`` {}.
"""

from __future__ import annotations

import torch

from .base import Detector
from .video import VideoStream


class MouthOnly(Detector):
    """A (2+1)D video stream (``cfg.video``) over the mouth crops; its head says P(video fake)."""

    modalities = ("mouth",)
    outputs = ("video",)
    main_output = "video"
    modes = ("video",)

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.video = VideoStream(cfg.video)

    def forward(self, batch: dict) -> dict:
        out = self.video(batch["mouth"])
        logit = out["logit"]
        return {"logit_video": logit, "p_video": torch.sigmoid(logit),
                "features": {f"video.{k}": v for k, v in out["features"].items()}, "attention": {}}
