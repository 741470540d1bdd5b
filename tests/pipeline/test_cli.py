"""avdd-data from the command line, on the real sample media."""

import json
import shutil

from click.testing import CliRunner
from PIL import Image

from pipeline.cli import main

SMALL = ["--workers", "0", "--clips-per-video", "2", "--clips-per-audio", "2", "--frames-per-clip", "16", "--no-progress"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_manifest_dfdc_reports_the_missing_file(sample_data, tmp_path):
    r = run("manifest", "dfdc", sample_data / "dfdc", "-o", tmp_path / "dfdc.jsonl")
    assert r.exit_code == 0, r.output
    assert "2 items" in r.output and "awnfpubqmo.mp4: missing" in r.output
    rows = [json.loads(line) for line in (tmp_path / "dfdc.jsonl").read_text().splitlines()]
    assert sorted(x["id"] for x in rows) == ["brtujopkby", "lynaeydofd"]
    fails = [json.loads(line) for line in (tmp_path / "dfdc.failures.jsonl").read_text().splitlines()]
    assert [(f["path"], f["reason"]) for f in fails] == [("dfdc_train_part_0/awnfpubqmo.mp4", "missing")]


def test_manifest_ffpp_json_summary(sample_data, tmp_path):
    r = run("manifest", "ffpp", sample_data / "ffpp", "-o", tmp_path / "ffpp.jsonl", "--json")
    assert r.exit_code == 0, r.output
    meta = json.loads(r.output)
    assert meta["by_split"] == {"val": 2} and meta["items"] == 2


def test_unknown_recipe_and_wrong_option_are_clear_errors(sample_data, tmp_path):
    r = run("manifest", "dfdcc", sample_data / "dfdc", "-o", tmp_path / "x.jsonl")
    assert r.exit_code == 2 and "valid recipes: asvspoof2019_la, dfdc" in r.output
    r = run("manifest", "dfdc", sample_data / "dfdc", "-o", tmp_path / "x.jsonl", "--audio-dir", tmp_path)
    assert r.exit_code == 2 and "does not take option(s) audio_dir" in r.output


def test_run_inspect_and_refused_config_change(sample_data, tmp_path):
    corpus = tmp_path / "talking"
    shutil.copytree(sample_data / "talking", corpus)
    store = tmp_path / "out" / "talking.zarr"
    r = run("run", corpus, "--store", store, *SMALL)
    assert r.exit_code == 0, r.output
    assert "samples 4 (ok 4, partial 0)" in r.output
    assert "convert griffinlim: 1 shard(s) now" in r.output and "convert world: 1 shard(s) now" in r.output
    assert (tmp_path / "out" / "talking.manifest.jsonl").is_file()
    # the main job ends with training shards the detector's reader opens: each of the 4 clips
    # with its own audio and with each vocoder's conversion, plus out-of-sync pairs
    assert "build-shards: " in r.output
    from detector.data import ShardDataset, shard_info

    shards = tmp_path / "out" / "talking.shards.zarr"
    by_pair = {k: sum(v.values()) for k, v in shard_info(shards)["summary"]["by_pair"].items()}
    assert by_pair["own"] == 4 and by_pair["vocoded"] == 8
    ds = ShardDataset(shards, split=None, modalities=("video", "audio"))
    assert len(ds) == sum(by_pair.values())
    assert ds[0]["video"].shape == (16, 3, 128, 128) and ds[0]["audio"].shape == (16 * 640,)

    r = run("inspect", "--store", store, "--json", "--png", tmp_path / "sheet.png", "--rows", "3")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["samples"] == 4 and info["with_video"] == 4 and info["with_audio"] == 4
    assert info["by_label"] == {"video=real,audio=real": 4}
    assert {v: info["vocoders"][v]["converted"] for v in info["vocoders"]} == {"griffinlim": 4, "world": 4}
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.size == (220 + 2 * 8 * 128, 3 * (128 + 28))

    r = run("run", corpus, "--store", store, *SMALL)
    assert r.exit_code == 0 and "0 shard(s) done now, 1 already done" in r.output
    assert "convert world: 0 shard(s) now, 1 already done" in r.output

    r = run("extract", tmp_path / "out" / "talking.manifest.jsonl", "--store", store, "--workers", "0",
            "--frames-per-clip", "8", "--clips-per-video", "2", "--clips-per-audio", "2", "--no-progress")
    assert r.exit_code == 2 and "frames_per_clip: 16 -> 8" in r.output and "--overwrite" in r.output


def test_merge_rebases_paths(sample_data, tmp_path):
    assert run("manifest", "dfdc", sample_data / "dfdc", "-o", tmp_path / "a.jsonl").exit_code == 0
    assert run("manifest", "ffpp", sample_data / "ffpp", "-o", tmp_path / "b.jsonl").exit_code == 0
    r = run("merge", tmp_path / "a.jsonl", tmp_path / "b.jsonl", "-o", tmp_path / "all.jsonl")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "all.meta.json").read_text())
    assert meta["corpus_dir"] == str(sample_data.resolve()) and meta["items"] == 4 and meta["failures"] == 1
    paths = sorted(json.loads(x)["path"] for x in (tmp_path / "all.jsonl").read_text().splitlines())
    assert paths[0] == "dfdc/dfdc_sample_real/lynaeydofd.mp4"
    assert all((sample_data / p).is_file() for p in paths)


