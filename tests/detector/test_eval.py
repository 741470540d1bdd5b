"""avdd-eval and avdd-detect on shards and files made from the real sample media."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from PIL import Image

from detector.cli import detect_main, eval_main
from detector.data import shard_info
from detector.evaluate import audio_cues, evaluate_shards
from detector.report import write_report
from detector.checkpoint import load_checkpoint


def png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 400 and im.height >= 250
        return im.size


def test_full_report_on_av_shards(av_checkpoint, av_shards, tmp_path):
    """Every section: both modes, modalities, categories, splits, files, robustness, shortcuts,
    plots (unseen categories: see the audio test)."""
    out = tmp_path / "report"
    r = CliRunner().invoke(eval_main, ["--checkpoint", av_checkpoint, "--shards", str(av_shards), "--out", str(out),
                                       "--split", "train,val", "--robustness", "--visualize", "2"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["modes"]) == {"sync", "two_stream"} and set(m["modalities"]) == {"video", "audio"}
    assert {"real", "shifted", "swapped", "vocoder:griffinlim"} <= set(m["per_category"]["sync"])
    assert set(m["robustness"]) == {"clean", "gaussian_noise", "jpeg", "video_compression", "all"}
    assert all(0 <= v["sync"]["auc"] <= 1 for v in m["robustness"].values())
    assert set(m["shortcuts"]) == {"duration", "leading_silence", "trailing_silence", "loudness", "bandwidth"}
    assert set(m["shortcuts"]["loudness"]) == {"sequence_fake", "video_fake", "audio_fake"}
    text = (out / "report.md").read_text()
    for section in ("## Detection", "## Per modality", "## Per category", "## Per split", "## Per file",
                    "## Robustness", "## Shortcut audit", "![roc](roc.png)", "## Visualizations",
                    "](visualizations/patches_summary.png)", "](visualizations/mel_00_"):
        assert section in text
    for name in ("roc.png", "categories.png", "robustness.png", "visualizations/patches_summary.png"):
        png(out / name)
    # the per-category table has the EER and AP its caption promises, "-" where they are undefined
    header = next(line for line in text.splitlines() if line.startswith("| category |"))
    assert header.split(" | ")[2:6] == ["acc (sync)", "AUC (sync)", "EER (sync)", "AP (sync)"]
    real = next(line for line in text.splitlines() if line.startswith("| real |")).strip("| ").split(" | ")
    assert real[3:6] == ["-", "-", "-"]
    voc = m["per_category"]["sync"]["vocoder:griffinlim"]
    row = next(line for line in text.splitlines() if line.startswith("| vocoder:griffinlim |"))
    assert row.strip("| ").split(" | ")[2:6] == [f"{voc[k]:.3f}" for k in ("acc", "auc", "eer", "ap")]


def test_per_category_metrics_against_the_real_samples():
    from detector import metrics as M
    from detector.evaluate import per_category

    s = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.25, 0.6, 0.7])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    cats = np.array(["real"] * 3 + ["a"] * 3 + ["b"] * 2)
    r = per_category(s, y, cats)
    a = [0, 1, 2, 3, 4, 5]
    assert r["a"]["n"] == 3 and r["a"]["acc"] == pytest.approx(2 / 3)
    assert r["a"]["auc"] == pytest.approx(M.auc(s[a], y[a])) and r["a"]["eer"] == pytest.approx(M.eer(s[a], y[a]))
    assert r["a"]["ap"] == pytest.approx(M.average_precision(s[a], y[a]))
    assert r["b"]["auc"] == 1.0 and r["b"]["eer"] == 0.0 and r["b"]["ap"] == 1.0
    assert set(r["real"]) == {"n", "acc"}  # no second class: no AUC, EER or AP
    assert "auc" not in per_category(s[3:], y[3:], cats[3:])["a"]  # no real samples at all


def test_unseen_category_and_the_audio_model(audio_checkpoint, speech_shards, tmp_path):
    from pipeline.pairs import PairConfig
    from pipeline.shards import ShardsConfig, build_shards

    store = shard_info(speech_shards)["store"]
    held = tmp_path / "held.zarr"
    build_shards(store, held, ShardsConfig(pairs=PairConfig(holdout_category="world"),
                                           split_ratios={"train": 0.6, "val": 0.2, "test": 0.2}),
                 workers=0, progress=False)
    model, cfg = load_checkpoint(audio_checkpoint)
    result = evaluate_shards(model, cfg, held, splits=("test",), robustness=True, holdout="world")
    assert list(result["modes"]) == ["audio"] and "skipped" in result["robustness"]
    assert result["unseen"]["categories"] == ["vocoder:world"] and result["unseen"]["n_heldout"] > 0
    assert 0 <= result["unseen"]["audio"]["auc"] <= 1
    files = write_report(result, tmp_path / "rep")
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Unseen category" in text
    n_real = result["per_category"]["audio"]["real"]["n"]
    assert result["unseen"]["n_real"] == n_real
    assert f"the {n_real} real samples of the evaluated split(s) (test)" in text
    assert all(f.exists() for f in files)
    with pytest.raises(ValueError, match="holds vocoder:world, not 'melgan'"):
        evaluate_shards(model, cfg, held, holdout="melgan")
    with pytest.raises(ValueError, match="do not apply"):
        evaluate_shards(model, cfg, held, modes=("sync",))


def test_audio_cues_on_real_speech(sample_data):
    x, sr = sf.read(sample_data / "speech/psphinx_numbers.wav", dtype="float32")
    c = audio_cues(x, sr)
    padded = audio_cues(np.concatenate([np.zeros(8000, np.float32), x, np.zeros(16000, np.float32)]), sr)
    assert padded["leading_silence"] == pytest.approx(c["leading_silence"] + 0.5, abs=0.03)
    assert padded["trailing_silence"] == pytest.approx(c["trailing_silence"] + 1.0, abs=0.03)
    assert audio_cues(x * 0.1, sr)["loudness"] == pytest.approx(c["loudness"] - 20, abs=0.01)
    import torch
    import torchaudio.functional as AF

    narrow = AF.lowpass_biquad(torch.from_numpy(x), sr, 2000.0).numpy()
    assert audio_cues(narrow, sr)["bandwidth"] < c["bandwidth"]


@pytest.fixture(scope="module")
def in_the_wild(sample_data, tmp_path_factory):
    """An In-the-Wild-layout set made of real speech: the utterances as bona-fide, their
    Griffin-Lim re-syntheses, cut to their first 1.5 s, as spoofs (shorter: a duration shortcut)."""
    from pipeline.vocoders import load_vocoder

    root = tmp_path_factory.mktemp("itw") / "release_in_the_wild"
    root.mkdir()
    gl = load_vocoder("griffinlim", n_iter=16)
    rows = ["file,speaker,label"]
    for k, p in enumerate(sorted((sample_data / "speech").glob("*.wav"))):
        x, sr = sf.read(p, dtype="float32")
        if len(x) < 2 * sr:
            continue
        shutil.copy(p, root / f"{2 * k}.wav")
        sf.write(root / f"{2 * k + 1}.wav", gl.copy_synthesize(x[None], sr)[0][: int(1.5 * sr)], sr)
        rows += [f"{2 * k}.wav,speaker{k},bona-fide", f"{2 * k + 1}.wav,speaker{k},spoof"]
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def test_cross_dataset_on_an_in_the_wild_manifest(audio_checkpoint, av_checkpoint, in_the_wild, tmp_path):
    from pipeline.manifest import write_manifest
    from pipeline.recipes import prepare

    manifest = tmp_path / "itw.jsonl"
    n_files = len((in_the_wild / "meta.csv").read_text().splitlines()) - 1
    write_manifest(prepare("in_the_wild", in_the_wild.parent), manifest, "in_the_wild", in_the_wild.parent)
    out = tmp_path / "report"
    r = CliRunner().invoke(eval_main, ["--checkpoint", audio_checkpoint, "--manifest", str(manifest),
                                       "--out", str(out), "--clips-per-item", "2"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["modes"]["audio"]["n"] > 0 and m["file_level"]["audio"]["n"] == n_files
    # the spoofs are shorter: the audit finds it and the report warns
    assert m["shortcuts"]["duration"]["audio_fake"] == pytest.approx(1.0)
    assert "warning: **duration**" in (out / "report.md").read_text()
    # the same extracted shards, the {2+1}-stream model: no sample has a face, so its audio head alone
    r = CliRunner().invoke(eval_main, ["--checkpoint", av_checkpoint, "--shards", str(out / "_data" / "shards.zarr"),
                                       "--out", str(tmp_path / "av")])
    assert r.exit_code == 0, r.output
    av = json.loads((tmp_path / "av" / "metrics.json").read_text())
    assert list(av["modes"]) == ["audio"] and av["modes"]["audio"]["n"] == m["modes"]["audio"]["n"]
    assert "audio head(s) are evaluated alone" in (tmp_path / "av" / "report.md").read_text()
    r = CliRunner().invoke(eval_main, ["--checkpoint", av_checkpoint, "--shards", str(out / "_data" / "shards.zarr"),
                                       "--out", str(tmp_path / "av2"), "--mode", "sync"])
    assert r.exit_code == 2 and "no samples with both video and audio" in r.output


def test_detect_every_sample_video_and_a_wav(av_checkpoint, sample_data, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("this is no video\n")
    r = CliRunner().invoke(detect_main, [str(sample_data / "dfdc"), str(sample_data / "ffpp"), str(sample_data / "talking"),
                                         str(sample_data / "speech/psphinx_numbers.wav"), str(broken), "--checkpoint",
                                         av_checkpoint, "--json", "--clips", "2"])
    assert r.exit_code == 1  # one file could not be read; the others are scored
    out = json.loads(r.output)
    rows = {f["path"].split("/")[-1]: f for f in out["files"]}
    assert len(rows) == 8 and out["mode"] == "sync" and out["model"] == "av"
    for name in ("lynaeydofd.mp4", "brtujopkby.mp4", "hdtf_WDA_AlexandriaOcasioCortez_000.mp4", "liveportrait_d10.mp4"):
        f = rows[name]
        assert f["error"] is None and f["clips"] == 2 and f["clips_with_face"] == 2 and f["clips_with_audio"] == 2
        assert all(0 <= f[k] <= 1 for k in ("p_video_fake", "p_audio_fake", "p_sequence_fake", "score"))
        assert f["verdict"] in ("real", "fake")
    for name in ("004.mp4", "004_982.mp4"):  # FF++: no audio track
        f = rows[name]
        assert f["p_audio_fake"] is None and f["p_sequence_fake"] is None and f["score"] == f["p_video_fake"]
        assert "no audio track: scored on the video only" in f["notes"]
    wav = rows["psphinx_numbers.wav"]
    assert wav["p_video_fake"] is None and wav["score"] == wav["p_audio_fake"] and wav["clips_with_face"] == 0
    assert "no face found: scored on the audio only" in wav["notes"]
    assert rows["broken.mp4"]["error"].startswith("wrong kind") and rows["broken.mp4"]["score"] is None


@pytest.fixture(scope="module")
def speech_pieces(sample_data):
    """The real sample speech cut into 1.5 s pieces (one clip each): 24 utterances."""
    pieces = []
    for p in sorted((sample_data / "speech").glob("*.wav")):
        x, sr = sf.read(p, dtype="float32")
        step = int(1.5 * sr)
        pieces += [(x[i : i + step], sr) for i in range(0, len(x) - step + 1, step)]
    return pieces


def _voxceleb(pieces, root):
    """VoxCeleb layout (``dev|test/wav/id<speaker>/<video>/<clip>.wav``), one speaker per piece."""
    for k, (x, sr) in enumerate(pieces):
        part = "dev" if k < 20 else "test"
        (root / part / "wav" / f"id1{k:04d}" / "vid").mkdir(parents=True)
        sf.write(root / part / "wav" / f"id1{k:04d}" / "vid" / "00001.wav", x, sr)
    return root


def _asvspoof_la(pieces, root):
    """ASVspoof2019 LA layout: protocols and FLAC files of the train, dev and eval partitions. The
    pieces are the bona-fide utterances, their Griffin-Lim re-syntheses the spoofs (A01-A03)."""
    from pipeline.vocoders import load_vocoder

    gl = load_vocoder("griffinlim", n_iter=16)
    la = root / "LA"
    (la / "ASVspoof2019_LA_cm_protocols").mkdir(parents=True)
    partitions = [("train", "T", "A01", range(12)), ("dev", "D", "A02", range(12, 18)),
                  ("eval", "E", "A03", range(18, 24))]
    for part, letter, attack, ks in partitions:
        flac = la / f"ASVspoof2019_LA_{part}" / "flac"
        flac.mkdir(parents=True)
        lines = []
        for k in ks:
            x, sr = pieces[k]
            speaker = f"LA_{k // 2:04d}"
            sf.write(flac / f"LA_{letter}_{k:07d}.flac", x, sr, format="FLAC")
            sf.write(flac / f"LA_{letter}_{k + 100:07d}.flac", gl.copy_synthesize(x[None], sr)[0], sr, format="FLAC")
            lines += [f"{speaker} LA_{letter}_{k:07d} - - bonafide",
                      f"{speaker} LA_{letter}_{k + 100:07d} - {attack} spoof"]
        name = f"ASVspoof2019.LA.cm.{part}.{'trn' if part == 'train' else 'trl'}.txt"
        (la / "ASVspoof2019_LA_cm_protocols" / name).write_text("\n".join(lines) + "\n")
    return la


@pytest.mark.slow
def test_cvt_vs_asvspoof_chain(speech_pieces, in_the_wild, tmp_path):
    """The README's CVT-vs-ASVspoof -> In-the-Wild commands, as written there (plus a tiny preset,
    two epochs, no Dask workers), on tiny corpora of real speech in the three layouts: both runs
    have a validation split, both checkpoints are evaluated on the same In-the-Wild shards."""
    from detector.cli import train_main
    from detector.data import ShardDataset
    from pipeline.cli import main as data

    def run(cmd, args):
        r = CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    quick = ["--workers", 0, "--no-progress"]
    tiny = ["--preset", "tiny", "--epochs", 2, "--no-progress"]
    w = tmp_path
    vox = _voxceleb(speech_pieces, w / "voxceleb")
    run(data, ["manifest", "voxceleb", vox, "-o", w / "vox.jsonl"])
    run(data, ["extract", w / "vox.jsonl", "--store", w / "vox.zarr", "--audio-only", "--clip-seconds", 4,
               "--audio-hop", 2, *quick])
    run(data, ["convert", "--store", w / "vox.zarr", "--vocoder", "all", *quick])
    run(data, ["build-shards", "--store", w / "vox.zarr", "--out", w / "cvt.zarr", "--pairs", "own,vocoded",
               "--balance", "label", "--no-keep-splits", "--splits", "train=0.8,val=0.1,test=0.1", *quick])
    assert len(ShardDataset(w / "cvt.zarr", split="val")) > 0  # VoxCeleb has dev and test only: re-split
    cvt = json.loads(run(train_main, ["--shards", w / "cvt.zarr", "--model", "audio", "--out", w / "runs/cvt", *tiny]))
    assert cvt["best_epoch"] >= 0  # validated: the best checkpoint was chosen on val

    la = _asvspoof_la(speech_pieces, w / "asvspoof")
    run(data, ["manifest", "asvspoof2019_la", la, "-o", w / "la.jsonl"])
    run(data, ["extract", w / "la.jsonl", "--store", w / "la.zarr", "--clip-seconds", 4, "--audio-hop", 2, *quick])
    run(data, ["build-shards", "--store", w / "la.zarr", "--out", w / "la-shards.zarr", "--pairs", "own", *quick])
    assert len(ShardDataset(w / "la-shards.zarr", split="val")) > 0  # LA's dev partition
    asv = json.loads(run(train_main, ["--shards", w / "la-shards.zarr", "--model", "audio",
                                      "--out", w / "runs/asvspoof", *tiny]))
    assert asv["best_epoch"] >= 0

    run(data, ["manifest", "in_the_wild", in_the_wild, "-o", w / "itw.jsonl"])
    run(eval_main, ["--checkpoint", w / "runs/cvt/best.pt", "--manifest", w / "itw.jsonl", "--out",
                    w / "reports/cvt-on-itw"])
    run(eval_main, ["--checkpoint", w / "runs/asvspoof/best.pt", "--shards", w / "reports/cvt-on-itw/_data/shards.zarr",
                    "--out", w / "reports/asvspoof-on-itw"])
    n = len((in_the_wild / "meta.csv").read_text().splitlines()) - 1
    for name in ("cvt-on-itw", "asvspoof-on-itw"):
        m = json.loads((w / "reports" / name / "metrics.json").read_text())
        assert list(m["modes"]) == ["audio"] and 0 <= m["modes"]["audio"]["auc"] <= 1
        assert m["file_level"]["audio"]["n"] == n
        assert "| audio head | audio |" in (w / "reports" / name / "report.md").read_text()


def test_detect_on_a_dask_scheduler_scores_as_in_process(audio_checkpoint, sample_data, tmp_path):
    """``avdd-detect --scheduler`` prepares the files on a Dask cluster (here a local one, reached
    by its address like any running cluster) and scores them as the in-process run does."""
    from distributed import LocalCluster

    files = [str(sample_data / "speech/psphinx_numbers.wav"), str(sample_data / "speech/psphinx_goforward.wav")]
    base = ["--checkpoint", audio_checkpoint, "--json", "--clips", "2"]
    local = CliRunner().invoke(detect_main, [*files, *base])
    assert local.exit_code == 0, local.output
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster:
        remote = CliRunner().invoke(detect_main, [*files, *base, "--scheduler", cluster.scheduler_address,
                                                  "--work-dir", str(tmp_path / "work")])
    assert remote.exit_code == 0, remote.output
    a, b = json.loads(local.output)["files"], json.loads(remote.output)["files"]
    assert [f["path"] for f in a] == [f["path"] for f in b]
    for x, y in zip(a, b):
        # an audio file is scored from all of its clips (--clips counts those of a video)
        assert x["p_audio_fake"] == pytest.approx(y["p_audio_fake"], abs=1e-6) and x["clips"] == y["clips"] >= 2
    assert (tmp_path / "work" / "extract" / "store.zarr").is_dir()
