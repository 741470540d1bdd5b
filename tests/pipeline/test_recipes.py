"""Dataset recipes on real media: the DFDC and FF++ samples as they are, and the layouts of the
other datasets rebuilt in ``tmp_path`` from real sample files (symlinked, or converted with
soundfile/ffmpeg). Synthetic files appear only as bad inputs."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from pipeline.manifest import (
    Failure,
    manifest_root,
    read_failures,
    read_manifest,
    sidecar_paths,
    validate_rows,
    write_manifest,
)
from pipeline.recipes import RECIPES, prepare, recipe_options
from pipeline.resources import manifests_dir
from tests.conftest import ffmpeg

TALKING = "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4"  # video + AAC audio
PORTRAIT = "talking/liveportrait_d10.mp4"  # video + AAC audio
FFPP_FAKE = "ffpp/manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4"  # video, no audio
FFPP_REAL = "ffpp/original_sequences/youtube/c23/videos/004.mp4"  # video, no audio
SPEECH = "speech/psphinx_goforward.wav"  # 16 kHz mono PCM16


def link(src, dst):
    """Hard-link (or copy) ``src`` to ``dst``, creating the folders above ``dst``. Not a
    symlink: one leading out of the corpus is refused (``outside_root``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy(src, dst)
    return dst


def by_id(result):
    return {r.id: r for r in result.rows}


@pytest.fixture(scope="session")
def speech_flac(sample_data, tmp_path_factory):
    """A real speech wav converted to FLAC (as ASVspoof ships it)."""
    import soundfile as sf

    out = tmp_path_factory.mktemp("flac") / "speech.flac"
    data, sr = sf.read(sample_data / SPEECH)
    sf.write(out, data, sr, format="FLAC")
    return out


@pytest.fixture(scope="session")
def speech_m4a(sample_data, tmp_path_factory):
    """A real speech wav encoded as AAC in an .m4a (as VoxCeleb2 ships its audio)."""
    out = tmp_path_factory.mktemp("m4a") / "speech.m4a"
    ffmpeg("-i", str(sample_data / SPEECH), "-c:a", "aac", "-b:a", "32k", str(out))
    return out


# ---- registry --------------------------------------------------------------------------------


def test_every_dataset_has_a_registered_recipe():
    assert set(RECIPES) >= {"dfdc", "ffpp", "fakeavceleb", "voxceleb", "asvspoof2019_la", "in_the_wild", "folder"}
    assert "compression" in recipe_options("ffpp") and "audio_dir" in recipe_options("ffpp")
    assert recipe_options("dfdc") == ["probe"]


def test_unknown_recipe_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError) as e:
        prepare("dfcd", tmp_path)
    msg = str(e.value)
    assert "'dfcd'" in msg
    for name in RECIPES:
        assert name in msg


def test_an_option_a_recipe_does_not_take_is_an_error(sample_data):
    with pytest.raises(ValueError) as e:
        prepare("dfdc", sample_data / "dfdc", compression="c23")
    assert "compression" in str(e.value) and "probe" in str(e.value)
    # options left at None (as the CLI passes its unset ones) are not "given"
    assert len(prepare("dfdc", sample_data / "dfdc", compression=None).rows) == 2


