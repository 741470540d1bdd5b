"""Adding a model is one class and one registry line: the mouth model of the package, and a
model defined here, train and evaluate through the same code as the built-in ones."""

import numpy as np
import torch
from torch import nn

from detector import config as C
from detector.builder import MODELS, model_class
from detector.checkpoint import load_checkpoint
from detector.evaluate import evaluate_shards
from detector.models.audio import MelFrontend
from detector.models.base import Detector
from detector.train import train
from tests.conftest import torch_threads

two_threads = torch_threads(2)


class MelLinear(Detector):
    """An example model: a linear read-out of the clip's mean log-mel."""

    modalities = outputs = modes = ("audio",)
    main_output = "audio"

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.frontend = MelFrontend(cfg.audio)
        self.head = nn.Linear(cfg.audio.n_mels, 1)

    def forward(self, batch):
        mel = self.frontend(batch["audio"])
        logit = self.head(mel.mean(-1)).squeeze(-1)
        return {"logit_audio": logit, "p_audio": torch.sigmoid(logit), "features": {"audio.mel": mel},
                "attention": {}}


def test_a_model_registered_in_one_line_trains_and_evaluates(speech_shards, tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "mel-linear", MelLinear)
    cfg = C.tiny("mel-linear")
    cfg.train.val_split, cfg.train.batch_size = "val", 16
    result = train(speech_shards, tmp_path / "run", cfg, progress=False, overrides={"epochs": 1})
    assert result["stopped"] == "epochs" and result["best_epoch"] == 0 and result["steps"] > 0
    model, cfg = load_checkpoint(result["best_checkpoint"])
    assert isinstance(model, MelLinear)
    report = evaluate_shards(model, cfg, speech_shards, splits=("test",))
    assert list(report["modes"]) == ["audio"] and report["modes"]["audio"]["n"] > 0
    assert 0 <= report["modes"]["audio"]["auc"] <= 1


def test_mouth_model_reads_the_mouth_crops(av_shards, tmp_path):
    assert model_class("mouth").modalities == ("mouth",)
    cfg = C.tiny("mouth")
    cfg.train.val_split = ""
    result = train(av_shards, tmp_path / "run", cfg, progress=False, overrides={"max_steps": 2})
    model, cfg = load_checkpoint(result["best_checkpoint"])
    report = evaluate_shards(model, cfg, av_shards, splits=("train", "val", "test"))
    assert list(report["modes"]) == ["video"] and report["modes"]["video"]["n"] > 0
    # the model sees the mouth: blanking the mouth crops changes its output, the face does not enter
    from detector.evaluate import eval_dataset

    ds = eval_dataset(av_shards, cfg, None, require=("mouth",))
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert "video" not in batch and batch["mouth"].shape[-1] == 96
    with torch.inference_mode():
        p = model(batch)["p_video"]
        blank = model({**batch, "mouth": torch.zeros_like(batch["mouth"])})["p_video"]
    assert not np.allclose(p.numpy(), blank.numpy())


def test_a_checkpoint_refuses_shards_of_other_rates(audio_checkpoint, speech_shards, tmp_path):
    import shutil

    import zarr
    from click.testing import CliRunner

    from detector.cli import eval_main
    from detector.data import FORMAT

    state = torch.load(audio_checkpoint, weights_only=True)
    assert state["data"] == {"fps": 25.0, "sample_rate": 16000, "frames_per_clip": 32}
    other = tmp_path / "other.zarr"
    shutil.copytree(speech_shards, other)
    g = zarr.open_group(str(other), mode="r+")
    g.attrs[FORMAT] = {**g.attrs[FORMAT], "sample_rate": 8000, "frames_per_clip": 16}
    r = CliRunner().invoke(eval_main, ["--checkpoint", audio_checkpoint, "--shards", str(other),
                                       "--out", str(tmp_path / "report")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    line = r.output.strip()
    assert "\n" not in line and str(other) in line
    assert "sample_rate 8000" in line and "frames_per_clip 16" in line and "sample_rate 16000" in line
    assert "fps" not in line  # equal rates are not named
    # the same shards at the training rates are read
    r = CliRunner().invoke(eval_main, ["--checkpoint", audio_checkpoint, "--shards", str(speech_shards),
                                       "--out", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output


def test_training_and_evaluation_do_not_import_the_pipeline():
    """The wall: the detector reads the shards format; only raw-media inference enters the
    pipeline (pipeline.prepare, imported when called)."""
    import subprocess
    import sys

    code = ("import sys, detector.train, detector.evaluate, detector.inference, detector.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipeline'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