def test_extract_on_an_existing_dask_cluster(sample_data, tmp_path):
    from distributed import LocalCluster

    corpus = tmp_path / "c"
    corpus.mkdir()
    shutil.copy(sample_data / "speech/psphinx_numbers.wav", corpus / "a.wav")
    shutil.copy(sample_data / "speech/psphinx_goforward.wav", corpus / "b.wav")
    assert run("manifest", "folder", corpus, "-o", tmp_path / "m.jsonl", "--default-label", "real").exit_code == 0
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster:
        r = run("extract", tmp_path / "m.jsonl", "--store", tmp_path / "s.zarr", "--scheduler",
                cluster.scheduler_address, "--items-per-shard", "1", "--no-progress", "--json")
        assert r.exit_code == 0, r.output
        ran_on = cluster.scheduler.task_prefixes  # tasks the cluster's scheduler has seen
    summary = json.loads(r.output)
    assert summary["computed"] == 2 and summary["counts"]["samples"] > 0
    assert "extract" in ran_on


def test_convert_command_and_its_errors(sample_data, tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    shutil.copy(sample_data / "speech/psphinx_numbers.wav", corpus / "a.wav")
    store = tmp_path / "s.zarr"
    assert run("run", corpus, "--store", store, "--vocoders", "", *SMALL).exit_code == 0
    r = run("convert", "--store", store, "--vocoder", "griffinlim", "--option", "n_iter=4", "--workers", "0",
            "--no-progress", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["info"]["config"]["griffinlim"]["n_iter"] == 4 and summary["counts"]["samples"] == 2
    r = run("convert", "--store", store, "--vocoder", "melgan", "--workers", "0")
    assert r.exit_code == 2 and "--checkpoint" in r.output
    r = run("convert", "--store", store, "--vocoder", "all", "--checkpoint", "x.pt", "--workers", "0")
    assert r.exit_code == 2 and "NAME=PATH" in r.output
    r = run("convert", "--store", store, "--vocoder", "all", "--option", "n_iter=4", "--workers", "0")
    assert r.exit_code == 2 and "NAME.KEY=VALUE" in r.output
    r = run("convert", "--store", store, "--vocoder", "world", "--option", "griffinlim.n_iter=4", "--workers", "0")
    assert r.exit_code == 2 and "'griffinlim' is not converted" in r.output
    r = run("convert", "--store", store, "--vocoder", "griffinlim", "--option", "n_iter=8", "--workers", "0")
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = run("convert", "--store", store, "--vocoder", "world", "--half", "--workers", "0")
    assert r.exit_code == 2 and "no float16 path" in r.output


def test_convert_all_usable_vocoders_and_a_refused_pickle(sample_data, tmp_path):
    """`--vocoder all` converts with griffinlim, world and every neural vocoder given as
    NAME=PATH; a pickled checkpoint that would run code is refused (exit 2, nothing written)."""
    import os
    import pickle

    import torch

    from pipeline.vocoders.melgan import MelGAN, MelGANConfig

    corpus = tmp_path / "c"
    corpus.mkdir()
    shutil.copy(sample_data / "speech/psphinx_goforward.wav", corpus / "a.wav")
    store = tmp_path / "s.zarr"
    assert run("run", corpus, "--store", store, "--vocoders", "", *SMALL).exit_code == 0
    torch.manual_seed(0)
    MelGAN(MelGANConfig.tiny()).save(tmp_path / "melgan.pt")  # a small trained-format file

    r = run("convert", "--store", store, "--vocoder", "all", "--checkpoint", f"melgan={tmp_path / 'melgan.pt'}",
            "--option", "griffinlim.n_iter=4", "--workers", "0", "--no-progress")
    assert r.exit_code == 0, r.output
    info = json.loads(run("inspect", "--store", store, "--json").stdout)
    assert {v: info["vocoders"][v]["converted"] for v in info["vocoders"]} == {"griffinlim": 2, "world": 2, "melgan": 2}

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"model": Payload()}, f)
    for extra in ([], ["--trust-pickle"]):
        r = run("convert", "--store", store, "--vocoder", "waveglow", "--checkpoint", tmp_path / "evil.pt",
                "--workers", "0", "--no-progress", *extra)
        assert r.exit_code == 2, r.output
        assert ("--trust-pickle" in r.output) if not extra else ("refusing" in r.output)
    assert not marker.exists()
    assert "waveglow" not in json.loads(run("inspect", "--store", store, "--json").stdout)["vocoders"]
