"""Training the neural vocoders on real speech (``avdd-data train-vocoder``).

One objective per vocoder family, one file each (``melgan.py``, ``parallel_wavegan.py``,
``waveglow.py``, ``wavernn.py``, ``wavenet.py``), each defining ``OBJECTIVE`` (an
:class:`~.objective.Objective` whose ``vocoder`` is the registry name) with its presets; the
trainer (:mod:`.trainer`) and validation (:mod:`.validate`) are shared.
"""

from __future__ import annotations

import importlib
import importlib.util

from .. import NAMES, get_vocoder_class

TRAINABLE = tuple(n for n in NAMES if importlib.util.find_spec(f"{__name__}.{n}") is not None)


def get_objective(name: str):
    """The objective class that trains vocoder ``name``."""
    get_vocoder_class(name)  # an unknown name: the registry's error, listing the vocoders
    if name not in TRAINABLE:
        raise ValueError(f"Vocoder {name!r} has no training objective; trainable vocoders: {', '.join(TRAINABLE)}")
    return importlib.import_module(f"{__name__}.{name}").OBJECTIVE


def train(vocoder: str, out, **kw) -> dict:
    from .trainer import train as _train

    return _train(vocoder, out, **kw)
