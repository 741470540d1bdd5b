"""Training on shards built from real media: learning, overfitting, resumption, the CLI."""

import csv
import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from detector import config as C
from detector import train as T
from detector.augment import Augment
from detector.builder import model_class
from detector.checkpoint import load_checkpoint
from detector.cli import train_main
from detector.data import ShardDataset
from detector.metrics import accuracy, auc
from detector.train import train
from tests.conftest import torch_threads

NO_AUGMENT = C.AugmentConfig(p_gaussian_noise=0, p_jpeg=0, p_video_compression=0, p_flip=0, random_crop=False,
                             p_audio_gain=0, p_audio_noise=0)


two_threads = torch_threads(2)


def scores(model, shards, split, cfg, head):
    mods = model_class(cfg.model.name).modalities
    ds = ShardDataset(shards, split=split, modalities=mods, require=mods, pairs=tuple(cfg.train.pairs) or None,
                      transform=Augment.for_model(cfg, train=False))
    out = {"s": [], "y": []}
    with torch.inference_mode():
        for batch in DataLoader(ds, batch_size=16):
            r = model(batch)
            out["s"].append(r[f"p_{head}"])
            out["y"].append(batch[{"audio": "audio_fake", "video": "video_fake", "sync": "sequence_fake"}[head]])
    return torch.cat(out["s"]).numpy(), torch.cat(out["y"]).numpy()


# AVDD_TEST_SEEDS=0,1,2 runs the test once per seed (benchmarks/learning_real_media.md)
@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("AVDD_TEST_SEEDS", "0").split(",")])
def test_audio_stream_tells_held_out_speech_from_its_conversions(speech_shards, tmp_path, seed):
    cfg = C.tiny("audio")
    # the log-mel stream (the AV models' audio stream); the audio model's LFCC default reaches
    # 0.64 on these 36 clips of 1.28 s (its evidence is benchmarks/lovo.md, on 4-s clips)
    cfg.model.audio.frontend = "logmel"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.seed = 12, 16, 3e-3, seed
    result = train(speech_shards, tmp_path / "run", cfg, progress=False)
    model, cfg = load_checkpoint(result["best_checkpoint"])
    s, y = scores(model, speech_shards, "test", cfg, "audio")
    test_auc = auc(s, y)
    n_train = n_samples(speech_shards, "train", ("audio",))
    print(f"audio stream, seed {cfg.train.seed}, {n_train} training clips, best epoch {result['best_epoch']}: "
          f"held-out utterances AUC {test_auc:.3f} on {len(y)} clips ({int(y.sum())} converted)")
    # observed 0.73-0.77 over seeds 0-2: 13 items of real speech are little data, and the
    # held-out items come from other recordings (a codec, a microphone) than the training ones
    assert set(np.unique(y).tolist()) == {0.0, 1.0} and test_auc >= 0.7
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert {r["phase"] for r in rows} == {"train", "val"} and float(rows[-1]["auc_audio"]) > 0.5


def test_av_model_overfits_a_small_real_training_set(av_shards, tmp_path):
    cfg = C.tiny("av")
    cfg.augment = NO_AUGMENT
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.val_split = 40, 8, 3e-3, ""
    cfg.train.warmup_steps = 5
    # real and fake faces and voices; telling out-of-sync pairs apart takes far more training
    # than a test can give (with them, the tiny model stays at the majority class here)
    cfg.train.pairs = ("own", "vocoded")
    train(av_shards, tmp_path / "run", cfg, progress=False)
    model, cfg = load_checkpoint(tmp_path / "run" / "last.pt")
    s, y = scores(model, av_shards, "train", cfg, "sync")
    print(f"av model, training set: sync accuracy {accuracy(s, y):.3f} on {len(y)} samples")
    assert accuracy(s, y) >= 0.95


