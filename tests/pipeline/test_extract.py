"""The extract stage end to end on real media (plus one real face with synthetic timing)."""

import json
import shutil

import numpy as np
import pytest
import zarr

from pipeline import store as st
from pipeline.extract import ExtractConfig, extract, plan_audio_starts, plan_starts
from pipeline.faces import FaceConfig
from pipeline.inspect import inspect_store
from pipeline.manifest import ManifestRow, RecipeResult, write_manifest
from pipeline.media import read_audio
from tests.conftest import ffmpeg

CFG = ExtractConfig(frames_per_clip=25, clips_per_video=3, clips_per_audio=3, items_per_shard=2, face=FaceConfig(detect_every=2))
FLASHES = (2.8, 5.4)  # seconds: face brightened and a tone starts, 0.2 s each


def test_plan_starts_spreads_clips_without_overlap():
    assert plan_starts(150, 25, 3) == [0, 62, 125]
    assert plan_starts(60, 25, 4) == [0, 35]  # only two clips fit
    assert plan_starts(30, 25, 4) == [2]  # one clip, centred
    assert plan_starts(20, 25, 4) == []


@pytest.fixture(scope="module")
def corpus(sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    shutil.copy(sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", root / "talk.mp4")
    shutil.copy(sample_data / "ffpp/original_sequences/youtube/c23/videos/004.mp4", root / "noaudio.mp4")
    shutil.copy(sample_data / "speech/psphinx_numbers.wav", root / "speech.wav")
    enable = "+".join(f"between(t,{t},{t + 0.2})" for t in FLASHES)
    ffmpeg("-loop", "1", "-framerate", "25", "-i", str(sample_data / "faces/skimage_astronaut.png"),
           "-f", "lavfi", "-i", f"aevalsrc='if({enable.replace(',', chr(92) + ',')}\\,sin(2*PI*1000*t)\\,0)':s=44100:d=6",
           "-vf", f"eq=brightness=0.3:enable='{enable}',format=yuv420p", "-t", "6",
           "-c:v", "libx264", "-c:a", "aac", "-shortest", str(root / "flash.mp4"))
    # a download cut short: moov first, then only 60% of the data
    ffmpeg("-i", str(root / "talk.mp4"), "-c", "copy", "-movflags", "+faststart", str(root / "full.mp4"))
    data = (root / "full.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    (root / "full.mp4").unlink()
    (root / "notes.mp4").write_text("not a video " * 20)
    rows = [
        ManifestRow(id="talk", path="talk.mp4", video_label="real", audio_label="real", has_audio=True),
        ManifestRow(id="noaudio", path="noaudio.mp4", video_label="real", has_audio=False),
        ManifestRow(id="speech", path="speech.wav", media="audio", audio_label="real", has_audio=True),
        ManifestRow(id="flash", path="flash.mp4", video_label="real", audio_label="real", has_audio=True),
        ManifestRow(id="cut", path="cut.mp4", video_label="real", audio_label="real", has_audio=True),
        ManifestRow(id="gone", path="gone.mp4", video_label="fake", method="unknown", has_audio=True),
        ManifestRow(id="notes", path="notes.mp4", video_label="real", has_audio=True),
    ]
    manifest = root / "manifest.jsonl"
    write_manifest(RecipeResult(rows), manifest, "test", root)
    return root, manifest


@pytest.fixture(scope="module")
def extracted(corpus, tmp_path_factory):
    root, manifest = corpus
    store = tmp_path_factory.mktemp("stores") / "s.zarr"
    summary = extract(manifest, store, config=CFG, workers=0, threads=1, progress=False)
    return store, summary, root


def sample_index(store, item_id):
    ids = zarr.open_group(str(store), mode="r")["meta/id"][:]
    return np.flatnonzero(ids == item_id)


def test_summary_counts_failures_without_stopping(extracted):
    store, summary, _ = extracted
    assert summary.errors == {} and summary.computed == summary.shards == 4
    assert summary.failures_by_reason["missing"] == 1  # gone.mp4
    assert summary.failures_by_reason["wrong_kind"] == 1  # notes.mp4, a text file
    info = inspect_store(store)
    assert info["failures"]["items_by_reason"] == {"missing": 1, "wrong_kind": 1}
    assert info["failures"]["samples_by_reason"]["decode_error"] >= 1  # the clips past cut.mp4's end
    assert info["shards"] == {"done": 4, "total": 4}
    # every failure is listed, whole items with clip None
    whole = {(f["id"], f["reason"]) for f in summary.failures if f["clip"] is None}
    assert whole == {("gone", "missing"), ("notes", "wrong_kind")}
    assert any(f["id"] == "cut" and f["reason"] == "decode_error" for f in summary.failures)


def test_item_duration_is_recorded_with_each_clip(extracted):
    store, _, root = extracted
    g = zarr.open_group(str(store), mode="r")
    talk, speech = sample_index(store, "talk"), sample_index(store, "speech")
    assert g["meta/duration"][talk[0]] == pytest.approx(8.0, abs=0.1)  # the container's duration
    assert g["meta/duration"][speech[-1]] == pytest.approx(len(read_audio(root / "speech.wav")) / 16000, abs=0.01)
    assert np.isnan(g["meta/duration"][sample_index(store, "gone")]).all()


def test_arrays_have_final_shapes(extracted):
    store, _, _ = extracted
    g = zarr.open_group(str(store), mode="r")
    n = 7 * 3
    assert g["video/face"].shape == (n, 25, 128, 128, 3)
    assert g["video/mouth"].shape == (n, 25, 96, 96, 3)
    assert g["audio/real"].shape == (n, 25 * 640)
    assert g["video/face"].shards[0] == 6 and g["video/face"].chunks[0] == 1


def test_audio_is_the_exact_span_of_each_clip(extracted):
    store, _, root = extracted
    g = zarr.open_group(str(store), mode="r")
    for item, path in (("talk", "talk.mp4"), ("speech", "speech.wav")):
        full = read_audio(root / path)
        for i in sample_index(store, item):
            assert g["meta/has_audio"][i]
            start = g["meta/start_frame"][i] * 640
            np.testing.assert_array_equal(g["audio/real"][i], full[start : start + 25 * 640])


def test_video_and_audio_stay_in_sync(extracted):
    """The face is brightened exactly while a tone plays: in every clip holding a flash, the
    first bright face crop and the tone's onset fall on the same 40 ms frame."""
    store, _, _ = extracted
    g = zarr.open_group(str(store), mode="r")
    seen = 0
    for i in sample_index(store, "flash"):
        assert g["meta/status"][i] == st.STATUS["ok"]
        brightness = g["video/face"][i].reshape(25, -1).mean(axis=1)
        bright = np.flatnonzero(brightness > brightness.min() + 25)
        audio = g["audio/real"][i]
        loud = np.flatnonzero(np.abs(audio) > 0.3)
        if len(bright) == 0:
            assert len(loud) == 0
            continue
        seen += 1
        assert abs(loud[0] - bright[0] * 640) < 64, (i, bright[0], loud[0])
    assert seen == 2


def test_missing_audio_is_expected_for_noaudio_items(extracted):
    store, _, _ = extracted
    g = zarr.open_group(str(store), mode="r")
    for i in sample_index(store, "noaudio"):
        assert g["meta/has_video"][i] and not g["meta/has_audio"][i]
        assert g["meta/status"][i] == st.STATUS["ok"]
        assert not g["audio/real"][i].any()
    for i in sample_index(store, "speech"):
        assert not g["meta/has_video"][i] and g["meta/status"][i] == st.STATUS["ok"]


def test_a_truncated_download_keeps_its_good_clips(extracted):
    store, _, _ = extracted
    g = zarr.open_group(str(store), mode="r")
    idx = sample_index(store, "cut")
    status = g["meta/status"][idx]
    assert status[0] == st.STATUS["ok"] and st.STATUS["failed"] in status
    marker_failures = [f for m in st.all_markers(store, "extract", "samples") for f in m["failures"]]
    cut = [f for f in marker_failures if f["id"] == "cut"]
    assert {f["reason"] for f in cut} == {"decode_error", "no_audio"}  # both tracks end early


def test_metadata_is_stored_per_sample(extracted):
    store, _, _ = extracted
    g = zarr.open_group(str(store), mode="r")
    i = sample_index(store, "talk")[1]
    assert g["meta/video_label"][i] == 0 and g["meta/audio_label"][i] == 0
    conf = g["video/confidence"][i]
    assert np.isnan(conf[1]) and conf[0] > 0.9  # detected on even frames only
    box = g["video/box"][i]
    assert (box[:, 2] > box[:, 0]).all() and (box[:, 3] <= 512 * 1.05).all()
    row = st.item_row(g, g["meta/item"][i])
    assert row["id"] == "talk"
    assert g["meta/id"][sample_index(store, "gone")[0]] == "gone"
    assert g["meta/method"][sample_index(store, "gone")[0]] == "unknown"


def test_rerun_skips_done_shards_and_a_changed_config_is_refused(extracted, corpus):
    store, _, _ = extracted
    _, manifest = corpus
    again = extract(manifest, store, config=CFG, workers=0, progress=False)
    assert again.computed == 0 and again.skipped == 4
    with pytest.raises(st.StoreMismatch, match="frames_per_clip: 25 -> 16"):
        extract(manifest, store, config=ExtractConfig(frames_per_clip=16), workers=0, progress=False)
    # device and batch size do not change results: not a mismatch
    same = ExtractConfig(**{**CFG.to_dict(), "face": {**CFG.to_dict()["face"], "batch_size": 3}})
    assert extract(manifest, store, config=same, workers=0, progress=False).computed == 0


def test_a_lost_marker_redoes_only_its_shard(corpus, extracted, tmp_path):
    store, _, _ = extracted
    _, manifest = corpus
    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    shutil.rmtree(st.marker_path(copy, "extract", "samples", 1))
    before = zarr.open_group(str(copy), mode="r")["video/face"][2 * 3 : 4 * 3]
    summary = extract(manifest, copy, config=CFG, workers=0, threads=1, progress=False)
    assert summary.computed == 1 and summary.skipped == 3
    np.testing.assert_array_equal(zarr.open_group(str(copy), mode="r")["video/face"][6:12], before)


def test_extract_reads_the_probe_the_manifest_recorded_and_probes_a_changed_file_again(sample_data, tmp_path,
                                                                                       monkeypatch):
    """Files are probed once, when indexed: extract takes duration, streams and rates from the
    manifest (same store as probing again), and probes only a file whose size changed since."""
    import json

    import pipeline.extract as ex
    from pipeline.recipes import prepare

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", corpus / "v.mp4")
    shutil.copy(sample_data / "speech/psphinx_numbers.wav", corpus / "a.wav")
    shutil.copy(sample_data / "speech/psphinx_goforward.wav", corpus / "b.wav")
    manifest = tmp_path / "m.jsonl"
    write_manifest(prepare("folder", corpus, default_label="real"), manifest, "folder", corpus)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert all(r["extra"]["bytes"] == (corpus / r["path"]).stat().st_size for r in rows)
    probed = []
    real_probe = ex.probe
    monkeypatch.setattr(ex, "probe", lambda p: probed.append(p.name) or real_probe(p))
    cfg = ExtractConfig(frames_per_clip=8, clips_per_video=2, clips_per_audio=2, face=FaceConfig(detect_every=8))

    extract(manifest, tmp_path / "recorded.zarr", config=cfg, workers=0, progress=False)
    assert probed == []
    # the same manifest without what the probe recorded: every file probed, the same store
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({**r, "extra": {}}) + "\n" for r in rows))
    shutil.copy(tmp_path / "m.meta.json", tmp_path / "bare.meta.json")
    extract(bare, tmp_path / "bare.zarr", config=cfg, workers=0, progress=False)
    assert sorted(probed) == ["a.wav", "b.wav", "v.mp4"]
    a, b = zarr.open_group(str(tmp_path / "recorded.zarr"), mode="r"), zarr.open_group(str(tmp_path / "bare.zarr"), mode="r")
    for name in ("video/face", "video/box", "audio/real", "meta/status", "meta/duration", "meta/source_size"):
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)

    # a file replaced since indexing (another size): probed again, its new content extracted
    probed.clear()
    shutil.copy(sample_data / "speech/psphinx_numbers.wav", corpus / "b.wav")
    extract(manifest, tmp_path / "changed.zarr", config=cfg, workers=0, progress=False)
    assert probed == ["b.wav"]
    c = zarr.open_group(str(tmp_path / "changed.zarr"), mode="r")
    ids = list(c["meta/id"][:])
    np.testing.assert_array_equal(c["audio/real"][ids.index("b")], c["audio/real"][ids.index("a")])


