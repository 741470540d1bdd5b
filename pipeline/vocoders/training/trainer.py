"""The training loop and its run directory (``avdd-data train-vocoder --out RUN_DIR``)::

    config.yaml               resolved run config (vocoder, preset, model, mel, train), avdd version
    stats.npy                 z-norm statistics [mean, scale] (Parallel WaveGAN)
    log.csv                   every loss of every step (and seconds since the start)
    val.csv                   MCD / LSD / envelope correlation of the held-out utterances per validation
    val/step-NNNNNNN/         converted held-out wavs and spectrogram.png (real vs converted)
    checkpoints/step-NNNNNNN.pt   vocoder checkpoints (``convert --checkpoint`` loads them)
    best.pt                   the checkpoint with the lowest validation MCD (``--checkpoint RUN_DIR``)
    state.pt                  resume state: networks, optimizers, schedulers, step, data and torch RNG

Validation runs at step 0 (the untrained model), every ``validate_every`` steps and at the end;
``state.pt`` is written with each validation and every ``checkpoint_every`` steps. ``resume``
restores it and drops log rows after its step, so the resumed run continues the same curve.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import RunConfig, resolve
from .data import SegmentSampler, Utterance, load_files, load_store, source_files, split, total_seconds
from .validate import validate


@dataclass
class Source:
    audio_dir: str | None = None
    manifest: str | None = None
    store: str | None = None

    def __post_init__(self):
        given = [k for k, v in dataclasses.asdict(self).items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"Give exactly one of --store, --audio-dir, --manifest (got {given or 'none'})")

    def load(self, sample_rate: int) -> list[Utterance]:
        if self.store is not None:
            return load_store(self.store, sample_rate)
        return load_files(source_files(self.audio_dir, self.manifest), sample_rate)


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device available")
    return device


def build_vocoder(run: RunConfig, device: str, init=None, trust_pickle: bool = False):
    """The vocoder to train: from ``init`` (any supported checkpoint) or the run's model config."""
    from .. import get_vocoder_class
    from ..mel import MelSpec

    cls = get_vocoder_class(run.vocoder)
    if init is not None:
        voc = cls.from_checkpoint(init, device=device, trust_pickle=trust_pickle)
        voc.trained = None
        return voc
    mel = MelSpec(**run.mel) if run.mel else None
    return cls(cls.config_class(**run.model), mel, device=device)