def test_a_corpus_that_is_not_a_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        prepare("dfdc", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        prepare("dfdc", tmp_path)


# ---- DFDC ------------------------------------------------------------------------------------


def test_dfdc_real_samples(sample_data):
    res = prepare("dfdc", sample_data / "dfdc")
    rows = by_id(res)
    assert set(rows) == {"lynaeydofd", "brtujopkby"}

    real = rows["lynaeydofd"]
    assert real.path == "dfdc_sample_real/lynaeydofd.mp4" and real.media == "video"
    assert (real.video_label, real.audio_label, real.method) == ("real", "real", None)
    assert real.source_id is None and real.group == "lynaeydofd" and real.split == "train"

    fake = rows["brtujopkby"]
    assert fake.path == "dfdc_train_part_0/brtujopkby.mp4"
    assert (fake.video_label, fake.audio_label, fake.method) == ("fake", "real", "unknown")
    assert fake.source_id == "gnmmhlbzge" and fake.group == "gnmmhlbzge" and fake.split == "train"
    assert fake.extra["audio_label_assumed"] is True

    # awnfpubqmo.mp4 is listed in dfdc_train_part_0/metadata.json but absent
    assert res.failures == [
        Failure(path="dfdc_train_part_0/awnfpubqmo.mp4", reason="missing", id="awnfpubqmo")
    ]
    validate_rows(res.rows)


def test_dfdc_probe_reads_the_streams(sample_data):
    rows = by_id(prepare("dfdc", sample_data / "dfdc", probe=True))
    fake, real = rows["brtujopkby"], rows["lynaeydofd"]
    assert (fake.extra["width"], fake.extra["height"], fake.extra["audio_sample_rate"]) == (1080, 1920, 44100)
    assert (real.extra["width"], real.extra["height"], real.extra["audio_sample_rate"]) == (1920, 1080, 48000)
    assert fake.has_audio is True and real.has_audio is True
    assert fake.extra["duration"] == pytest.approx(10, abs=0.1)


def test_dfdc_manifest_files_and_round_trip(sample_data, tmp_path, monkeypatch):
    res = prepare("dfdc", sample_data / "dfdc")
    out = tmp_path / "out" / "dfdc.jsonl"
    monkeypatch.chdir(sample_data)  # a relative corpus dir must be recorded absolute
    meta = write_manifest(res, out, "dfdc", "dfdc", options={"probe": False})

    failures_path, meta_path = sidecar_paths(out)
    assert failures_path == tmp_path / "out" / "dfdc.failures.jsonl"
    assert meta_path == tmp_path / "out" / "dfdc.meta.json"
    assert len(out.read_text().splitlines()) == 2

    (failure_line,) = failures_path.read_text().splitlines()
    assert json.loads(failure_line)["id"] == "awnfpubqmo" and json.loads(failure_line)["reason"] == "missing"

    on_disk = json.loads(meta_path.read_text())
    assert on_disk == meta
    assert on_disk["corpus_dir"] == str((sample_data / "dfdc").resolve())
    assert on_disk["recipe"] == "dfdc" and on_disk["options"] == {"probe": False}
    assert (on_disk["items"], on_disk["failures"]) == (2, 1)
    assert on_disk["failures_by_reason"] == {"missing": 1}
    assert on_disk["by_label"] == {"video=real,audio=real": 1, "video=fake,audio=real": 1}
    assert on_disk["by_split"] == {"train": 2}

    assert read_manifest(out) == res.rows
    assert read_failures(out) == res.failures
    assert manifest_root(out) == (sample_data / "dfdc").resolve()


def test_dfdc_bad_metadata_is_a_failure_and_other_folders_go_on(sample_data, tmp_path):
    src = sample_data / "dfdc"
    for part in ("dfdc_train_part_0", "dfdc_sample_real"):
        for f in (src / part).iterdir():
            link(f, tmp_path / part / f.name)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.json").write_text('{"x.mp4": {"label": "FAKE",')  # cut short
    (tmp_path / "listy").mkdir()
    (tmp_path / "listy" / "metadata.json").write_text('["x.mp4"]')
    link(src / "dfdc_sample_real/lynaeydofd.mp4", tmp_path / "odd" / "q.mp4")
    (tmp_path / "odd" / "metadata.json").write_text('{"q.mp4": {"label": "MAYBE"}}')

    res = prepare("dfdc", tmp_path)
    assert set(by_id(res)) == {"lynaeydofd", "brtujopkby"}
    reasons = {f.path: f.reason for f in res.failures}
    assert reasons == {
        "broken/metadata.json": "unreadable",
        "listy/metadata.json": "unreadable",
        "odd/q.mp4": "invalid_row",
        "dfdc_train_part_0/awnfpubqmo.mp4": "missing",
    }


def test_dfdc_a_listed_file_that_is_not_video_is_wrong_kind(sample_data, tmp_path):
    link(sample_data / SPEECH, tmp_path / "part" / "aaaa.mp4")
    (tmp_path / "part" / "metadata.json").write_text('{"aaaa.mp4": {"label": "REAL", "split": "train"}}')
    res = prepare("dfdc", tmp_path)
    assert res.rows == [] and [(f.id, f.reason) for f in res.failures] == [("aaaa", "wrong_kind")]


# ---- FaceForensics++ -------------------------------------------------------------------------


def test_ffpp_official_split_and_pair_group(sample_data):
    assert ["004", "982"] in json.loads((manifests_dir() / "splits/ffpp/val.json").read_text())
    res = prepare("ffpp", sample_data / "ffpp")
    rows = by_id(res)
    assert set(rows) == {"original/004", "NeuralTextures/004_982"} and res.failures == []
    orig, fake = rows["original/004"], rows["NeuralTextures/004_982"]
    assert orig.path == "original_sequences/youtube/c23/videos/004.mp4"
    assert fake.path == "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4"
    assert (orig.video_label, orig.method, orig.source_id) == ("real", None, None)
    assert (fake.video_label, fake.method, fake.source_id) == ("fake", "NeuralTextures", "004")
    for r in (orig, fake):
        assert r.split == "val" and r.group == "pair:004_982"
        assert r.has_audio is False and r.audio_label is None and r.audio_path is None
    validate_rows(res.rows)


def test_ffpp_probe_finds_no_audio_track(sample_data):
    rows = by_id(prepare("ffpp", sample_data / "ffpp", probe=True))
    for r in rows.values():
        assert r.has_audio is False and (r.extra["width"], r.extra["height"]) == (1280, 720)


def test_ffpp_audio_dir_gives_both_videos_the_original_audio(sample_data, tmp_path):
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    shutil.copyfile(sample_data / SPEECH, audio_dir / "004.wav")
    (audio_dir / "notes.txt").write_text("not audio")
    res = prepare("ffpp", sample_data / "ffpp", audio_dir=audio_dir, probe=True)
    assert len(res.rows) == 2
    for r in res.rows:
        assert r.audio_path == str((audio_dir / "004.wav").resolve())
        assert r.has_audio is True and r.audio_label == "real"  # probing the silent mp4 keeps them
    validate_rows(res.rows)


def test_ffpp_audio_dir_without_the_clip_marks_it_missing(sample_data, tmp_path):
    shutil.copyfile(sample_data / SPEECH, tmp_path / "005.wav")
    for r in prepare("ffpp", sample_data / "ffpp", audio_dir=tmp_path).rows:
        assert r.audio_path is None and r.has_audio is False and r.extra["audio_missing"] is True
    with pytest.raises(FileNotFoundError, match="audio directory"):
        prepare("ffpp", sample_data / "ffpp", audio_dir=tmp_path / "nope")


def test_ffpp_unknown_compression_is_a_clear_error(sample_data):
    with pytest.raises(FileNotFoundError) as e:
        prepare("ffpp", sample_data / "ffpp", compression="c40")
    assert "'c40'" in str(e.value) and "original_sequences/*/c40/videos" in str(e.value)


def test_ffpp_own_splits_dir_and_deepfakedetection(sample_data, tmp_path):
    corpus = tmp_path / "ffpp"
    link(sample_data / FFPP_REAL, corpus / "original_sequences/youtube/c23/videos/004.mp4")
    link(sample_data / FFPP_FAKE, corpus / "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4")
    link(sample_data / FFPP_REAL, corpus / "original_sequences/actors/c23/videos/01__walking.mp4")
    link(sample_data / FFPP_FAKE,
         corpus / "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walking__ABCD1234.mp4")
    splits = tmp_path / "splits"
    splits.mkdir()
    for split, pairs in {"train": [["004", "982"]], "val": [], "test": []}.items():
        (splits / f"{split}.json").write_text(json.dumps(pairs))

    res = prepare("ffpp", corpus, splits_dir=splits)
    rows = by_id(res)
    assert rows["original/004"].split == rows["NeuralTextures/004_982"].split == "train"
    dfd_orig, dfd_fake = rows["original/01__walking"], rows["DeepFakeDetection/01_02__walking__ABCD1234"]
    assert dfd_orig.split is None and dfd_fake.split is None
    assert dfd_orig.group == dfd_fake.group == "dfd:01__walking"
    assert dfd_orig.identity == dfd_fake.identity == "01"
    assert dfd_fake.source_id == "01__walking" and dfd_fake.method == "DeepFakeDetection"
    validate_rows(res.rows)

    (splits / "test.json").unlink()
    with pytest.raises(FileNotFoundError, match="test.json"):
        prepare("ffpp", corpus, splits_dir=splits)


# ---- FakeAVCeleb -----------------------------------------------------------------------------

FAV_HEADER = "source,target1,target2,method,category,type,race,gender,path,"
# (csv row, real sample file the video is, whether to create it)
FAV_ROWS = [
    ("id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.mp4,"
     "FakeAVCeleb/RealVideo-RealAudio/African/men/id00076", TALKING, True),
    ("id00076,-,-,rtvc,B,RealVideo-FakeAudio,African,men,00109_fake.mp4,"
     "FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076", TALKING, True),
    ("id00076,id00166,-,faceswap,C,FakeVideo-RealAudio,African,men,00109_id00166_wavtolip.mp4,"
     "FakeAVCeleb/FakeVideo-RealAudio/African/men/id00076", PORTRAIT, True),
    ("id00076,id00476,10,wav2lip,D,FakeVideo-FakeAudio,African,men,00109_10_id00476_wavtolip.mp4,"
     "FakeAVCeleb/FakeVideo-FakeAudio/African/men/id00076", PORTRAIT, True),
    ("id01170,-,-,real,A,RealVideo-RealAudio,Asian (East),women,00020.mp4,"
     "FakeAVCeleb/RealVideo-RealAudio/Asian (East)/women/id01170", PORTRAIT, True),
    ("id00076,-,-,real,A,RealVideo-RealAudio,African,men,00200.mp4,"
     "FakeAVCeleb/RealVideo-RealAudio/African/men/id00076", TALKING, False),  # listed, not there
]


def make_fakeavceleb(sample_data, parent, release="FakeAVCeleb", extra_lines=()):
    """The v1.2 layout under ``parent/release``; returns the release folder."""
    rel_root = parent / release
    for line, src, present in FAV_ROWS:
        cells = line.split(",")
        if present:
            folder = cells[9].split("/", 1)[1]
            link(sample_data / src, rel_root / folder / cells[8])
    rel_root.mkdir(parents=True, exist_ok=True)
    lines = [FAV_HEADER] + [line for line, _, _ in FAV_ROWS] + list(extra_lines)
    (rel_root / "meta_data.csv").write_text("\n".join(lines) + "\n")
    return rel_root


FAV_IDS = {
    "RealVideo-RealAudio/African/men/id00076/00109": ("real", "real", None),
    "RealVideo-FakeAudio/African/men/id00076/00109_fake": ("real", "fake", "rtvc"),
    "FakeVideo-RealAudio/African/men/id00076/00109_id00166_wavtolip": ("fake", "real", "faceswap"),
    "FakeVideo-FakeAudio/African/men/id00076/00109_10_id00476_wavtolip": ("fake", "fake", "wav2lip"),
    "RealVideo-RealAudio/Asian (East)/women/id01170/00020": ("real", "real", None),
}


@pytest.mark.parametrize("root_is", ["parent", "release", "renamed_release_parent"])
def test_fakeavceleb_labels_paths_and_groups(sample_data, tmp_path, root_is):
    release = "FakeAVCeleb_v1.2" if root_is == "renamed_release_parent" else "FakeAVCeleb"
    rel_root = make_fakeavceleb(sample_data, tmp_path, release)
    corpus = rel_root if root_is == "release" else tmp_path
    prefix = "" if root_is == "release" else f"{release}/"

    res = prepare("fakeavceleb", corpus)
    rows = by_id(res)
    assert set(rows) == set(FAV_IDS)
    for rid, (video_label, audio_label, method) in FAV_IDS.items():
        r = rows[rid]
        assert (r.video_label, r.audio_label, r.method) == (video_label, audio_label, method), rid
        assert r.path == f"{prefix}{rid}.mp4" and (corpus / r.path).is_file()
        assert r.media == "video" and r.split is None
    for rid in FAV_IDS:
        source = rid.split("/")[3]
        assert rows[rid].identity == rows[rid].group == source
    assert rows["RealVideo-RealAudio/African/men/id00076/00109"].source_id is None
    assert rows["FakeVideo-FakeAudio/African/men/id00076/00109_10_id00476_wavtolip"].source_id == "id00076/00109"
    assert rows["FakeVideo-RealAudio/African/men/id00076/00109_id00166_wavtolip"].extra["target1"] == "id00166"

    (missing,) = res.failures
    assert missing.reason == "missing" and missing.id == "RealVideo-RealAudio/African/men/id00076/00200"
    assert missing.path == f"{prefix}RealVideo-RealAudio/African/men/id00076/00200.mp4"
    validate_rows(res.rows)


def test_fakeavceleb_corrupt_rows_are_invalid(sample_data, tmp_path):
    bad = [
        "id00076,-,-,real,A",  # cut short
        "id00076,-,-,real,Z,Bogus-Type,African,men,00109.mp4,FakeAVCeleb/RealVideo-RealAudio/African/men/id00076",
        "id00076,-,-,real,A,RealVideo-RealAudio,African,men,00109.txt,"
        "FakeAVCeleb/RealVideo-RealAudio/African/men/id00076",  # not a media file name
        ",,,,,,,,,",  # blank: skipped, not a failure
    ]
    make_fakeavceleb(sample_data, tmp_path, extra_lines=bad)
    res = prepare("fakeavceleb", tmp_path)
    assert len(res.rows) == len(FAV_IDS)
    invalid = [f for f in res.failures if f.reason == "invalid_row"]
    first_bad_line = len(FAV_ROWS) + 2
    assert [f.path for f in invalid] == [f"meta_data.csv:{first_bad_line + i}" for i in range(3)]
    assert [f.reason for f in res.failures].count("missing") == 1


def test_fakeavceleb_metadata_option_and_absent_metadata(sample_data, tmp_path):
    rel_root = make_fakeavceleb(sample_data, tmp_path / "corpus")
    moved = tmp_path / "elsewhere.csv"
    (rel_root / "meta_data.csv").rename(moved)
    with pytest.raises(FileNotFoundError, match="meta_data.csv"):
        prepare("fakeavceleb", rel_root)
    assert set(by_id(prepare("fakeavceleb", rel_root, metadata=moved))) == set(FAV_IDS)


# ---- VoxCeleb --------------------------------------------------------------------------------


def test_voxceleb_media_split_identity_and_video_preferred(sample_data, speech_m4a, tmp_path):
    link(sample_data / TALKING, tmp_path / "vox2/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4")
    link(speech_m4a, tmp_path / "vox2/dev/aac/id00012/21Uxsk56VDQ/00001.m4a")  # sorts before mp4/
    link(speech_m4a, tmp_path / "vox2/dev/aac/id00012/21Uxsk56VDQ/00002.m4a")  # audio only
    link(sample_data / PORTRAIT, tmp_path / "vox2/test/mp4/id00017/01dfn2spqyE/00001.mp4")
    link(sample_data / SPEECH, tmp_path / "vox2/wav/id00017/01dfn2spqyE/00001.wav")  # sorts after
    link(sample_data / SPEECH, tmp_path / "vox1/wav/id10001/1zcIwhmdeo4/00001.wav")
    link(sample_data / SPEECH, tmp_path / "vox1/notes/00001.wav")  # not under id*/<video>/

    res = prepare("voxceleb", tmp_path)
    rows = by_id(res)
    expect = {  # id: (path, media, split)
        "id00012/21Uxsk56VDQ/00001": ("vox2/dev/mp4/id00012/21Uxsk56VDQ/00001.mp4", "video", "train"),
        "id00012/21Uxsk56VDQ/00002": ("vox2/dev/aac/id00012/21Uxsk56VDQ/00002.m4a", "audio", "train"),
        "id00017/01dfn2spqyE/00001": ("vox2/test/mp4/id00017/01dfn2spqyE/00001.mp4", "video", "test"),
        "id10001/1zcIwhmdeo4/00001": ("vox1/wav/id10001/1zcIwhmdeo4/00001.wav", "audio", None),
    }
    assert {rid: (r.path, r.media, r.split) for rid, r in rows.items()} == expect
    for rid, r in rows.items():
        speaker = rid.split("/")[0]
        assert r.identity == r.group == speaker
        assert r.audio_label == "real" and r.method is None
        assert r.video_label == ("real" if r.media == "video" else None)
    assert res.failures == []
    validate_rows(res.rows)


def test_voxceleb_probe_and_bad_files(sample_data, tmp_path):
    link(sample_data / TALKING, tmp_path / "dev/mp4/id00012/abc/00001.mp4")
    link(sample_data / SPEECH, tmp_path / "dev/mp4/id00012/abc/00002.mp4")  # audio under a video name
    res = prepare("voxceleb", tmp_path, probe=True)
    (row,) = res.rows
    assert row.id == "id00012/abc/00001" and row.has_audio is True and row.extra["audio_sample_rate"] == 16000
    assert [(f.id, f.reason) for f in res.failures] == [("id00012/abc/00002", "wrong_kind")]
    with pytest.raises(FileNotFoundError, match="VoxCeleb"):
        prepare("voxceleb", tmp_path / "dev/mp4/id00012")


# ---- ASVspoof 2019 LA ------------------------------------------------------------------------


def make_asvspoof(speech_flac, root):
    la = root / "LA"
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir(parents=True)
    (protocols / "ASVspoof2019.LA.cm.train.trn.txt").write_text(
        "LA_0079 LA_T_1138215 - - bonafide\n"
        "LA_0079 LA_T_1004644 - A01 spoof\n"
        "\n"
        "LA_0080 LA_T_1271820 - A02 spoof\n"  # flac absent
        "LA_0080 LA_T_1111111 - A03\n"  # four fields
        "LA_0080 LA_T_2222222 - A03 maybe\n"  # bad key
    )
    (protocols / "ASVspoof2019.LA.cm.dev.trl.txt").write_text(
        "LA_0069 LA_D_1047731 - - bonafide\nLA_0069 LA_D_1105538 - A04 spoof\n"
    )
    (protocols / "README.txt").write_text("not a protocol\n")
    for name in ("LA_T_1138215", "LA_T_1004644"):
        link(speech_flac, la / "ASVspoof2019_LA_train/flac" / f"{name}.flac")
    for name in ("LA_D_1047731", "LA_D_1105538"):
        link(speech_flac, la / "ASVspoof2019_LA_dev/flac" / f"{name}.flac")
    return la


def test_asvspoof2019_la_labels_methods_splits_and_failures(speech_flac, tmp_path):
    make_asvspoof(speech_flac, tmp_path)
    res = prepare("asvspoof2019_la", tmp_path)
    rows = by_id(res)
    assert {rid: (r.audio_label, r.method, r.split, r.identity) for rid, r in rows.items()} == {
        "LA_T_1138215": ("real", None, "train", "LA_0079"),
        "LA_T_1004644": ("fake", "A01", "train", "LA_0079"),
        "LA_D_1047731": ("real", None, "val", "LA_0069"),
        "LA_D_1105538": ("fake", "A04", "val", "LA_0069"),
    }
    r = rows["LA_T_1004644"]
    assert r.path == "LA/ASVspoof2019_LA_train/flac/LA_T_1004644.flac"
    assert r.media == "audio" and r.video_label is None and r.group == "LA_0079"

    got = {(f.reason, f.path) for f in res.failures}
    assert got == {
        ("missing", "LA/ASVspoof2019_LA_train/flac/LA_T_1271820.flac"),
        ("invalid_row", "ASVspoof2019.LA.cm.train.trn.txt:5"),
        ("invalid_row", "ASVspoof2019.LA.cm.train.trn.txt:6"),
    }
    validate_rows(res.rows)


def test_asvspoof2019_la_probe_and_one_protocol(speech_flac, tmp_path):
    la = make_asvspoof(speech_flac, tmp_path)
    proto = la / "ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.dev.trl.txt"
    res = prepare("asvspoof2019_la", la, protocol=str(proto), probe=True)
    assert set(by_id(res)) == {"LA_D_1047731", "LA_D_1105538"} and res.failures == []
    for r in res.rows:
        assert r.media == "audio" and r.has_audio is True and r.extra["audio_sample_rate"] == 16000
    with pytest.raises(FileNotFoundError, match="protocol"):
        prepare("asvspoof2019_la", la / "ASVspoof2019_LA_train")


# ---- In-the-Wild -----------------------------------------------------------------------------


def test_in_the_wild(sample_data, tmp_path):
    base = tmp_path / "release_in_the_wild"
    for name in ("0.wav", "1.wav", "2.wav", "4.wav"):
        link(sample_data / SPEECH, base / name)
    (base / "meta.csv").write_text(
        "file,speaker,label\n"
        "0.wav,Alec Guinness,spoof\n"
        "1.wav,Alec Guinness,bona-fide\n"
        "2.wav,Barack Obama,bona-fide\n"
        "3.wav,Barack Obama,spoof\n"  # file absent
        "4.wav,Barack Obama,maybe\n"
    )
    res = prepare("in_the_wild", tmp_path)
    rows = by_id(res)
    assert {rid: (r.path, r.audio_label, r.method, r.identity) for rid, r in rows.items()} == {
        "0": ("release_in_the_wild/0.wav", "fake", "unknown", "Alec Guinness"),
        "1": ("release_in_the_wild/1.wav", "real", None, "Alec Guinness"),
        "2": ("release_in_the_wild/2.wav", "real", None, "Barack Obama"),
    }
    for r in rows.values():
        assert r.media == "audio" and r.video_label is None and r.split is None and r.group == r.identity
    assert {(f.reason, f.path) for f in res.failures} == {
        ("missing", "release_in_the_wild/3.wav"),
        ("invalid_row", "meta.csv:6"),
    }
    validate_rows(res.rows)

    (base / "meta.csv").write_text("file,label\n0.wav,spoof\n")
    with pytest.raises(ValueError, match="speaker"):
        prepare("in_the_wild", tmp_path)


# ---- any folder ------------------------------------------------------------------------------


def make_folder(sample_data, root):
    link(sample_data / TALKING, root / "real/a.mp4")
    link(sample_data / FFPP_FAKE, root / "fake/b.mp4")  # no audio track
    link(sample_data / PORTRAIT, root / "Fake/d.mp4")  # with an audio track
    link(sample_data / SPEECH, root / "speech/c.wav")
    link(sample_data / SPEECH, root / ".cache/x.wav")  # hidden: skipped
    (root / "broken.mp4").write_text("this is a text file, not a video at all\n")
    (root / "notes.txt").write_text("not media\n")
    return root


def test_folder_probes_media_and_labels_from_folder_names(sample_data, tmp_path):
    res = prepare("folder", make_folder(sample_data, tmp_path))
    rows = by_id(res)
    got = {rid: (r.path, r.media, r.has_audio, r.video_label, r.audio_label, r.method) for rid, r in rows.items()}
    assert got == {
        "real/a": ("real/a.mp4", "video", True, "real", "real", None),
        "fake/b": ("fake/b.mp4", "video", False, "fake", None, "unknown"),
        "Fake/d": ("Fake/d.mp4", "video", True, "fake", None, "unknown"),
        "speech/c": ("speech/c.wav", "audio", True, None, None, None),
    }
    assert rows["real/a"].extra["audio_sample_rate"] == 16000 and rows["real/a"].extra["width"] == 512
    assert "label" not in rows["real/a"].extra
    assert [(f.path, f.reason) for f in res.failures] == [("broken.mp4", "wrong_kind")]
    validate_rows(res.rows)


def test_folder_default_label(sample_data, tmp_path):
    rows = by_id(prepare("folder", make_folder(sample_data, tmp_path), default_label="fake"))
    c = rows["speech/c"]
    assert (c.video_label, c.audio_label, c.method) == (None, "fake", "unknown")
    assert rows["real/a"].video_label == "real"  # the folder name wins over the default
    with pytest.raises(ValueError, match="default_label"):
        prepare("folder", tmp_path, default_label="REAL")


def test_folder_a_file_that_sniffs_as_media_but_does_not_decode(sample_data, tmp_path):
    link(sample_data / SPEECH, tmp_path / "ok.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunkjunkjunk")
    res = prepare("folder", tmp_path, default_label="real")
    assert [r.id for r in res.rows] == ["ok"]
    assert [(f.path, f.reason) for f in res.failures] == [("bad.wav", "decode_error")]


def test_folder_labels_csv(sample_data, tmp_path):
    make_folder(sample_data, tmp_path)
    (tmp_path / "labels.csv").write_text(
        "path,label\n"
        "real/a.mp4,fake\n"
        "speech/c.wav,bona-fide\n"
        "absent.mp4,real\n"
        "fake/b.mp4,perhaps\n"
    )
    res = prepare("folder", tmp_path, labels=tmp_path / "labels.csv")
    rows = by_id(res)
    assert set(rows) == {"real/a", "speech/c"}  # only the files the CSV lists
    a, c = rows["real/a"], rows["speech/c"]
    assert (a.video_label, a.audio_label, a.method) == ("fake", None, "unknown")  # a single "fake"
    assert (c.video_label, c.audio_label, c.method) == (None, "real", None)
    assert {(f.reason, f.path) for f in res.failures} == {
        ("missing", "absent.mp4"),
        ("invalid_row", "labels.csv:5"),
    }


def test_folder_labels_csv_with_both_labels(sample_data, tmp_path):
    make_folder(sample_data, tmp_path)
    (tmp_path / "labels.csv").write_text(
        "path,video_label,audio_label,method,identity,group,split\n"
        "real/a.mp4,real,fake,rtvc,aoc,g1,train\n"
        "Fake/d.mp4,fake,real,,,g1,train\n"
        "fake/b.mp4,fake,fake,,,,test\n"  # no audio track: the audio label cannot hold
        "speech/c.wav,real,spoof,,,,\n"  # audio only: no video label
        ",real,real\n"
    )
    res = prepare("folder", tmp_path, labels=tmp_path / "labels.csv")
    rows = by_id(res)
    got = {rid: (r.video_label, r.audio_label, r.method, r.identity, r.group, r.split) for rid, r in rows.items()}
    assert got == {
        "real/a": ("real", "fake", "rtvc", "aoc", "g1", "train"),
        "Fake/d": ("fake", "real", "unknown", None, "g1", "train"),
        "fake/b": ("fake", None, "unknown", None, "fake/b", "test"),
        "speech/c": (None, "fake", "unknown", None, "speech/c", None),
    }
    assert [(f.reason, f.path) for f in res.failures] == [("invalid_row", "labels.csv:6")]
    validate_rows(res.rows)


def test_folder_bad_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here\n")
    with pytest.raises(FileNotFoundError, match="No media files"):
        prepare("folder", tmp_path)
    with pytest.raises(FileNotFoundError, match="Labels CSV"):
        prepare("folder", tmp_path, labels=tmp_path / "absent.csv")
    (tmp_path / "l.csv").write_text("file,label\nx.mp4,real\n")
    with pytest.raises(ValueError, match="'path' column"):
        prepare("folder", tmp_path, labels=tmp_path / "l.csv")


def test_folder_ids_keep_the_extension_only_when_stems_collide(sample_data, tmp_path):
    link(sample_data / TALKING, tmp_path / "clip.mp4")
    link(sample_data / SPEECH, tmp_path / "clip.wav")
    link(sample_data / SPEECH, tmp_path / "other.wav")
    res = prepare("folder", tmp_path, default_label="real")
    assert sorted(r.id for r in res.rows) == ["clip.mp4", "clip.wav", "other"]
    validate_rows(res.rows)


def test_folder_csv_rows_outside_the_corpus_or_with_bad_splits_are_invalid(sample_data, tmp_path):
    corpus = tmp_path / "corpus"
    link(sample_data / SPEECH, corpus / "a.wav")
    link(sample_data / SPEECH, tmp_path / "outside.wav")
    (tmp_path / "labels.csv").write_text("path,label,split\na.wav,real,dev\n../outside.wav,real,train\na.wav,real,train\n")
    res = prepare("folder", corpus, labels=tmp_path / "labels.csv")
    assert [r.id for r in res.rows] == ["a"] and res.rows[0].split == "train"
    assert sorted((f.path, f.reason) for f in res.failures) == [
        ("labels.csv:2", "invalid_row"), ("labels.csv:3", "outside_root")]
