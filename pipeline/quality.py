"""Quality figures of a converted clip against its real clip (same length, same rate).

- **MCD** (mel-cepstral distortion, dB): ``10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` per frame
  over mel-cepstral coefficients 1..24 (c0, the energy, excluded), averaged over the frames
  where the real clip is within 50 dB of its loudest frame. The mel-cepstrum here is the cosine
  transform of the natural-log mel amplitude spectrum (80 bands, 64 ms windows, 16 ms hop at
  16 kHz), scaled as a cepstrum (``log|X(w)| = c0 + 2 sum_d c_d cos(d w)``): an approximation of
  the SPTK mel-cepstrum, fine for comparing vocoders with each other, not for comparing with
  numbers computed by other tools. No time warping: copy synthesis keeps the timing.
- **LSD** (log-spectral distance, dB): per frame, the RMS over frequency of the difference of the
  two log power spectra (10 log10), averaged over the same frames.
- **env_corr**: Pearson correlation of the two energy envelopes (RMS in 20 ms windows every
  10 ms). Near 1 when the conversion keeps the timing of the speech.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.fft import dct

from .vocoders.mel import MelSpec

def _power_spec(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """(N,) -> (T, n_fft // 2 + 1) power spectrogram (float64), periodic Hann, centred frames:
    the STFT of :class:`~pipeline.vocoders.mel.MelSpec`."""
    wav = torch.from_numpy(np.asarray(x, dtype=np.float64))[None]
    return (_spec(n_fft, hop).magnitude(wav)[0].T ** 2).numpy()


def _mel_fb(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney mel filterbank up to sr / 2 (librosa's, as MelSpec's)."""
    return MelSpec(sample_rate=sr, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels).filterbank(
        dtype=torch.float64).numpy()


def _spec(n_fft: int, hop: int) -> MelSpec:
    return MelSpec(sample_rate=16000, n_fft=n_fft, hop_length=hop)  # only the STFT is used: rate and bands unused


def _active(power: np.ndarray, range_db: float = 50.0) -> np.ndarray:
    energy = 10 * np.log10(power.sum(axis=1) + 1e-12)
    return energy > energy.max() - range_db


def quality(real: np.ndarray, fake: np.ndarray, sr: int = 16000) -> dict[str, float]:
    """MCD (dB), LSD (dB) and energy-envelope correlation of ``fake`` against ``real``."""
    if real.shape != fake.shape:
        raise ValueError(f"Expected clips of the same length, found {real.shape} and {fake.shape}")
    pr, pf = _power_spec(real), _power_spec(fake)
    active = _active(pr)
    if not active.any() or not np.any(real):
        return {"mcd": float("nan"), "lsd": float("nan"), "env_corr": float("nan")}
    fb = _mel_fb(sr, 1024, 80)
    cr, cf = _mel_cepstrum(pr, fb), _mel_cepstrum(pf, fb)
    mcd = (10 / np.log(10)) * np.sqrt(2 * ((cr - cf) ** 2).sum(axis=1))
    lsd = np.sqrt(((10 * np.log10(pr + 1e-10) - 10 * np.log10(pf + 1e-10)) ** 2).mean(axis=1))
    return {"mcd": float(mcd[active].mean()), "lsd": float(lsd[active].mean()),
            "env_corr": envelope_correlation(real, fake, sr)}


def _mel_cepstrum(power: np.ndarray, fb: np.ndarray, order: int = 24) -> np.ndarray:
    """(T, F) power -> (T, order) cepstral coefficients 1..order of the log mel amplitude."""
    log_amp = 0.5 * np.log(power @ fb.T + 1e-10)  # (T, M)
    m = log_amp.shape[1]
    # c_d = (1/M) sum_k log|X(w_k)| cos(d w_k), w_k = pi (k + 1/2) / M: DCT-II scaled by 1 / (2M)
    return dct(log_amp, type=2, axis=1)[:, 1 : order + 1] / (2 * m)


def energy_envelope(x: np.ndarray, sr: int = 16000, win_s: float = 0.02, hop_s: float = 0.01) -> np.ndarray:
    win, hop = int(sr * win_s), int(sr * hop_s)
    pad = np.pad(x.astype(np.float64), (win // 2, win // 2))
    frames = np.lib.stride_tricks.sliding_window_view(pad, win)[::hop]
    return np.sqrt((frames ** 2).mean(axis=1))


def envelope_correlation(real: np.ndarray, fake: np.ndarray, sr: int = 16000) -> float:
    a, b = energy_envelope(real, sr), energy_envelope(fake, sr)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
