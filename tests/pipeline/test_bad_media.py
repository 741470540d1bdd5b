"""The bad-input suite on real media made broken (cut, corrupted, stripped of a stream,
re-encoded from ../shared/data), through the real commands: manifest, extract, convert,
build-shards. Each file gives its recorded reason (or is handled: several faces, 48x48 and 4K
frames), the run goes on, and the good file's samples are the same as when it is extracted alone."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import ffmpeg, write_unreadable_media

pytestmark = pytest.mark.slow  # ~3-5 min on a shared 2-core machine
ARGS = ["--workers", "0", "--threads", "1", "--frames-per-clip", "8", "--clips-per-video", "1", "--clips-per-audio", "1",
        "--items-per-shard", "1", "--detect-every", "8", "--no-progress"]
TALKING = "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4"
SPEECH = "speech/psphinx_numbers.wav"
OTHER = "talking/liveportrait_d10.mp4"


@pytest.fixture(scope="session")
def broken_corpus(sample_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("broken")
    a, w = str(sample_data / TALKING), str(sample_data / SPEECH)
    ffmpeg("-i", a, "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(d / "good.mp4"))
    write_unreadable_media(sample_data, d)
    ffmpeg("-i", a, "-t", "0.2", "-c:v", "libx264", "-preset", "ultrafast", str(d / "short.mp4"))
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=128x128:r=25:d=1", "-f", "lavfi", "-i", "sine=d=1",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(d / "noface.mp4"))
    ffmpeg("-i", str(d / "good.mp4"), "-an", "-c", "copy", str(d / "noaudio.mp4"))
    ffmpeg("-i", str(d / "good.mp4"), "-vn", "-c", "copy", str(d / "audioonly.m4a"))
    ffmpeg("-display_rotation", "90", "-i", str(d / "good.mp4"), "-c", "copy", str(d / "rotated.mp4"))
    ffmpeg("-i", str(d / "good.mp4"), "-vf", "select='not(eq(mod(n\\,4)\\,1))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(d / "vfr.mp4"))
    # two people side by side (the sample talking head, 512x512, scaled to 360x360, beside another);
    # the talking head in 48x48 frames and, pillarboxed, in 3840x2160 frames
    ffmpeg("-i", str(d / "good.mp4"), "-i", str(sample_data / OTHER), "-t", "1", "-filter_complex",
           "[0:v]scale=-2:360[a];[1:v]scale=-2:360[b];[a][b]hstack", "-an", "-c:v", "libx264", "-preset",
           "ultrafast", str(d / "twofaces.mp4"))
    ffmpeg("-i", str(d / "good.mp4"), "-vf", "scale=48:48", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy",
           str(d / "tiny.mp4"))
    ffmpeg("-i", str(d / "good.mp4"), "-vf", "scale=2160:2160,pad=3840:2160:840:0", "-c:v", "libx264", "-preset", "ultrafast", "-c:a",
           "copy", str(d / "huge.mp4"))
    for name, opts in [("r8k", ["-ar", "8000"]), ("r48k", ["-ar", "48000"]), ("stereo", ["-ac", "2"]),
                       ("surround51", ["-ac", "6"]), ("with space é", [])]:
        ffmpeg("-i", w, "-t", "1.5", *opts, str(d / f"{name}.wav"))
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1.5", str(d / "silent.wav"))
    return d


def _manifest(corpus, out):
    res = CliRunner().invoke(main, ["manifest", "folder", str(corpus), "-o", str(out), "--default-label", "real"])
    assert res.exit_code == 0, res.output
    return out


def _extract(manifest, store):
    res = CliRunner().invoke(main, ["extract", str(manifest), "--store", str(store), *ARGS, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


def test_broken_media_are_recorded_and_the_rest_of_the_run_is_intact(broken_corpus, tmp_path):
    manifest = _manifest(broken_corpus, tmp_path / "m.jsonl")
    failures = {json.loads(x)["path"]: json.loads(x)["reason"]
                for x in (tmp_path / "m.failures.jsonl").read_text().splitlines()}
    assert failures == {"zero.mp4": "wrong_kind", "text.mp4": "wrong_kind", "truncated.mp4": "decode_error"}

    store = tmp_path / "s.zarr"
    summary = _extract(manifest, store)
    assert summary["errors"] == {}
    assert {(f["id"], f["reason"]) for f in summary["failures"]} == {("noface", "no_face"), ("short", "too_short")}
    g = zarr.open_group(str(store), mode="r")
    got = {str(i): (bool(v), bool(a), int(s)) for i, v, a, s in
           zip(g["meta/id"][:], g["meta/has_video"][:], g["meta/has_audio"][:], g["meta/status"][:])}
    video_ok, audio_ok, failed = (True, True, 0), (False, True, 0), (False, False, 2)
    assert got == {"good": video_ok, "rotated": video_ok, "vfr": video_ok, "noaudio": (True, False, 0),
                   "noface": (False, True, 1), "short": failed, "audioonly": audio_ok, "r8k": audio_ok,
                   "r48k": audio_ok, "stereo": audio_ok, "surround51": audio_ok, "silent": audio_ok,
                   "with space é": audio_ok, "twofaces": (True, False, 0), "tiny": video_ok, "huge": video_ok}
    ids = [str(i) for i in g["meta/id"][:]]
    audio = {i: g["audio/real"][k] for k, i in enumerate(ids)}
    assert np.all(audio["silent"] == 0) and np.abs(audio["r48k"]).max() > 0.1
    # every channel layout and rate gives the same 16 kHz mono speech (within resampling error)
    for name in ("stereo", "surround51", "with space é", "r48k"):
        np.testing.assert_allclose(audio[name], audio["with space é"], atol=2e-3, err_msg=name)

    # frame sizes: the same face, found in 48x48 and in 4K frames, its box scaled with the frame
    at = {i: ids.index(i) for i in ("good", "twofaces", "tiny", "huge")}
    good_box = g["video/box"][at["good"]].mean(axis=0)
    width = good_box[2] - good_box[0]
    for name, scale, left in [("tiny", 48 / 512, 0), ("huge", 2160 / 512, 840)]:  # huge: pillarboxed
        box = (g["video/box"][at[name]].mean(axis=0) - [left, 0, left, 0]) / scale  # back in the 512x512 frame
        assert np.abs(box - good_box).max() < 0.1 * width, (name, box, good_box)
        assert g["meta/n_faces"][at[name]] == 1
    # several faces: both seen, one followed: the talking head (the larger, left one), wholly in its half
    assert g["meta/n_faces"][at["twofaces"]] == 2
    box = g["video/box"][at["twofaces"]]
    assert box[:, 2].max() < 360 and np.abs(box.mean(axis=0) * 512 / 360 - good_box).max() < 0.1 * width
    assert np.isfinite(g["video/confidence"][at["twofaces"]]).any()

    # the good file alone gives the same samples: the broken ones changed nothing else
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(broken_corpus / "good.mp4", alone / "good.mp4")
    solo = tmp_path / "solo.zarr"
    _extract(_manifest(alone, tmp_path / "solo.jsonl"), solo)
    s = zarr.open_group(str(solo), mode="r")
    k = ids.index("good")
    for name in ("video/face", "video/box", "audio/real"):
        np.testing.assert_array_equal(g[name][k], s[name][0], err_msg=name)

    # convert and build-shards go through the same store: no audio / no face items are skipped
    res = CliRunner().invoke(main, ["convert", "--store", str(store), "--vocoder", "griffinlim", "--option",
                                    "n_iter=4", "--workers", "0", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    conv = json.loads(res.output[res.output.index("{"):])
    assert conv["counts"]["samples"] == sum(a for _, a, _ in got.values()) and conv["counts"]["failed"] == 0
    res = CliRunner().invoke(main, ["build-shards", "--store", str(store), "--out", str(tmp_path / "o.zarr"),
                                    "--workers", "0", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["verify", "--store", str(tmp_path / "o.zarr")])
    assert res.exit_code == 0 and " 0 mismatch, 0 broken" in res.output, res.output
