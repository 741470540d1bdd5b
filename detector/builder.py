"""The one place where a :class:`~detector.config.ModelConfig` becomes a network, and the one
list of models.

Each model class (a :class:`~detector.models.base.Detector`) declares what the rest of the
detector needs to know about it: ``modalities`` (inputs it reads), ``outputs`` (its
``p_<output>`` heads), ``main_output`` (the output that selects the best checkpoint), ``modes``
(inference modes, the default first; a mode is an output name, or ``two_stream``: the larger of
``p_video`` and ``p_audio``) and ``resolve_config(cfg) -> cfg`` (the config it builds from).
Adding a model is one file under ``detector/models/`` and one line in :data:`MODELS`.
"""

from __future__ import annotations

from torch import nn

from .config import ModelConfig
from .models.av import AudioOnly, AVDetector, AVNoAttention, VideoOnly
from .models.baselines import LfccGmm, LfccLogisticRegression
from .models.mouth import MouthOnly

# name users type (--model) -> network class
MODELS: dict[str, type[nn.Module]] = {
    "av": AVDetector,
    "av-noatt": AVNoAttention,
    "video": VideoOnly,
    "audio": AudioOnly,
    "mouth": MouthOnly,
    "lfcc-lr": LfccLogisticRegression,
    "lfcc-gmm": LfccGmm,
}


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; an unknown name is an error listing the valid ones."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return MODELS[name]


def all_modes() -> tuple[str, ...]:
    """Every inference mode of any registered model (for the command line's choices)."""
    return tuple(dict.fromkeys(m for cls in MODELS.values() for m in cls.modes))


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network ``cfg.name`` names (see :data:`MODELS`), sized by ``cfg``.

    "av-noatt" always builds the sync stream without attention; "av" requires
    ``cfg.sync.attention`` (name the ablation "av-noatt" instead of switching it off silently).
    """
    cls = model_class(cfg.name)
    return cls(cls.resolve_config(cfg))
