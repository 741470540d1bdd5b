import numpy as np
import pytest

from pipeline.errors import MediaError
from pipeline.media import decoded_size, iter_clips, probe, read_audio, read_frames, sniff_kind
from tests.conftest import frame_index

SRC_FPS = 30000 / 1001


def expected_frames(start, n, fps=25):
    """Nearest source frame to each grid time (start + i) / fps."""
    return np.array([int(np.floor((start + i) / fps * SRC_FPS + 0.5)) for i in range(n)])


def test_probe_real_media(sample_data):
    dfdc = probe(sample_data / "dfdc/dfdc_train_part_0/brtujopkby.mp4")
    assert (dfdc.video.width, dfdc.video.height) == (1080, 1920)
    assert dfdc.video.fps == pytest.approx(29.97)
    assert dfdc.audio.sample_rate == 44100 and dfdc.duration == pytest.approx(10.01)
    ffpp = probe(sample_data / "ffpp/original_sequences/youtube/c23/videos/004.mp4")
    assert ffpp.audio is None and (ffpp.video.width, ffpp.video.height) == (1280, 720)
    wav = probe(sample_data / "speech/psphinx_numbers.wav")
    assert wav.video is None and wav.audio.sample_rate == 16000 and wav.audio.channels == 1


def test_sniff_and_bad_files(sample_data, tmp_path):
    assert sniff_kind(sample_data / "talking/liveportrait_d10.mp4") == "video"
    assert sniff_kind(sample_data / "speech/psphinx_numbers.wav") == "audio"
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video, just some text that is long enough")
    assert sniff_kind(fake) is None
    with pytest.raises(MediaError) as e:
        probe(fake)
    assert e.value.reason == "wrong_kind" and "notes.mp4" in str(e.value)
    with pytest.raises(MediaError) as e:
        sniff_kind(tmp_path / "absent.mp4")
    assert e.value.reason == "missing"


def test_frames_follow_the_grid_in_one_pass_and_with_seeks(indexed_video):
    starts = [10, 60, 101, 150]
    for gap in (1000, 1):  # one ffmpeg pass through all clips / one seek per clip
        for start, frames in iter_clips(indexed_video, starts, 8, 25, (64, 48), seek_gap=gap):
            diff = frame_index(frames) - expected_frames(start, 8)
            # equal, except where two source frames are equally near (ties within 1 ms)
            assert np.abs(diff).max() <= 1 and (diff == 0).mean() >= 0.75, (gap, start, diff)


def test_a_seek_does_not_shift_the_clip(indexed_video):
    # 4.04 s lies 3 ms after source frame 121: an input seek alone would start at frame 122
    frames = read_frames(indexed_video, 101, 4, 25, (64, 48))
    assert frame_index(frames)[0] == 121 == expected_frames(101, 1)[0]


def test_clip_past_the_end_is_short(indexed_video):
    (start, frames), = list(iter_clips(indexed_video, [200], 32, 25, (64, 48)))
    assert start == 200 and 0 < len(frames) < 32  # 8.5 s = 212 grid frames


def test_audio_timeline_pads_a_late_track(late_audio_video):
    audio = read_audio(late_audio_video, 16000)
    loud = np.flatnonzero(np.abs(audio) > 0.1)
    # tone at 1.0-1.2 s of a track that starts 0.5 s into the file
    assert loud[0] / 16000 == pytest.approx(1.5, abs=1e-3)
    assert loud[-1] / 16000 == pytest.approx(1.7, abs=1e-3)


def test_no_audio_track_is_reported(sample_data):
    with pytest.raises(MediaError) as e:
        read_audio(sample_data / "ffpp/original_sequences/youtube/c23/videos/004.mp4")
    assert e.value.reason == "no_audio"


def test_decoded_size_caps_the_short_side(sample_data):
    info = probe(sample_data / "dfdc/dfdc_sample_real/lynaeydofd.mp4")
    assert decoded_size(info.video, 720) == (1280, 720)
    assert decoded_size(info.video, 0) == (1920, 1080)
    frames = read_frames(sample_data / "dfdc/dfdc_sample_real/lynaeydofd.mp4", 25, 3, 25, (1280, 720))
    assert frames.shape == (3, 720, 1280, 3) and frames.std() > 10


def test_a_damaged_keyframe_after_a_seek_falls_back_to_decoding_through(sample_data):
    """The FF++ sample's keyframe at 10 s is damaged: seeking there decodes to a green frame.
    The clip must equal the one decoded straight through from the start."""
    path = sample_data / "ffpp/original_sequences/youtube/c23/videos/004.mp4"
    (_, sought), = list(iter_clips(path, [293], 4, 25, (320, 180), seek_gap=1))
    through = dict(iter_clips(path, [0, 293], 4, 25, (320, 180), seek_gap=10_000))[293]
    np.testing.assert_array_equal(sought, through)
    assert sought[..., 1].mean() < 100  # not the green of a broken decode