def test_resume_continues_from_the_same_step(speech_shards, tmp_path):
    cfg = C.tiny("audio")
    cfg.train.batch_size, cfg.train.val_split = 4, ""
    # the cosine schedule's length is max_steps when one is given: the runs stopped at 3 and 6
    # steps would have two schedules; a constant rate after the warm-up keeps them comparable
    cfg.train.schedule = "constant"
    straight = train(speech_shards, tmp_path / "a", dataclasses.replace(cfg), progress=False, overrides={"max_steps": 6})
    train(speech_shards, tmp_path / "b", dataclasses.replace(cfg), progress=False, overrides={"max_steps": 3})
    first = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert first["position"]["step"] == 3 and first["position"]["batch"] == 3  # stopped inside epoch 0
    resumed = train(speech_shards, tmp_path / "b", resume=True, progress=False, overrides={"max_steps": 6})
    assert straight["steps"] == resumed["steps"] == 6
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def test_cli_runs_writes_and_refuses(speech_shards, tmp_path):
    out = tmp_path / "run"
    args = ["--shards", str(speech_shards), "--model", "audio", "--out", str(out), "--preset", "tiny",
            "--max-steps", "2", "--no-progress"]
    r = CliRunner().invoke(train_main, args)
    assert r.exit_code == 0, r.output
    printed = json.loads(r.output)
    assert printed["steps"] == 2 and printed["best_checkpoint"] is None  # stopped before its first validation
    assert {p.name for p in out.iterdir()} >= {"config.json", "log.csv", "last.pt"}
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["name"] == "audio" and saved["train"]["max_steps"] == 2
    r = CliRunner().invoke(train_main, args)
    assert r.exit_code == 2 and "--resume" in r.output
    r = CliRunner().invoke(train_main, [*args[:5], str(tmp_path / "none"), "--resume"])
    assert r.exit_code == 2 and "Nothing to resume" in r.output
    r = CliRunner().invoke(train_main, ["--shards", str(speech_shards), "--model", "video", "--out",
                                        str(tmp_path / "v"), "--preset", "tiny", "--max-steps", "1"])
    assert r.exit_code == 2 and "no 'train' samples with video" in r.output


def n_samples(shards, split, mods):
    return len(ShardDataset(shards, split=split, modalities=mods, require=mods))


def test_a_run_stopped_before_its_first_validation_has_no_best_checkpoint(speech_shards, tmp_path):
    cfg = C.tiny("audio")
    cfg.train.batch_size = 16
    run = tmp_path / "run"
    result = train(speech_shards, run, cfg, progress=False, overrides={"max_steps": 2})
    assert result["stopped"] == "max_steps" and result["best_epoch"] == -1 and result["best"] is None
    assert result["best_checkpoint"] is None and not (run / "best.pt").exists()
    assert (run / "last.pt").is_file() and result["last"] == str(run / "last.pt")
    # resumed past the end of epoch 0, it validates once: now best.pt holds that model
    per_epoch = math.ceil(n_samples(speech_shards, "train", ("audio",)) / 16)
    result = train(speech_shards, run, resume=True, progress=False, overrides={"max_steps": per_epoch + 1})
    assert result["steps"] == per_epoch + 1 and result["best_epoch"] == 0 and result["best"] is not None
    best = torch.load(result["best_checkpoint"], weights_only=True)
    assert best["position"]["step"] == per_epoch and best["position"]["best_epoch"] == 0


