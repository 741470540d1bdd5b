"""Bad inputs through the detector's commands that read raw media (``avdd-detect``,
``avdd-eval --manifest``), made from the real sample media: empty, text and truncated files, a
0.2 s clip, a video without sound, silence, 8 kHz stereo and 48 kHz 5.1 audio, a missing file,
manifest rows pointing out of the corpus, in a folder whose name has a space and a non-ASCII
character. Each bad file gets its reason, the others are scored exactly as when they are alone."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from detector.cli import detect_main, eval_main
from pipeline.cli import main as data_main
from tests.conftest import ffmpeg, write_unreadable_media

SPEECH = "speech/psphinx_numbers.wav"
TALKING = "talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4"


@pytest.fixture(scope="module")
def bad_folder(sample_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad inputs é")
    w, t = str(sample_data / SPEECH), str(sample_data / TALKING)
    shutil.copy(w, d / "good speech é.wav")
    write_unreadable_media(sample_data, d)
    ffmpeg("-i", w, "-t", "0.2", str(d / "short.wav"))
    ffmpeg("-i", t, "-t", "2", "-an", "-c:v", "libx264", "-preset", "ultrafast", str(d / "noaudio.mp4"))
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "2", str(d / "silent.wav"))
    ffmpeg("-i", w, "-ar", "8000", "-ac", "2", str(d / "r8k stereo.wav"))
    ffmpeg("-i", w, "-ar", "48000", "-ac", "6", str(d / "r48k 51.wav"))
    return d


def _detect(args):
    r = CliRunner().invoke(detect_main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, {f["path"].split("/")[-1]: f for f in json.loads(r.output)["files"]}


def test_detect_records_each_bad_file_and_scores_the_others_as_alone(audio_checkpoint, bad_folder, tmp_path):
    base = ["--checkpoint", audio_checkpoint, "--json", "--clips", "2"]
    code, rows = _detect([bad_folder, tmp_path / "missing.wav", *base])
    assert code == 1  # some files could not be scored; the others are
    errors = {name: (f["error"] or "") for name, f in rows.items()}
    expected = {"zero.mp4": "wrong kind: not a known audio or video container",
                "text.mp4": "wrong kind: not a known audio or video container",
                "truncated.mp4": "decode error", "short.wav": "too short: 0.20 s < 0.50 s",
                "noaudio.mp4": "no audio", "missing.wav": "file does not exist"}
    for name, prefix in expected.items():
        assert errors[name].startswith(prefix), (name, errors[name])
        assert rows[name]["score"] is None and rows[name]["clips"] == 0
    scored = sorted(set(rows) - set(expected))
    assert scored == ["good speech é.wav", "r48k 51.wav", "r8k stereo.wav", "silent.wav"]
    for name in scored:
        f = rows[name]
        assert f["error"] is None and f["clips"] >= 1 and f["clips_with_audio"] == f["clips"]
        assert 0 <= f["score"] <= 1 and f["score"] == f["p_audio_fake"] and f["verdict"] in ("real", "fake")
    code, alone = _detect([bad_folder / "good speech é.wav", *base])
    assert code == 0
    assert rows["good speech é.wav"]["p_audio_fake"] == pytest.approx(alone["good speech é.wav"]["p_audio_fake"], abs=1e-6)


def _manifest_with_hostile_rows(folder, out):
    res = CliRunner().invoke(data_main, ["manifest", "folder", str(folder), "-o", str(out), "--default-label", "real"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    good = next(r for r in rows if r["id"] == "good speech é")
    rows += [dict(good, id=i, group=i, path=p) for i, p in [("up", "../../../../etc/passwd"), ("abs", "/etc/hostname")]]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_eval_on_a_manifest_lists_the_items_it_could_not_use(audio_checkpoint, bad_folder, tmp_path):
    manifest = _manifest_with_hostile_rows(bad_folder, tmp_path / "m.jsonl")
    failures = {json.loads(x)["id"]: json.loads(x)["reason"] for x in (tmp_path / "m.failures.jsonl").read_text().splitlines()}
    assert failures == {"zero": "wrong_kind", "text": "wrong_kind", "truncated": "decode_error"}  # not in the manifest
    r = CliRunner().invoke(eval_main, ["--checkpoint", audio_checkpoint, "--manifest", str(manifest), "--root",
                                       str(bad_folder), "--out", str(tmp_path / "rep"), "--workers", "0"])
    assert r.exit_code == 0, r.output
    assert "3 item(s) of" in r.output and "could not be extracted" in r.output
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    excluded = {e["id"]: e["reason"] for e in m["source"]["not_evaluated"]}
    assert excluded == {"short": "too_short", "up": "outside_root", "abs": "outside_root"}
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| up | outside_root | resolves to /etc/passwd" in report and "| short | too_short |" in report

    # the figures are those of the usable items alone: the bad rows change nothing
    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(line + "\n" for line in manifest.read_text().splitlines()
                             if json.loads(line)["id"] not in excluded))
    shutil.copy(tmp_path / "m.meta.json", tmp_path / "clean.meta.json")
    r = CliRunner().invoke(eval_main, ["--checkpoint", audio_checkpoint, "--manifest", str(clean), "--root",
                                       str(bad_folder), "--out", str(tmp_path / "rep-clean"), "--workers", "0"])
    assert r.exit_code == 0, r.output
    c = json.loads((tmp_path / "rep-clean" / "metrics.json").read_text())
    assert c["source"]["not_evaluated"] == [] and c["n_samples"] == m["n_samples"] > 0
    assert c["modes"] == m["modes"] and c["file_level"] == m["file_level"]