class RunLog:
    """``log.csv`` with a header that grows when a loss first appears (e.g. at ``disc_start``)."""

    def __init__(self, path: Path):
        self.path, self.columns, self.rows = path, ["step", "seconds"], []
        if path.is_file():
            with open(path) as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or self.columns)
                self.rows = list(reader)

    def truncate(self, step: int) -> None:
        self.rows = [r for r in self.rows if int(r["step"]) <= step]
        self._rewrite()

    def append(self, row: dict) -> None:
        row = {k: (f"{v:.7g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.rows.append(row)
        if set(row) - set(self.columns):
            self.columns += [k for k in row if k not in self.columns]
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(self.rows)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_config(out: Path, run: RunConfig) -> None:
    import yaml

    from ... import __version__

    data = {**run.to_dict(), "avdd_version": __version__}
    (out / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _read_config(out: Path) -> RunConfig:
    import yaml

    path = out / "config.yaml"
    if not path.is_file() or not (out / "state.pt").is_file():
        raise FileNotFoundError(f"--resume: {out} is not a run directory with config.yaml and state.pt")
    data = yaml.safe_load(path.read_text())
    data.pop("avdd_version", None)
    return RunConfig.from_dict(data)


class Trainer:
    """One run: ``Trainer(...).run()``. ``stop_after``: stop after that many steps of this call
    without writing anything more (tests use it to interrupt a run at a chosen step)."""

    def __init__(self, vocoder: str, out, source: Source, preset: str = "tiny", config_file=None,
                 max_steps: int | None = None, batch_size: int | None = None, seed: int | None = None,
                 resume: bool = False, init=None, device: str = "auto", trust_pickle: bool = False,
                 progress: bool = True, stop_after: int | None = None):
        from . import get_objective

        self.out = Path(out)
        self.objective_cls = get_objective(vocoder)
        if resume:
            self.run_cfg = _read_config(self.out)
            if max_steps is not None:
                self.run_cfg.train.max_steps = max_steps
        else:
            if (self.out / "state.pt").exists():
                raise FileExistsError(f"{self.out} already holds a run: pass --resume to continue it, or another --out")
            self.run_cfg = resolve(vocoder, preset, self.objective_cls, config_file, max_steps=max_steps,
                                   batch_size=batch_size, seed=seed)
        self.resume, self.progress, self.stop_after = resume, progress, stop_after
        self.source, self.device = source, pick_device(device)
        self.init, self.trust_pickle = (None if resume else init), trust_pickle

    def setup(self) -> None:
        cfg = self.run_cfg.train
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # the initial weights
        voc = build_vocoder(self.run_cfg, self.device, self.init, self.trust_pickle)
        utts = [Utterance(u.name, self.objective_cls.normalize_audio(voc, u.audio))
                for u in self.source.load(voc.sample_rate)]
        train_names, val_names = split([u.name for u in utts], cfg.n_val, cfg.seed)
        train = [u for u in utts if u.name in set(train_names)]
        self.val = [_val_clip(u, voc.sample_rate, cfg) for u in utts if u.name in set(val_names)]
        voc = self.objective_cls.prepare(voc, [u.audio for u in train])
        self.run_cfg.model = dataclasses.asdict(voc.config)
        self.run_cfg.mel = dataclasses.asdict(voc.mel)
        self.voc = voc
        self.objective = self.objective_cls(voc, cfg)
        self.sampler = SegmentSampler(train, self.objective.segment_length(cfg.segment_samples), cfg.seed,
                                      cfg.silence_db)
        self.data_info = {"train": train_names, "val": val_names,
                          "train_seconds": round(total_seconds(train, voc.sample_rate), 2)}
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "checkpoints").mkdir(exist_ok=True)
        _write_config(self.out, self.run_cfg)
        if getattr(voc.config, "stats_mean", None) is not None:
            np.save(self.out / "stats.npy", np.array([voc.config.stats_mean, voc.config.stats_scale]))
        self.log, self.val_log = RunLog(self.out / "log.csv"), RunLog(self.out / "val.csv")
        self.step, self.best, self.elapsed = 0, None, 0.0
        torch.manual_seed(cfg.seed)  # the training noise (restored from the state on resume)
        if self.resume:
            self._load_state()
        else:
            self.log.truncate(-1)
            self.val_log.truncate(-1)

    def _load_state(self) -> None:
        state = torch.load(self.out / "state.pt", map_location="cpu", weights_only=True)
        self.objective.load_state_dict(state["objective"])
        self.sampler.load_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best, self.elapsed = int(state["step"]), state["best"], float(state["elapsed"])
        self.log.truncate(self.step)
        self.val_log.truncate(self.step)

    def _save_state(self) -> None:
        _atomic_save({"objective": self.objective.state_dict(), "sampler": self.sampler.state(),
                      "torch_rng": torch.get_rng_state(), "step": self.step, "best": self.best,
                      "elapsed": self.elapsed}, self.out / "state.pt")

    def _validate(self) -> dict:
        t0 = time.perf_counter()
        name = f"step-{self.step:07d}"
        q = validate(self.voc, self.val, self.run_cfg.train.val_sample_rate, self.out / "val" / name)
        ckpt = self.out / "checkpoints" / f"{name}.pt"
        self.voc.save(ckpt, run={"run": str(self.out.resolve()), "step": self.step, "vocoder": self.run_cfg.vocoder})
        if self.best is None or q["mcd"] < self.best["mcd"]:
            self.best = {"step": self.step, **q}
            shutil.copyfile(ckpt, self.out / "best.pt")
        self.val_log.append({"step": self.step, "seconds": round(self.elapsed, 2), **q,
                             "val_seconds": round(time.perf_counter() - t0, 2)})
        return q

    def run(self) -> dict:
        self.setup()
        cfg = self.run_cfg.train
        first = None
        if self.step == 0 and not self.resume:
            first = self._validate()
            self._save_state()
        bar = _progress(self.progress, self.step, cfg.max_steps, self.run_cfg.vocoder)
        t0, start_elapsed, done_here = time.perf_counter(), self.elapsed, 0
        while self.step < cfg.max_steps:
            if self.stop_after is not None and done_here >= self.stop_after:
                bar.close()
                return {"stopped_at": self.step}
            losses = self.objective.step(self.sampler.batch(cfg.batch_size), self.step)
            self.step += 1
            done_here += 1
            self.elapsed = start_elapsed + time.perf_counter() - t0
            self.log.append({"step": self.step, "seconds": round(self.elapsed, 3), **losses})
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if k.startswith("loss") or k == "nll"})
            if self.step % cfg.validate_every == 0 or self.step == cfg.max_steps:
                bar.set_postfix_str(f"validating: {self._validate()}")
                self._save_state()
            elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self._save_state()
        bar.close()
        return {"steps": self.step, "seconds": round(self.elapsed, 1), "untrained": first, "best": self.best,
                "run": str(self.out), **self.data_info}


def _val_clip(u: Utterance, sample_rate: int, cfg) -> Utterance:
    """The first ``val_seconds`` of a held-out utterance, at the validation rate."""
    import torchaudio.functional as AF

    x = torch.as_tensor(u.audio)
    if sample_rate != cfg.val_sample_rate:
        x = AF.resample(x, sample_rate, cfg.val_sample_rate)
    return Utterance(u.name, x[: int(cfg.val_seconds * cfg.val_sample_rate)].numpy())


def _progress(enabled: bool, initial: int, total: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc=f"train {name}", disable=not enabled,
                dynamic_ncols=True)


def train(vocoder: str, out, **kw) -> dict:
    """Library entry point of ``avdd-data train-vocoder`` (see :class:`Trainer`)."""
    source = Source(kw.pop("audio_dir", None), kw.pop("manifest", None), kw.pop("store", None))
    return Trainer(vocoder, out, source, **kw).run()
