"""Raw files to shards in-process (the detector's entry into the pipeline), on real media."""

import numpy as np
import pytest
import zarr

from pipeline.prepare import PrepareConfig, PrepareError, collect_files, prepare_files, prepare_manifest


def test_files_to_unlabelled_shards_with_per_file_failures(sample_data, tmp_path):
    video = sample_data / "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4"
    wav = sample_data / "speech/psphinx_numbers.wav"
    broken = tmp_path / "broken.mp4"
    broken.write_text("this is no video\n")
    missing = tmp_path / "missing.wav"
    files = [video, missing, broken, wav]
    result = prepare_files(files, tmp_path / "work", PrepareConfig(clips_per_item=2, modalities=("audio",)))
    assert set(result.ids.values()) == {video, wav} and set(result.failures) == {missing, broken}
    assert result.failures[missing] == "file does not exist" and result.failures[broken].startswith("wrong kind")
    g = zarr.open_group(str(result.shards), mode="r")
    ids = g["samples/id"][:]
    assert sorted(set(ids.tolist())) == sorted(result.ids)
    # an audio-only detector: no face is searched, every sample is audio, unlabelled, in "test"
    assert (g["samples/clip"][:] == -1).all() and (g["samples/audio"][:] >= 0).all()
    assert (g["samples/sequence_fake"][:] == -1).all()
    # a file taken as audio gives every clip of 1.28 s (32 frames at 25 fps), not clips_per_item
    from pipeline.media import read_audio

    for sid, f in result.ids.items():
        frames = int(len(read_audio(f, 16000)) * 25 / 16000)
        assert (ids == sid).sum() == frames // 32 > 2, f
    assert "mel" not in g["audio"]  # the log-mel cache is opt-in
    info = g.attrs["avdd-shards"]
    assert set(np.array(info["splits"])[g["samples/split"][:]].tolist()) == {"test"}


def test_nothing_usable_gives_no_shards(tmp_path):
    result = prepare_files([tmp_path / "none.mp4"], tmp_path / "work")
    assert result.shards is None and result.failures == {tmp_path / "none.mp4": "file does not exist"}


def test_a_stage_error_keeps_its_message_and_cause(sample_data, tmp_path):
    manifest = tmp_path / "m.jsonl"
    with pytest.raises(FileNotFoundError, match="Manifest not found"):
        prepare_manifest(manifest, tmp_path / "work")
    # a store made with another config: the mismatch is the cause of the error raised
    from pipeline.manifest import write_manifest
    from pipeline.recipes import prepare

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.wav").symlink_to(sample_data / "speech/psphinx_numbers.wav")
    write_manifest(prepare("folder", corpus, default_label="real"), manifest, "folder", corpus)
    prepare_manifest(manifest, tmp_path / "work", config=PrepareConfig(clips_per_item=1))
    with pytest.raises(PrepareError, match="store.zarr") as e:
        prepare_manifest(manifest, tmp_path / "work", config=PrepareConfig(clips_per_item=2))
    assert type(e.value.__cause__).__name__ == "StoreMismatch"


def test_collect_files_skips_hidden_and_other_files(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.WAV", "a/notes.txt", ".hidden/z.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert collect_files([tmp_path]) == [tmp_path / "a/x.mp4", tmp_path / "a/y.WAV"]
