import numpy as np
import soundfile as sf

from pipeline.quality import envelope_correlation, quality


def test_figures_grow_with_the_damage(sample_data):
    x, sr = sf.read(sample_data / "speech/psphinx_numbers.wav", dtype="float32")
    same = quality(x, x.copy())
    assert same["mcd"] == 0 and same["lsd"] == 0 and same["env_corr"] > 0.9999
    rng = np.random.default_rng(0)
    figs = [quality(x, (x + a * rng.standard_normal(len(x))).astype(np.float32)) for a in (0.003, 0.03)]
    assert 0 < figs[0]["mcd"] < figs[1]["mcd"] and 0 < figs[0]["lsd"] < figs[1]["lsd"]


def test_envelope_correlation_sees_a_timing_shift(sample_data):
    x, sr = sf.read(sample_data / "speech/psphinx_numbers.wav", dtype="float32")
    shifted = np.roll(x, int(0.25 * sr))  # a quarter of a second late
    assert envelope_correlation(x, x) > 0.999
    assert envelope_correlation(x, shifted) < 0.6


def test_silence_gives_nan_not_an_error():
    z = np.zeros(16000, np.float32)
    q = quality(z, z)
    assert all(np.isnan(v) for v in q.values())
