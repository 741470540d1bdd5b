"""The one place where a :class:`~detector.config.ModelConfig` becomes a network."""

from __future__ import annotations

import dataclasses

from torch import nn

from .config import ModelConfig
from .models.av import AudioOnly, AVDetector, VideoOnly

# name users type -> network class; "av-noatt" is the av network with the sync stream's attention off
MODELS: dict[str, type[nn.Module]] = {"av": AVDetector, "av-noatt": AVDetector, "video": VideoOnly,
                                      "audio": AudioOnly}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network ``cfg.name`` names ("av", "av-noatt", "video", "audio"), sized by ``cfg``.

    "av-noatt" always builds the sync stream without attention; "av" requires
    ``cfg.sync.attention`` (name the ablation "av-noatt" instead of switching it off silently).
    """
    if cfg.name not in MODELS:
        raise ValueError(f"Unknown model {cfg.name!r}; valid models: {', '.join(MODELS)}")
    if cfg.name == "av-noatt" and cfg.sync.attention:
        cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, attention=False))
    if cfg.name == "av" and not cfg.sync.attention:
        raise ValueError("Model 'av' has sync.attention=False: name it 'av-noatt' for the no-attention ablation")
    return MODELS[cfg.name](cfg)
