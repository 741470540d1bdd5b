"""Hostile and malformed manifests, and commands given bad input: paths leading out of the
corpus are refused before anything opens them (``outside_root``), every invalid manifest line
is listed at once before any work, and no command ends in a traceback."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from pipeline import extract as ex
from pipeline.cli import main
from pipeline.errors import MediaError
from pipeline.manifest import ManifestRow, read_manifest
from pipeline.paths import inside

SPEECH = "speech/psphinx_numbers.wav"
ARGS = ["--workers", "0", "--frames-per-clip", "8", "--clips-per-video", "1", "--clips-per-audio", "1", "--no-progress"]


def _row(id, path, **kw):
    return ManifestRow(id=id, path=path, media="audio", audio_label="real", **kw).to_dict()


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_inside_refuses_parent_absolute_and_symlinked_paths(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.wav").write_bytes(b"x")
    (root / "sub" / "ok.wav").write_bytes(b"x")
    (root / "out.wav").symlink_to(tmp_path / "secret.wav")
    (root / "in.wav").symlink_to(root / "sub" / "ok.wav")
    assert inside(root, "sub/ok.wav") == root / "sub" / "ok.wav"
    assert inside(root, "in.wav") == root / "in.wav"  # a symlink that stays inside
    assert inside(root, str(root / "sub/ok.wav")) == root / "sub" / "ok.wav"
    for bad in ["../secret.wav", "sub/../../secret.wav", "../../../../etc/passwd", "/etc/hostname", "out.wav"]:
        with pytest.raises(MediaError) as e:
            inside(root, bad)
        assert e.value.reason == "outside_root" and bad in str(e.value)
    assert inside(root, "out.wav", allowed=[tmp_path]) == root / "out.wav"


def test_hostile_manifest_rows_are_refused_before_anything_opens_them(sample_data, tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(sample_data / SPEECH, root / "good.wav")
    shutil.copy(sample_data / SPEECH, tmp_path / "outside.wav")
    (root / "link.wav").symlink_to(sample_data / SPEECH)  # resolves out of the corpus
    manifest = _write(root / "m.jsonl", [
        _row("good", "good.wav"), _row("passwd", "../../../../etc/passwd"), _row("abs", "/etc/hostname"),
        _row("link", "link.wav"), _row("dub", "good.wav", audio_path="../outside.wav")])
    opened = []
    for name in ("probe", "read_audio"):
        real = getattr(ex, name)
        monkeypatch.setattr(ex, name, lambda p, *a, _f=real, **k: (opened.append(str(p)), _f(p, *a, **k))[1])
    store = tmp_path / "s.zarr"
    res = CliRunner().invoke(main, ["extract", str(manifest), "--store", str(store), *ARGS, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    reasons = {f["id"]: f["reason"] for f in summary["failures"]}
    assert reasons == {"passwd": "outside_root", "abs": "outside_root", "link": "outside_root", "dub": "outside_root"}
    assert opened and all(p == str(root / "good.wav") for p in opened)
    g = zarr.open_group(str(store), mode="r")
    assert g["meta/has_audio"][:].tolist() == [True, False, False, False, False]


def test_folder_recipe_refuses_symlinks_out_of_the_corpus_unless_allowed(sample_data, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(sample_data / SPEECH, root / "a.wav")
    (root / "b.wav").symlink_to(sample_data / SPEECH)
    out = tmp_path / "m.jsonl"
    res = CliRunner().invoke(main, ["manifest", "folder", str(root), "-o", str(out), "--default-label", "real"])
    assert res.exit_code == 0, res.output
    assert [r.id for r in read_manifest(out)] == ["a"]
    failures = [json.loads(x) for x in (tmp_path / "m.failures.jsonl").read_text().splitlines()]
    assert [(f["path"], f["reason"]) for f in failures] == [("b.wav", "outside_root")]
    res = CliRunner().invoke(main, ["manifest", "folder", str(root), "-o", str(out), "--default-label", "real",
                                    "--allow-root", str(sample_data / "speech")])
    assert res.exit_code == 0 and [r.id for r in read_manifest(out)] == ["a", "b"]


def test_ffpp_audio_dir_symlinks_out_of_it_are_refused(sample_data, tmp_path):
    from pipeline.recipes import prepare

    corpus = tmp_path / "ffpp"
    vids = corpus / "original_sequences/youtube/c23/videos"
    vids.mkdir(parents=True)
    shutil.copy(sample_data / "ffpp/original_sequences/youtube/c23/videos/004.mp4", vids / "004.mp4")
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "004.wav").symlink_to(sample_data / SPEECH)
    res = prepare("ffpp", corpus, audio_dir=audio)
    assert res.rows[0].audio_path is None and res.rows[0].extra.get("audio_missing")
    assert [f.reason for f in res.failures] == ["outside_root"]


def test_every_invalid_manifest_line_is_listed_before_any_work(sample_data, tmp_path):
    manifest = _write(tmp_path / "m.jsonl", [
        _row("a", "a.wav"), '{"id": "b", "path": "b.wav"', {"id": "c"}, _row("d", "d.wav"),
        _row("e", "e.wav") | {"audio_label": "spoof"}, "[1, 2]"])
    store = tmp_path / "s.zarr"
    res = CliRunner().invoke(main, ["extract", str(manifest), "--store", str(store), *ARGS])
    assert res.exit_code == 2 and "Traceback" not in res.output
    for line in ("line 2: not valid JSON", "line 3: 'path' is a required property", "line 5: 'spoof'",
                 "line 6: expected a JSON object"):
        assert line in res.output, res.output
    assert set(re.findall(r"line (\d+)", res.output)) == {"2", "3", "5", "6"} and not store.exists()


def _one_line_error(res, *words):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(x.startswith("error: ") for x in lines) == 1, res.output
    text = lines[-1]
    for w in words:
        assert w in text, text


def test_no_command_ends_in_a_traceback_on_bad_input(sample_data, tmp_path):
    run = CliRunner().invoke
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "text.mp4").write_text("not a video\n")
    manifest = _write(root / "m.jsonl", [_row("t", "text.mp4")])
    store = tmp_path / "failed.zarr"
    res = run(main, ["extract", str(manifest), "--store", str(store), *ARGS])
    assert res.exit_code == 0, res.output
    # inspect --png on a store in which every item failed
    _one_line_error(run(main, ["inspect", "--store", str(store), "--png", str(tmp_path / "x.png")]),
                    str(store), "no samples with face crops")
    not_store = tmp_path / "plain"
    not_store.mkdir()
    _one_line_error(run(main, ["inspect", "--store", str(not_store)]), str(not_store))
    _one_line_error(run(main, ["verify", "--store", str(not_store)]), str(not_store))
    _one_line_error(run(main, ["convert", "--store", str(not_store), "--vocoder", "griffinlim",
                               "--workers", "0", "--no-progress"]), str(not_store))
    _one_line_error(run(main, ["build-shards", "--store", str(not_store), "--out", str(tmp_path / "o.zarr"),
                               "--workers", "0", "--no-progress"]), str(not_store))
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    _one_line_error(run(main, ["extract", str(binary), "--store", str(tmp_path / "b.zarr"), *ARGS]), str(binary))
    _one_line_error(run(main, ["merge", str(binary), "-o", str(tmp_path / "m2.jsonl")]), str(binary))
    _one_line_error(run(main, ["manifest", "nosuch", str(root), "-o", str(tmp_path / "m3.jsonl")]), "nosuch")
    assert np.all(zarr.open_group(str(store), mode="r")["meta/status"][:] == 2)
