"""What every registered model declares (read by training, evaluation, inference and the command
line through :mod:`detector.builder`)."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig


class Detector(nn.Module):
    """Base of the registered models.

    Class attributes: ``modalities`` (inputs read, and that a sample must have to be scored whole:
    "video", "mouth", "audio"), ``outputs`` (its ``p_<output>`` heads: "video", "audio", "sync"),
    ``main_output`` (the output that selects the best checkpoint) and ``modes`` (inference modes,
    the default first: an output, or "two_stream"). :meth:`resolve_config` returns the config the
    class builds from (an error where one contradicts it).
    """

    modalities: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    main_output: str = ""
    modes: tuple[str, ...] = ()

    @staticmethod
    def resolve_config(cfg: ModelConfig) -> ModelConfig:
        return cfg