def test_plan_audio_starts_takes_every_clip_on_the_hop_grid():
    assert plan_audio_starts(100, 25, 25, 64) == [0, 25, 50, 75]  # clips touch
    assert plan_audio_starts(100, 25, 10, 64) == [0, 10, 20, 30, 40, 50, 60, 70]  # overlap
    assert plan_audio_starts(100, 25, 10, 3) == [0, 38, 75]  # capped: spread over the file
    assert plan_audio_starts(20, 25, 10, 64) == []


def test_an_audio_file_gives_every_clip_with_a_hop_and_video_items_keep_their_count(sample_data, tmp_path):
    """Real speech beside a real video: the speech gives every overlapping clip of its hop
    grid (more than the video's clips_per_video), each the exact span of the file; the store's
    slots per item follow the longest audio item; the video's extra slots are unused."""
    shutil.copy(sample_data / "speech/psphinx_numbers.wav", tmp_path / "speech.wav")
    shutil.copy(sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", tmp_path / "talk.mp4")
    from pipeline.recipes import prepare

    manifest = tmp_path / "m.jsonl"
    write_manifest(prepare("folder", tmp_path, default_label="real"), manifest, "folder", tmp_path)
    cfg = ExtractConfig(frames_per_clip=50, audio_hop_frames=20, clips_per_video=2, items_per_shard=1,
                        face=FaceConfig(detect_every=8))
    store = tmp_path / "s.zarr"
    extract(manifest, store, config=cfg, workers=0, progress=False)
    audio = read_audio(tmp_path / "speech.wav", 16000)
    total = int(len(audio) * 25 / 16000)
    expected = list(range(0, total - 50 + 1, 20))
    assert len(expected) > 2
    g = zarr.open_group(str(store), mode="r")
    plan = st.store_attrs(store)["stages"]["extract"]
    C = plan["clips_per_item"]
    assert C == len(expected) and plan["n_samples"] == 2 * C
    item, status = g["meta/item"][:], g["meta/status"][:]
    order = [json.loads(r)["path"] for r in g["items/row"][:]]
    if order[0] != "speech.wav":
        item = 1 - item
    speech = np.flatnonzero((item == 0) & (status == st.STATUS["ok"]))
    assert g["meta/start_frame"][:][speech].tolist() == expected
    for i, k in zip(speech, expected):  # each clip is its 2 s of the file, 0.8 s after the last
        np.testing.assert_array_equal(g["audio/real"][i], audio[k * 640 : k * 640 + 32000])
    video_ok = np.flatnonzero((item == 1) & (status <= st.STATUS["partial"]))
    assert len(video_ok) == 2 and (status[item == 1] == st.STATUS["unused"]).sum() == C - 2


def test_an_utterance_shorter_than_a_clip_gives_one_clip_of_itself_repeated(sample_data, tmp_path):
    """codec2_wia_16kHz.wav is 1.0 s of real speech: with 1.28 s clips it gives one clip, the
    utterance then its start again; below min_audio_seconds it is too short."""
    from pipeline.recipes import prepare

    shutil.copy(sample_data / "speech/codec2_wia_16kHz.wav", tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    write_manifest(prepare("folder", tmp_path, default_label="real"), manifest, "folder", tmp_path)
    audio = read_audio(tmp_path / "a.wav", 16000)
    assert 16000 * 0.5 < len(audio) < 20480
    extract(manifest, tmp_path / "s.zarr", config=ExtractConfig(), workers=0, progress=False)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    ok = np.flatnonzero(g["meta/status"][:] == st.STATUS["ok"])
    assert len(ok) == 1
    clip = g["audio/real"][ok[0]]
    np.testing.assert_array_equal(clip[: len(audio)], audio)
    np.testing.assert_array_equal(clip[len(audio):], audio[: 20480 - len(audio)])
    assert g["meta/duration"][ok[0]] == pytest.approx(len(audio) / 16000, abs=0.01)
    summary = extract(manifest, tmp_path / "t.zarr", config=ExtractConfig(min_audio_seconds=2.0), workers=0,
                      progress=False)
    assert [f["reason"] for f in summary.failures] == ["too_short"]


def test_audio_only_takes_a_video_as_its_soundtrack(sample_data, tmp_path):
    """--audio-only on a real talking-head video: no face searched, every clip of the soundtrack,
    each sample complete (status ok, no video expected)."""
    from click.testing import CliRunner

    from pipeline.cli import main
    from pipeline.recipes import prepare

    shutil.copy(sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", tmp_path / "talk.mp4")
    manifest = tmp_path / "m.jsonl"
    write_manifest(prepare("folder", tmp_path, default_label="real"), manifest, "folder", tmp_path)
    store = tmp_path / "s.zarr"
    r = CliRunner().invoke(main, ["extract", str(manifest), "--store", str(store), "--audio-only", "--clip-seconds",
                                  "2", "--workers", "0", "--no-progress"])
    assert r.exit_code == 0, r.output
    g = zarr.open_group(str(store), mode="r")
    ok = g["meta/status"][:] == st.STATUS["ok"]
    audio = read_audio(tmp_path / "talk.mp4", 16000)
    assert ok.sum() == int(len(audio) * 25 / 16000) // 50 >= 3
    assert not g["meta/has_video"][:].any() and g["meta/has_audio"][:][ok].all()
    k = int(g["meta/start_frame"][:][ok][1])
    np.testing.assert_array_equal(g["audio/real"][int(np.flatnonzero(ok)[1])], audio[k * 640 : k * 640 + 32000])