def test_without_validation_the_best_checkpoint_is_the_last(speech_shards, tmp_path):
    cfg = C.tiny("audio")
    cfg.train.batch_size, cfg.train.val_split = 16, ""
    result = train(speech_shards, tmp_path / "run", cfg, progress=False, overrides={"max_steps": 2})
    best = torch.load(result["best_checkpoint"], weights_only=True)
    last = torch.load(result["last"], weights_only=True)
    assert best["position"]["step"] == last["position"]["step"] == 2
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def test_early_stopping_counts_across_resume(speech_shards, tmp_path, monkeypatch):
    """Validation scores are scripted (the model's own would not reliably stall): early stopping
    with patience 2 stops 2 validations after the best one, a resumed run continues the count
    it had reached, a NaN score (a one-class validation set's AUC) is beaten by any finite one,
    and resuming a run that stopped early trains no further."""
    aucs = iter([float("nan"), 0.6, 0.7, 0.65, 0.66, 0.9, 0.95])
    validated = []

    def scripted(model, ds, device, amp=False, batch_size=16, workers=0):
        validated.append(1)
        return {"audio": {"acc": 0.5, "auc": next(aucs), "n": len(ds)}}

    monkeypatch.setattr(T, "evaluate", scripted)
    cfg = C.tiny("audio")
    cfg.train.batch_size, cfg.train.early_stopping = 128, 2  # one step per epoch
    run = tmp_path / "run"
    first = train(speech_shards, run, cfg, progress=False, overrides={"epochs": 4})
    assert first["stopped"] == "epochs" and first["best"] == 0.7 and first["best_epoch"] == 2
    assert torch.load(run / "last.pt", weights_only=True)["position"]["stale"] == 1  # 0.65 after 0.7
    resumed = train(speech_shards, run, resume=True, progress=False, overrides={"epochs": 10})
    # 0.66 is the second validation without a better score: stop after epoch 4 of 10
    # (a count restarted on resume would go on to epoch 5's 0.9)
    assert resumed["stopped"] == "early_stopping" and resumed["epochs"] == 5 < 10 and resumed["steps"] == 5
    assert resumed["best"] == 0.7 and resumed["best_epoch"] == 2 and len(validated) == 5
    assert torch.load(resumed["best_checkpoint"], weights_only=True)["position"]["step"] == 3
    rows = [r for r in csv.DictReader(open(run / "log.csv")) if r["phase"] == "val"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    again = train(speech_shards, run, resume=True, progress=False, overrides={"epochs": 10})
    assert again["stopped"] == "early_stopping" and again["steps"] == 5 and len(validated) == 5


def test_video_model_trains_on_video_only_samples(av_shards, tmp_path, monkeypatch):
    """FF++ items have no audio track: the video model trains on them (the av model leaves them
    out). The fixture's split puts the FF++ items in 'val', so this run trains on that split."""
    seen = []
    to_device = T.to_device

    def spy(batch, device):
        seen.append({k: batch[k].clone() for k in ("has_audio", "has_video", "index", "video")})
        return to_device(batch, device)

    monkeypatch.setattr(T, "to_device", spy)
    cfg = C.tiny("video")
    cfg.train.epochs, cfg.train.batch_size, cfg.train.log_every = 1, 4, 1
    cfg.train.train_split, cfg.train.val_split = "val", ""
    ds = ShardDataset(av_shards, split="val", modalities=("video",), require=("video",))
    ffpp = {str(i) for i, a in zip(ds.strings("id"), ds.table["audio"]) if a < 0}
    assert ffpp >= {"original/004", "NeuralTextures/004_982"}  # the fixture's FF++ items: no audio
    assert n_samples(av_shards, "val", ("video", "audio")) < len(ds)
    result = train(av_shards, tmp_path / "run", cfg, progress=False)
    assert result["steps"] == math.ceil(len(ds) / 4) and result["stopped"] == "epochs"
    has_audio = torch.cat([b["has_audio"] for b in seen])
    videos = torch.cat([b["video"] for b in seen])
    assert sorted(torch.cat([b["index"] for b in seen]).tolist()) == sorted(ds.index.tolist())
    assert int((has_audio == 0).sum()) == int((ds.table["audio"] < 0).sum()) > 0
    assert torch.cat([b["has_video"] for b in seen]).all() and videos[has_audio == 0].float().std() > 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == result["steps"] and all(math.isfinite(float(r["loss_video"])) for r in rows)
    assert all(r["loss_audio"] == "" and r["loss_sync"] == "" for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_on_cuda_resumes_with_its_scaler(av_shards, tmp_path, monkeypatch):
    """The tiny av model 3 steps on the GPU in mixed precision, then 3 more resumed: float16
    logits under autocast, finite losses, the GradScaler's state in last.pt and continued on
    resume, consecutive steps. Skipped without a CUDA device (CI has none); where there is one:
    pytest tests/detector/test_train.py -k cuda -s"""
    import detector.losses

    dtypes = []
    loss = detector.losses.compute_loss

    def spy(outputs, batch, weights=None):
        dtypes.append(outputs["logit_sync"].dtype)
        return loss(outputs, batch, weights)

    monkeypatch.setattr(detector.losses, "compute_loss", spy)  # train() imports it at each call
    cfg = C.tiny("av")
    cfg.train.batch_size, cfg.train.val_split, cfg.train.log_every = 4, "", 1
    assert cfg.train.amp
    run = tmp_path / "run"
    first = train(av_shards, run, cfg, device="cuda", progress=False, overrides={"max_steps": 3})
    a = torch.load(run / "last.pt", weights_only=True)
    assert first["steps"] == 3 and a["position"]["step"] == 3 and a["scheduler"]["last_epoch"] == 3
    assert set(a["scaler"]) >= {"scale", "_growth_tracker"} and a["scaler"]["scale"] > 0 and a["cuda_rng"]
    resumed = train(av_shards, run, resume=True, device="cuda", progress=False, overrides={"max_steps": 6})
    b = torch.load(run / "last.pt", weights_only=True)
    assert resumed["steps"] == 6 and b["position"]["step"] == 6 and b["scheduler"]["last_epoch"] == 6
    assert dtypes == [torch.float16] * 6
    # the scaler went on from its saved state: the same scale 3 more unskipped steps on, or a
    # smaller one after an overflow (a fresh scaler would restart at 2**16 with a count of 3)
    s1, t1 = a["scaler"]["scale"], a["scaler"]["_growth_tracker"]
    s2, t2 = b["scaler"]["scale"], b["scaler"]["_growth_tracker"]
    assert s2 < s1 or (s2 == s1 and t2 == t1 + 3), (a["scaler"], b["scaler"])
    rows = [r for r in csv.DictReader(open(run / "log.csv")) if r["phase"] == "train"]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("loss", "loss_video", "loss_audio", "loss_sync"))
    assert all(torch.isfinite(v).all() for v in b["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_ddp_under_torchrun_on_cpu(speech_shards, tmp_path):
    """Two processes (gloo on CPU) train one epoch of one model under torchrun, each on half of
    the training set; rank 0 validates, writes the run (its checkpoint holds the unwrapped model
    at the step both ranks reached) and alone prints the result."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "detector.cli", "--shards", str(speech_shards), "--model", "audio", "--out", str(out),
           "--preset", "tiny", "--epochs", "1", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('"best_checkpoint"') == 1, r.stdout  # one result, from rank 0
    result = json.loads(r.stdout)
    per_rank = math.ceil(math.ceil(n_samples(speech_shards, "train", ("audio",)) / 2) / C.tiny().train.batch_size)
    assert result["steps"] == per_rank and result["epochs"] == 1 and result["stopped"] == "epochs"
    assert result["best_epoch"] == 0 and result["best"] is not None
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["position"]["step"] == per_rank and not any(k.startswith("module.") for k in state["model"])
    best = torch.load(result["best_checkpoint"], weights_only=True)
    assert all(torch.equal(best["model"][k], state["model"][k]) for k in state["model"])
    rows = list(csv.DictReader(open(out / "log.csv")))
    val = [r for r in rows if r["phase"] == "val"]
    assert len(val) == 1 and val[0]["epoch"] == "0" and 0 <= float(val[0]["auc_audio"]) <= 1


def test_a_run_without_validation_split_carves_one_from_training_identities(speech_shards, tmp_path, capsys):
    """Shards of real speech built with train and test only: training says so loudly, validates
    on a carved set of whole utterances (a real clip and its conversions together, none of them
    trained on) and selects a checkpoint."""
    from pipeline.pairs import PairConfig
    from pipeline.shards import ShardsConfig, build_shards

    from detector.train import datasets

    noval = tmp_path / "noval.zarr"
    build_shards(speech_shards.parent / "s.zarr", noval,
                 ShardsConfig(pairs=PairConfig(pairs=("own", "vocoded")), split_ratios={"train": 0.8, "test": 0.2}),
                 workers=0, progress=False)
    cfg = C.tiny("audio")
    cfg.train.epochs, cfg.train.batch_size = 2, 16
    notes = []
    tr, va = datasets(noval, cfg, notes)
    assert va is not None and len(va) > 0 and "carved a validation set" in notes[0]
    groups_tr, groups_va = set(tr.strings("group").tolist()), set(va.strings("group").tolist())
    assert groups_va and not groups_tr & groups_va
    assert set(va.labels("audio_fake").tolist()) == {0.0, 1.0}  # real clips with their conversions
    result = train(noval, tmp_path / "run", cfg, progress=False)
    assert "carved a validation set" in capsys.readouterr().err and result["notes"]
    assert result["best_epoch"] >= 0 and result["best_checkpoint"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert sum(r["phase"] == "val" for r in rows) == 2


def test_warm_up_scales_with_the_length_of_the_run():
    from detector.train import _schedule, warmup_steps

    tc = C.base("audio").train  # 500 warm-up steps at most
    assert warmup_steps(tc, 240) == 24 and warmup_steps(tc, 100_000) == 500
    f = _schedule(tc, 240)
    rates = [f(s) for s in range(240)]
    assert rates[23] == 1.0 and max(rates) == 1.0 and rates[-1] < 0.01  # the peak is reached, then decays


@pytest.mark.parametrize("name", ["lfcc-lr", "lfcc-gmm"])
def test_classic_baselines_train_and_score_like_any_model(speech_shards, tmp_path, name):
    """The two baselines through avdd-train on real speech and its Griffin-Lim and WORLD
    conversions: a checkpoint that loads like any other and has learned its training data (on
    the 36 held-out clips they reach only 0.58-0.66: they are the floor a detector must clear)."""
    cfg = C.tiny(name)
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = 12, 16, 1e-2
    result = train(speech_shards, tmp_path / "run", cfg, progress=False)
    assert result["best_epoch"] >= 0
    model, cfg = load_checkpoint(result["best_checkpoint"])
    s, y = scores(model, speech_shards, "train", cfg, "audio")
    s_test, y_test = scores(model, speech_shards, "test", cfg, "audio")
    print(f"{name}: training AUC {auc(s, y):.3f}, held-out utterances AUC {auc(s_test, y_test):.3f}")
    assert auc(s, y) >= 0.75  # measured: lfcc-lr 0.90, lfcc-gmm 0.78
    if name == "lfcc-gmm":
        state = torch.load(result["best_checkpoint"], weights_only=True)
        assert state["fit"]["real"]["frames"] > 1000 and state["fit"]["fake"]["components"] == 32
        # resuming a fitted run fits nothing again
        assert train(speech_shards, tmp_path / "run", resume=True, progress=False)["best"] == result["best"]


def test_left_out_vocoders_neither_train_nor_validate(speech_shards):
    from detector.train import datasets

    cfg = C.tiny("audio")
    cfg.train.exclude_vocoders = ("world",)
    tr, va = datasets(speech_shards, cfg)
    for ds in (tr, va):
        vocoders = set(ds.strings("vocoder").tolist())
        assert vocoders == {"", "griffinlim"}  # real clips and the other vocoder's conversions
    full, _ = datasets(speech_shards, C.tiny("audio"))
    assert len(tr) == len(full) - int((full.strings("vocoder") == "world").sum())
    cfg.train.exclude_vocoders = ("wavenet",)
    with pytest.raises(ValueError, match="'wavenet'.*not among the vocoders"):
        datasets(speech_shards, cfg)
