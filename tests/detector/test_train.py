"""Training on shards built from real media: learning, overfitting, resumption, the CLI."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from detector import config as C
from detector.augment import Augment
from detector.cli import train_main
from detector.data import ShardDataset
from detector.metrics import accuracy, auc
from detector.train import _Transformed, load_checkpoint, train
from tests.conftest import torch_threads

NO_AUGMENT = C.AugmentConfig(p_gaussian_noise=0, p_jpeg=0, p_video_compression=0, p_flip=0, random_crop=False,
                             p_audio_gain=0, p_audio_noise=0)


two_threads = torch_threads(2)


def scores(model, shards, split, cfg, head):
    mods = ("video", "audio") if cfg.model.name.startswith("av") else (cfg.model.name,)
    ds = ShardDataset(shards, split=split, modalities=mods, require=mods, pairs=tuple(cfg.train.pairs) or None)
    ds.transform = Augment.for_model(cfg, train=False)
    out = {"s": [], "y": []}
    with torch.inference_mode():
        for batch in DataLoader(_Transformed(ds), batch_size=16):
            r = model(batch)
            out["s"].append(r[f"p_{head}"])
            out["y"].append(batch[{"audio": "audio_fake", "video": "video_fake", "sync": "sequence_fake"}[head]])
    return torch.cat(out["s"]).numpy(), torch.cat(out["y"]).numpy()


def test_audio_stream_tells_held_out_speech_from_its_conversions(speech_shards, tmp_path):
    cfg = C.tiny("audio")
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = 12, 16, 3e-3
    result = train(speech_shards, tmp_path / "run", cfg, progress=False)
    model, cfg = load_checkpoint(result["best_checkpoint"])
    s, y = scores(model, speech_shards, "test", cfg, "audio")
    test_auc = auc(s, y)
    print(f"audio stream, held-out utterances: AUC {test_auc:.3f} on {len(y)} clips ({int(y.sum())} converted)")
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
    assert json.loads(r.output)["steps"] == 2
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


@pytest.mark.slow
def test_ddp_under_torchrun_on_cpu(speech_shards, tmp_path):
    """Two processes (gloo on CPU) train one model under torchrun; rank 0 writes the run, whose
    checkpoint holds the unwrapped model at the step both ranks reached."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "detector.cli", "--shards", str(speech_shards), "--model", "audio", "--out", str(out),
           "--preset", "tiny", "--max-steps", "3", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["position"]["step"] == 3 and not any(k.startswith("module.") for k in state["model"])
