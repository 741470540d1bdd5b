"""The manifest module: row validation, the three files a manifest is written as, and reading
them back. Rows here are plain records (no media is opened); recipes on real media are in
test_recipes.py."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import MediaError
from pipeline.manifest import (
    Failure,
    ManifestRow,
    RecipeResult,
    manifest_root,
    read_failures,
    read_manifest,
    sidecar_paths,
    summarize,
    validate_rows,
    write_manifest,
)


def rows_ok() -> list[ManifestRow]:
    return [
        ManifestRow(id="orig", path="v/orig.mp4", video_label="real", audio_label="real", split="train",
                    has_audio=True, identity="p1"),
        ManifestRow(id="fake1", path="v/fake1.mp4", video_label="fake", audio_label="real", method="unknown",
                    source_id="orig", group="orig", split="train", has_audio=True, extra={"fps": 29.97}),
        ManifestRow(id="speech", path="a/speech.flac", media="audio", audio_label="fake", method="A01",
                    split="val", has_audio=True, audio_path="/abs/elsewhere.wav"),
    ]


def problems(rows) -> str:
    with pytest.raises(ValueError) as e:
        validate_rows(rows)
    return str(e.value)


def test_group_defaults_to_the_id():
    assert ManifestRow(id="x", path="x.mp4").group == "x"
    assert ManifestRow(id="x", path="x.mp4", group="g").group == "g"


def test_valid_rows_pass_as_rows_or_dicts():
    validate_rows(rows_ok())
    validate_rows([r.to_dict() for r in rows_ok()])


def test_duplicate_id_names_the_row():
    rows = rows_ok() + [ManifestRow(id="orig", path="w/orig.mp4", video_label="real", split="train")]
    msg = problems(rows)
    assert "row 4" in msg and "duplicate id 'orig'" in msg


def test_a_group_in_two_splits_names_the_row_and_both_splits():
    rows = rows_ok()
    rows[1].split = "test"
    msg = problems(rows)
    assert "row 2" in msg and "'fake1'" in msg and "group 'orig'" in msg
    assert "'train'" in msg and "'test'" in msg


@pytest.mark.parametrize(
    "change, field",
    [
        ({"video_label": "FAKE"}, "video_label"),
        ({"audio_label": "bonafide"}, "audio_label"),
        ({"split": "dev"}, "split"),
        ({"media": "image"}, "media"),
        ({"path": ""}, "path"),
        ({"has_audio": "yes"}, "has_audio"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_field_names_the_row_and_the_field(change, field):
    rows = [r.to_dict() for r in rows_ok()]
    rows[2].update(change)
    msg = problems(rows)
    assert "row 3 (id='speech')" in msg and field in msg
    assert "row 1" not in msg and "row 2" not in msg


def test_a_missing_required_field_is_reported():
    d = rows_ok()[0].to_dict()
    del d["split"]
    assert "'split' is a required property" in problems([d])


def test_many_problems_are_cut_to_twenty():
    rows = [ManifestRow(id="same", path=f"{i}.mp4", video_label="real") for i in range(30)]
    msg = problems(rows)
    assert msg.count("duplicate id") == 20 and "... and 9 more" in msg


def test_sidecar_paths():
    failures, meta = sidecar_paths("/data/m/dfdc.jsonl")
    assert (str(failures), str(meta)) == ("/data/m/dfdc.failures.jsonl", "/data/m/dfdc.meta.json")
    failures, meta = sidecar_paths("/data/m/dfdc")
    assert (failures.name, meta.name) == ("dfdc.failures.jsonl", "dfdc.meta.json")


def test_write_then_read_round_trip(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    fails = [Failure(path="v/gone.mp4", reason="missing", id="gone"),
             Failure(path="meta.csv:7", reason="invalid_row", detail="bad label")]
    result = RecipeResult(rows_ok(), fails)
    out = tmp_path / "deep" / "er" / "m.jsonl"  # parent folders are created
    meta = write_manifest(result, out, "folder", corpus, options={"default_label": "real"})

    assert read_manifest(out) == rows_ok()
    assert read_failures(out) == fails
    assert manifest_root(out) == corpus.resolve()
    assert meta == json.loads((tmp_path / "deep/er/m.meta.json").read_text())
    assert meta["recipe"] == "folder" and meta["options"] == {"default_label": "real"}
    assert meta["items"] == 3 and meta["failures"] == 2
    assert meta["by_split"] == {"train": 2, "val": 1}
    assert meta["by_method"] == {"none": 1, "unknown": 1, "A01": 1}
    assert meta["failures_by_reason"] == {"missing": 1, "invalid_row": 1}
    assert meta["avdd_version"] and meta["created"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.failures.jsonl", "m.jsonl", "m.meta.json"]


def test_write_refuses_invalid_rows_and_writes_nothing(tmp_path):
    rows = rows_ok()
    rows[0].video_label = "maybe"
    out = tmp_path / "m.jsonl"
    with pytest.raises(ValueError, match="id='orig'"):
        write_manifest(RecipeResult(rows), out, "folder", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_rewriting_replaces_the_old_manifest(tmp_path):
    out = tmp_path / "m.jsonl"
    write_manifest(RecipeResult(rows_ok(), [Failure(path="x", reason="missing")]), out, "folder", tmp_path)
    write_manifest(RecipeResult(rows_ok()[:1]), out, "folder", tmp_path)
    assert [r.id for r in read_manifest(out)] == ["orig"]
    assert read_failures(out) == []
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_summarize_counts_labels():
    s = summarize(RecipeResult(rows_ok()))
    assert s["by_label"] == {"video=real,audio=real": 1, "video=fake,audio=real": 1, "video=none,audio=fake": 1}


def test_read_manifest_errors_name_the_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        read_manifest(tmp_path / "absent.jsonl")

    good = [json.dumps(r.to_dict()) for r in rows_ok()]
    path = tmp_path / "m.jsonl"
    path.write_text(good[0] + "\n\n" + good[1] + "\n{not json\n")
    with pytest.raises(ValueError, match=r"line 4: not valid JSON"):
        read_manifest(path)

    bad = rows_ok()[2].to_dict() | {"audio_label": "spoof"}
    path.write_text(good[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"line 2: 'spoof'"):
        read_manifest(path)
    assert read_manifest(path, validate=False)[1].audio_label == "spoof"

    path.write_text(good[0] + "\n" + good[0] + "\n")  # each line valid, the file not
    with pytest.raises(ValueError, match="duplicate id 'orig'"):
        read_manifest(path)


def test_manifest_root_without_meta(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("")
    assert read_manifest(path) == []
    assert manifest_root(path) == tmp_path.resolve()
    assert manifest_root(path, root=tmp_path / "moved") == (tmp_path / "moved").resolve()
    assert read_failures(path) == []


def test_failure_from_error_is_relative_to_the_root(tmp_path):
    inside = Failure.from_error(MediaError(tmp_path / "a" / "b.mp4", "missing"), id="b", root=tmp_path)
    assert (inside.path, inside.reason, inside.id) == ("a/b.mp4", "missing", "b")
    err = MediaError("/elsewhere/c.mp4", "decode_error", "moov atom not found")
    outside = Failure.from_error(err, root=tmp_path)
    assert (outside.path, outside.detail) == ("/elsewhere/c.mp4", "moov atom not found")


def test_manifest_probes_on_a_dask_cluster_as_in_process(sample_data, tmp_path, monkeypatch):
    """``avdd-data manifest --scheduler`` (and ``--workers``) probe on Dask workers: the same
    manifest and failures as the in-process threads, with the files probed in another process."""
    import shutil

    from click.testing import CliRunner
    from distributed import LocalCluster

    import pipeline.recipes._common as common
    from pipeline.cli import main
    from tests.conftest import write_unreadable_media

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for src in ["talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "dfdc/dfdc_sample_real/lynaeydofd.mp4",
                "speech/psphinx_numbers.wav", "speech/psphinx_goforward.wav"]:
        shutil.copy(sample_data / src, corpus / src.split("/")[-1])
    write_unreadable_media(sample_data, corpus)
    monkeypatch.setattr(common, "PROBE_CHUNK", 2)  # several tasks

    def run(out, *extra):
        r = CliRunner().invoke(main, ["manifest", "folder", str(corpus), "-o", str(out), "--default-label", "real",
                                      *extra])
        assert r.exit_code == 0, r.output
        return out.read_text(), out.with_name(out.stem + ".failures.jsonl").read_text()

    here = run(tmp_path / "here.jsonl")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster:
        calls = []
        real = common.probe_files
        monkeypatch.setattr(common, "probe_files", lambda *a, **k: calls.append(a) or real(*a, **k))
        remote = run(tmp_path / "remote.jsonl", "--scheduler", cluster.scheduler_address)
    assert calls == []  # nothing probed in this process: the tasks ran probe_files on the worker
    assert remote == here
    rows = [json.loads(line) for line in here[0].splitlines()]
    assert len(rows) == 4 and {r["media"] for r in rows} == {"video", "audio"}
    assert len(here[1].splitlines()) == 3  # the three unreadable files, each with its reason
    assert run(tmp_path / "local.jsonl", "--workers", "1") == here
