"""Griffin-Lim and WORLD copy synthesis on real speech."""

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.quality import envelope_correlation, quality
from pipeline.vocoders import get_vocoder_class, load_vocoder
from pipeline.vocoders.griffinlim import GRIFFINLIM_MEL, griffin_lim, mel_to_linear


def speech(sample_data):
    return {p.name: sf.read(p, dtype="float32")[0] for p in sorted((sample_data / "speech").glob("*.wav"))}


@pytest.mark.parametrize("name", ["griffinlim", "world"])
def test_copy_synthesis_of_every_real_utterance_keeps_length_and_timing(name, sample_data):
    voc = load_vocoder(name)
    figures = []
    for fname, x in speech(sample_data).items():
        y = voc.copy_synthesize(x[None], 16000)[0]
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        q = quality(x, y)
        assert q["env_corr"] >= 0.9, (fname, q)
        assert 0 < q["mcd"] < 5 and q["lsd"] > 0, (fname, q)
        figures.append(q["mcd"])
    print(f"{name}: mean MCD {np.mean(figures):.3f} dB over {len(figures)} utterances")


def test_griffinlim_batches_clips_and_resamples(sample_data):
    x = speech(sample_data)["psphinx_numbers.wav"][: 2 * 22050]
    batch = np.stack([x, x[::-1].copy(), np.zeros_like(x)])
    voc = load_vocoder("griffinlim", n_iter=8)
    y = voc.copy_synthesize(batch, 22050)  # not its native rate: resampled both ways
    assert y.shape == batch.shape
    assert envelope_correlation(batch[0], y[0], 22050) > 0.9
    assert np.abs(y[2]).max() < 1e-3  # silence stays silence


def test_more_iterations_give_a_more_consistent_spectrogram(sample_data):
    x = torch.from_numpy(speech(sample_data)["psphinx_goforward.wav"])[None]
    m = GRIFFINLIM_MEL
    mag = m.magnitude(x)

    def inconsistency(n_iter):
        y = griffin_lim(mag, m.n_fft, m.hop_length, m.win, n_iter=n_iter, generator=torch.Generator().manual_seed(0))
        rebuilt = m.magnitude(y[:, : x.shape[1]]) if y.shape[1] >= x.shape[1] else m.magnitude(y)
        t = min(rebuilt.shape[-1], mag.shape[-1])
        return float(torch.linalg.norm(rebuilt[..., :t] - mag[..., :t]) / torch.linalg.norm(mag[..., :t]))

    assert inconsistency(32) < 0.8 * inconsistency(2)


def test_our_griffinlim_reaches_librosas_consistency(sample_data):
    x = speech(sample_data)["psphinx_goforward.wav"]
    m = GRIFFINLIM_MEL
    mag = m.magnitude(torch.from_numpy(x)[None])
    ours = griffin_lim(mag, m.n_fft, m.hop_length, m.win, n_iter=32, length=len(x),
                       generator=torch.Generator().manual_seed(0))[0].numpy()
    ref = librosa.griffinlim(mag[0].numpy(), n_iter=32, hop_length=m.hop_length, win_length=m.win,
                             n_fft=m.n_fft, length=len(x), random_state=0)

    def sc(y):  # spectral convergence against the target magnitude
        s = np.abs(librosa.stft(y, n_fft=m.n_fft, hop_length=m.hop_length, win_length=m.win))
        return np.linalg.norm(s - mag[0].numpy()) / np.linalg.norm(mag[0].numpy())

    assert sc(ours) < 1.1 * sc(ref)


def test_nnls_fits_the_mel_better_than_the_pseudo_inverse(sample_data):
    x = torch.from_numpy(speech(sample_data)["psphinx_numbers.wav"])[None]
    m = GRIFFINLIM_MEL
    fb = m.filterbank()
    mel = fb @ m.magnitude(x)
    err = {}
    for method in ("pinv", "nnls"):
        s = mel_to_linear(mel, fb, method)
        assert (s >= 0).all()
        err[method] = float(torch.linalg.norm(fb @ s - mel))
    assert err["nnls"] < err["pinv"]
    with pytest.raises(ValueError, match="pinv"):
        mel_to_linear(mel, fb, "lstsq")


def test_world_options_and_errors(sample_data):
    x = speech(sample_data)["psphinx_goforward.wav"]
    coded = load_vocoder("world", f0_method="dio", sp_dims=40, ap_coding=True)
    y = coded.copy_synthesize(x[None], 16000)[0]
    assert y.shape == x.shape and envelope_correlation(x, y) > 0.85
    with pytest.raises(ValueError, match="f0_method"):
        load_vocoder("world", f0_method="yin")
    with pytest.raises(ValueError, match="valid vocoders"):
        get_vocoder_class("hifigan")
