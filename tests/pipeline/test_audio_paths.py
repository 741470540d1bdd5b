"""Audio read in-process (soundfile + soxr) agrees with the ffmpeg path on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import media
from pipeline.errors import MediaError
from tests.conftest import ffmpeg

SPEECH = "speech/psphinx_librivox_sense_and_sensibility_01_austen_64kb-0870.wav"


@pytest.fixture(scope="module")
def variants(sample_data, tmp_path_factory):
    """The same real utterance at other rates, in stereo, as flac; plus files that must take the
    ffmpeg path (5.1, mp3)."""
    d = tmp_path_factory.mktemp("audio")
    src = str(sample_data / SPEECH)
    out = {"16k mono wav": sample_data / SPEECH}
    for name, args in [("48k stereo wav", ["-ac", "2", "-ar", "48000"]), ("44.1k mono wav", ["-ar", "44100"]),
                       ("8k mono wav", ["-ar", "8000"]), ("22.05k mono flac", ["-ar", "22050"]),
                       ("5.1 wav", ["-af", "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0"]),
                       ("mp3", ["-ar", "44100", "-b:a", "128k"])]:
        suffix = ".flac" if "flac" in name else ".mp3" if name == "mp3" else ".wav"
        f = d / (name.replace(" ", "_") + suffix)
        ffmpeg("-i", src, *args, str(f))
        out[name] = f
    return out


def _ffmpeg_path(monkeypatch):
    monkeypatch.setattr(media, "_soundfile", lambda path: None)


@pytest.mark.parametrize("name", ["16k mono wav", "48k stereo wav", "44.1k mono wav", "8k mono wav",
                                  "22.05k mono flac"])
def test_in_process_read_agrees_with_ffmpeg(variants, name, monkeypatch):
    path = variants[name]
    assert media._soundfile(path) is not None  # this file is read in-process
    fast_info, fast = media.probe(path), media.read_audio(path, 16000)
    _ffmpeg_path(monkeypatch)
    slow_info, slow = media.probe(path), media.read_audio(path, 16000)
    assert fast_info == slow_info  # same streams, rates, channels and duration (to 10 ms, as ffmpeg says)
    assert len(fast) == len(slow) and fast.dtype == np.float32
    # sample 0 is time 0 on both paths: the best alignment is no shift at all
    lags = range(-40, 41)
    n = len(slow) - 80
    scores = [float(np.dot(fast[40 + k: 40 + k + n], slow[40: 40 + n])) for k in lags]
    assert lags[int(np.argmax(scores))] == 0
    snr = 10 * np.log10(np.sum(slow ** 2) / (np.sum((fast - slow) ** 2) + 1e-30))  # same rate: identical
    # the two resamplers differ in their filters; down-sampling keeps speech's band, where both
    # are exact; up-sampling from 8 kHz differs above 4 kHz, where speech has little energy
    assert snr > (30 if name.startswith("8k") else 60), snr


def test_other_formats_take_the_ffmpeg_path(variants, sample_data, tmp_path):
    assert media._soundfile(variants["5.1 wav"]) is None  # more than two channels: ffmpeg's downmix
    assert media._soundfile(variants["mp3"]) is None  # lossy, with encoder delay
    assert media._soundfile(sample_data / "talking/liveportrait_d10.mp4") is None
    assert len(media.read_audio(variants["5.1 wav"])) == len(media.read_audio(variants["16k mono wav"]))
    broken = tmp_path / "broken.wav"
    broken.write_text("not a wav file at all, only text\n" * 10)
    assert media._soundfile(broken) is None
    with pytest.raises(MediaError) as e:
        media.probe(broken)
    assert e.value.reason in ("wrong_kind", "decode_error")
