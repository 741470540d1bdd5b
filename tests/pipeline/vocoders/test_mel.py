"""Every mel convention against an independent librosa computation on real speech."""

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.vocoders.griffinlim import GRIFFINLIM_MEL
from pipeline.vocoders.mel import CONVENTIONS, MelSpec


def librosa_mel(y: np.ndarray, m: MelSpec) -> np.ndarray:
    if m.padding == "center":
        spec = librosa.stft(y, n_fft=m.n_fft, hop_length=m.hop_length, win_length=m.win, window="hann",
                            center=True, pad_mode="reflect")
    else:
        p = (m.n_fft - m.hop_length) // 2
        spec = librosa.stft(np.pad(y, (p, p), mode="reflect"), n_fft=m.n_fft, hop_length=m.hop_length,
                            win_length=m.win, window="hann", center=False)
    mel = librosa.filters.mel(sr=m.sample_rate, n_fft=m.n_fft, n_mels=m.n_mels, fmin=m.fmin,
                              fmax=m.f_max) @ np.abs(spec)
    if m.compression == "ln":
        return np.log(np.maximum(mel, m.floor))
    if m.compression == "log10":
        return np.log10(np.maximum(mel, m.floor))
    s = 20 * np.log10(np.maximum(mel, m.floor)) - m.ref_db
    return np.clip((s - m.min_db) / -m.min_db, 0, 1)


@pytest.mark.parametrize("name", [*sorted(CONVENTIONS), "griffinlim"])
def test_convention_matches_librosa_on_real_speech(name, sample_data):
    m = GRIFFINLIM_MEL if name == "griffinlim" else CONVENTIONS[name]
    y, sr = sf.read(sample_data / "speech/psphinx_goforward.wav", dtype="float32")
    y = librosa.resample(y, orig_sr=sr, target_sr=m.sample_rate).astype(np.float32)
    ours = m(torch.from_numpy(np.stack([y, y[::-1].copy()]))).numpy()
    ref = librosa_mel(y, m)
    assert ours.shape[1:] == ref.shape and ours.shape[2] == m.n_frames(len(y))
    assert np.abs(ours[0] - ref).max() < 2e-3
    np.testing.assert_allclose(ours[1], librosa_mel(y[::-1].copy(), m), atol=2e-3)


def test_decompress_inverts_compress():
    mel = torch.rand(2, 80, 10) + 1e-3
    for m in CONVENTIONS.values():
        back = m.decompress(m.compress(mel))
        assert torch.allclose(back, mel, rtol=1e-3 if m.compression == "db" else 1e-5)
