"""Vocoders, one file each, looked up by the name users type (``--vocoder melgan``).

Each module defines ``VOCODER``, its :class:`~pipeline.vocoders.base.Vocoder` class. Modules are
imported on first use, so that converting with one vocoder does not load the others.
"""

from __future__ import annotations

import importlib

from .base import Vocoder, no_checkpoint_error

NAMES = ("griffinlim", "world", "melgan", "waveglow", "wavernn", "parallel_wavegan", "wavenet")


def get_vocoder_class(name: str) -> type[Vocoder]:
    if name not in NAMES:
        raise ValueError(f"Unknown vocoder {name!r}; valid vocoders: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").VOCODER


def load_vocoder(name: str, checkpoint=None, device: str = "cpu", trust_pickle: bool = False, half: bool = False,
                 **options) -> Vocoder:
    """A ready vocoder: neural ones from ``checkpoint`` (required), the others from ``options``.
    ``half``: neural vocoders generate in float16 (CUDA only; see ``NeuralVocoder.use_half``)."""
    cls = get_vocoder_class(name)
    if cls.needs_checkpoint:
        if checkpoint is None:
            raise no_checkpoint_error(name)
        return cls.from_checkpoint(checkpoint, device=device, trust_pickle=trust_pickle, half=half)
    if half:
        raise ValueError(f"--half applies to the neural vocoders; {name} has no float16 path")
    return cls(device=device, **options)
