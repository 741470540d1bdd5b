"""WORLD: analysis/re-synthesis with pyworld (Morise, Yokomori & Ozawa, IEICE 2016).

F0 by Harvest (default) or DIO refined by StoneMask, the spectral envelope by CheapTrick and
the aperiodicity by D4C, then ``synthesize``. Optionally the envelope and aperiodicity are
coded to a few dimensions and decoded again (``sp_dims``, ``ap_coding``), as a TTS system's
acoustic model would produce them: more vocoder artefacts, same content and timing.

WORLD takes no mel spectrogram: it analyses the waveform itself, at the clip's own rate. It runs
on the CPU (one utterance at a time; the convert stage parallelises over shards).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .base import Vocoder
from .mel import MelSpec


@dataclass(frozen=True)
class WorldConfig:
    f0_method: str = "harvest"  # "harvest" or "dio" (DIO + StoneMask: faster, less robust)
    frame_period: float = 5.0  # ms between analysis frames
    f0_floor: float = 71.0  # Hz (pyworld's default)
    f0_ceil: float = 800.0  # Hz (pyworld's default)
    sp_dims: int = 0  # > 0: code the spectral envelope to this many mel-cepstral dims and back
    ap_coding: bool = False  # code the aperiodicity to WORLD's band aperiodicity and back


class WorldVocoder(Vocoder):
    name = "world"

    def __init__(self, config: WorldConfig | None = None, device: str = "cpu", sample_rate: int = 16000, **options):
        # WORLD has no mel front-end; the MelSpec only carries the working sample rate
        super().__init__(MelSpec(sample_rate=sample_rate, n_fft=1024, hop_length=80), "cpu")
        self.config = config or WorldConfig(**options)
        if self.config.f0_method not in ("harvest", "dio"):
            raise ValueError(f"Unknown f0_method {self.config.f0_method!r}; expected 'harvest' or 'dio'")

    def config_dict(self) -> dict:
        return {"world": dataclasses.asdict(self.config)}

    def resynthesize(self, x: np.ndarray, fs: int) -> np.ndarray:
        """One waveform (N,) at ``fs`` -> its WORLD re-synthesis, same length."""
        import pyworld

        c = self.config
        x64 = np.ascontiguousarray(x, dtype=np.float64)
        if c.f0_method == "harvest":
            f0, t = pyworld.harvest(x64, fs, f0_floor=c.f0_floor, f0_ceil=c.f0_ceil, frame_period=c.frame_period)
        else:
            f0, t = pyworld.dio(x64, fs, f0_floor=c.f0_floor, f0_ceil=c.f0_ceil, frame_period=c.frame_period)
            f0 = pyworld.stonemask(x64, f0, t, fs)
        sp = pyworld.cheaptrick(x64, f0, t, fs, f0_floor=c.f0_floor)
        ap = pyworld.d4c(x64, f0, t, fs)
        fft_size = (sp.shape[1] - 1) * 2
        if c.sp_dims > 0:
            sp = pyworld.decode_spectral_envelope(pyworld.code_spectral_envelope(sp, fs, c.sp_dims), fs, fft_size)
        if c.ap_coding:
            ap = pyworld.decode_aperiodicity(pyworld.code_aperiodicity(ap, fs), fs, fft_size)
        y = pyworld.synthesize(f0, sp, ap, fs, c.frame_period)
        y = y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
        return y.astype(np.float32)

    def copy_synthesize(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(B, L) clips at ``sample_rate`` -> (B, L) WORLD re-syntheses. Silent clips (no
        voiced frame, nothing to analyse) are returned as they are."""
        audio = np.atleast_2d(audio)
        out = np.empty_like(audio, dtype=np.float32)
        for i, x in enumerate(audio):
            out[i] = x if not np.any(x) else self.resynthesize(x, sample_rate)
        return out


VOCODER = WorldVocoder
