"""Training a detector on shards: AdamW with warm-up and cosine decay, mixed precision on GPU,
DDP under torchrun, fixed seeds, validation every epoch, best-checkpoint selection, early
stopping, a CSV log, and exact resumption.

A run directory holds ``config.json`` (the resolved experiment), ``log.csv``, ``last.pt`` (all
state needed to continue: model, optimizer, scheduler, scaler, RNG, epoch and batch position,
best score and the validations since it) and ``best.pt`` (the model of the best validation so far;
without a validation set, the last). Checkpoints hold tensors, numbers and plain dicts only: they
load with ``torch.load(weights_only=True)``.

Under torchrun (DDP) rank 0 validates and writes the run; every rank takes its decisions (best
score, early-stopping count) from rank 0, and only rank 0 reports (:func:`is_main_process`).

Data order: the sample order of epoch ``e`` is a permutation seeded by (seed, e), and every
augmentation by (seed, e, sample index), so a resumed run sees exactly the batches it would have
seen, from the batch it stopped at.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from . import checkpoint as ckpt
from .builder import build_model, model_class
from .config import ExperimentConfig
from .data import ShardDataset, shard_info
from .scoring import score, to_device, validation_figures



class EpochSampler(Sampler):
    """The permutation of epoch ``epoch`` (seeded by (seed, epoch)), from position ``start``;
    with ``world`` > 1 each rank takes every ``world``-th index (padded to equal length)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        per_rank = math.ceil(self.n / self.world)
        perm += perm[: per_rank * self.world - self.n]
        return perm[self.rank :: self.world]

    def __iter__(self):
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return max(0, math.ceil(self.n / self.world) - self.start)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0: the one process that writes and reports a run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(requested)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    return dev


def _seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def warmup_steps(cfg, total_steps: int) -> int:
    """The run's warm-up: ``warmup_steps``, but at most ``warmup_fraction`` of its steps (a
    short run still reaches its peak rate)."""
    return max(1, min(cfg.warmup_steps, int(math.ceil(cfg.warmup_fraction * total_steps))))


def _schedule(cfg, total_steps: int):
    warm = warmup_steps(cfg, total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def carve_validation(ds: ShardDataset, fraction: float, seed: int) -> np.ndarray:
    """A mask of the samples of ``fraction`` of ``ds``'s identities (at least one, never all),
    drawn with ``seed``; by source file (group) where the samples have fewer than two
    identities. Every sample of a chosen identity is in it (a real clip and its conversions
    stay together). All false when there are fewer than two identities or files."""
    for key in ("identity", "group"):
        ids = np.array(ds.strings(key).tolist(), dtype=object)
        names = sorted(set(ids.tolist()) - {""})
        if len(names) >= 2:
            break
    else:
        return np.zeros(len(ds), bool)
    rng = np.random.default_rng(seed)
    n = min(len(names) - 1, max(1, int(round(fraction * len(names)))))
    chosen = set(rng.choice(names, size=n, replace=False).tolist())
    return np.array([i in chosen for i in ids.tolist()], bool)


def _without_vocoders(ds: ShardDataset, vocoders, check: bool = False) -> ShardDataset:
    """``ds`` without the samples converted by ``vocoders`` (with ``check``, a name none of its
    samples has is an error)."""
    if not vocoders or len(ds) == 0:
        return ds
    found = np.array(ds.strings("vocoder").tolist(), dtype=object)
    unknown = sorted(set(vocoders) - set(found.tolist()))
    if check and unknown:
        raise ValueError(f"exclude_vocoders: {unknown} not among the vocoders of {ds.path} "
                         f"({sorted(set(found.tolist()) - {''})})")
    return ds.subset(np.array([v not in vocoders for v in found.tolist()], bool))


def datasets(shards, cfg: ExperimentConfig, notes: list | None = None) -> tuple[ShardDataset, ShardDataset | None]:
    """The training set (training augmentations) and the validation set (eval transform; None
    when there is none) of ``cfg`` on ``shards``. Shards without samples of the validation
    split get one carved from the training identities (:func:`carve_validation`), said on
    stderr and appended to ``notes`` when it is given (the main process)."""
    from .augment import Augment

    mods = model_class(cfg.model.name).modalities
    pairs = tuple(cfg.train.pairs) or None
    train_ds = ShardDataset(shards, split=cfg.train.train_split, modalities=mods, require=mods, pairs=pairs,
                            transform=Augment.for_model(cfg, train=True))
    tc = cfg.train
    train_ds = _without_vocoders(train_ds, tc.exclude_vocoders, check=True)
    if len(train_ds) == 0:
        raise ValueError(f"{shards}: no '{cfg.train.train_split}' samples with {' and '.join(mods)} for "
                         f"model {cfg.model.name!r}")
    val_ds = None
    if tc.val_split:
        if tc.val_split in train_ds.info["splits"]:
            val_ds = _without_vocoders(ShardDataset(shards, split=tc.val_split, modalities=mods, require=mods,
                                                    pairs=pairs, transform=Augment.for_model(cfg, train=False)),
                                       tc.exclude_vocoders)
        if val_ds is None or len(val_ds) == 0:
            mask = carve_validation(train_ds, tc.val_fraction, tc.seed)
            if mask.any():
                val_ds = train_ds.subset(mask, Augment.for_model(cfg, train=False))
                train_ds = train_ds.subset(~mask)
                note = (f"WARNING: {shards} has no '{tc.val_split}' samples for model {cfg.model.name!r}: "
                        f"carved a validation set of {len(val_ds)} samples ({tc.val_fraction:.0%} of the "
                        f"'{tc.train_split}' identities, seed {tc.seed}) out of training; build the shards "
                        f"with a '{tc.val_split}' split to choose it yourself")
            else:
                val_ds = None
                note = (f"WARNING: {shards} has no '{tc.val_split}' samples and fewer than two training identities "
                        "to carve one from: no validation, no checkpoint selection (best.pt is the last model)")
            if notes is not None:  # the main process says it
                print(note, file=sys.stderr)
                notes.append(note)
    return train_ds, val_ds


def validation_modes(model) -> tuple[str, ...]:
    """What validation reports: each output of the model, and two_stream where it has both heads."""
    outputs = type(model).outputs
    return tuple(outputs) + (("two_stream",) if {"video", "audio"} <= set(outputs) else ())


def evaluate(model, ds: ShardDataset, device, amp: bool = False, batch_size: int = 16, workers: int = 0) -> dict:
    """Accuracy/AUC/count per output of ``model`` on ``ds`` (both inference modes for av
    models: ``sync`` and ``two_stream``), from the one scoring loop (:func:`detector.scoring.score`)."""
    raw = score(model, ds, device, batch_size, workers=workers, amp=amp)
    return validation_figures(raw, validation_modes(model))


class CsvLog:
    FIELDS = ["time", "phase", "epoch", "step", "lr", "loss", "loss_video", "loss_audio", "loss_sync",
              "acc_video", "auc_video", "acc_audio", "auc_audio", "acc_sync", "auc_sync",
              "acc_two_stream", "auc_two_stream"]

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and not path.exists():
            with open(path, "w", newline="") as f:
                csv.DictWriter(f, self.FIELDS).writeheader()

    def write(self, **row) -> None:
        if self.enabled:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.FIELDS, extrasaction="ignore").writerow({"time": round(time.time(), 1), **row})


def _flat(metrics: dict) -> dict:
    return {f"{k}_{head}": v[k] for head, v in metrics.items() for k in ("acc", "auc")}


def _finished(pos: dict, tc) -> str | None:
    """Why a run at position ``pos`` is done ("max_steps", "early_stopping", "epochs"), or None."""
    if tc.max_steps and pos["step"] >= tc.max_steps:
        return "max_steps"
    if tc.early_stopping and pos["stale"] >= tc.early_stopping:
        return "early_stopping"
    if pos["epoch"] >= tc.epochs:
        return "epochs"
    return None


def _better(value: float, best: float | None) -> bool:
    """A first score is the best so far; a finite one beats any earlier NaN (e.g. the AUC of a
    one-class validation set) and any lower one."""
    if best is None:
        return True
    return bool(np.isfinite(value) and (not np.isfinite(best) or value > best))


def _resolve_run(out_dir: Path, cfg: ExperimentConfig | None, resume: bool,
                 overrides: dict | None) -> tuple[ExperimentConfig, dict | None]:
    """The run's config (a resumed run's from its ``last.pt``, then ``overrides``) and the state
    to resume from (None for a new run)."""
    last_path = out_dir / "last.pt"
    state = None
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"Nothing to resume: {last_path} does not exist")
        state = ckpt.load_state(last_path)
        cfg = ckpt.config_from(state["config"])
    elif last_path.exists():
        raise FileExistsError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    cfg = copy.deepcopy(cfg) if cfg is not None else ExperimentConfig()  # overrides leave the caller's alone
    for key, value in (overrides or {}).items():
        if not hasattr(cfg.train, key):
            raise ValueError(f"Unknown train setting {key!r}")
        setattr(cfg.train, key, value)
    return cfg, state


class _Run:
    """One training run in ``out_dir``: the model (DDP-wrapped under torchrun), optimizer,
    schedule, scaler, data, position and log; :meth:`epoch` trains one (partial) epoch,
    :meth:`end_epoch` validates and checkpoints."""

    def __init__(self, shards, out_dir: Path, cfg: ExperimentConfig, dev: torch.device, rank: int, world: int,
                 progress: bool):
        tc = self.tc = cfg.train
        self.cfg, self.dev, self.rank, self.world, self.progress = cfg, dev, rank, world, progress
        self.out_dir = out_dir
        self.notes: list[str] = []  # what the user must know of this run's data (a carved validation set)
        self.train_ds, self.val_ds = datasets(shards, cfg, self.notes if rank == 0 else None)
        self.data = ckpt.data_rates(shard_info(shards))
        self.sampler = EpochSampler(len(self.train_ds), tc.seed, rank, world)
        self.loader = DataLoader(self.train_ds, batch_size=tc.batch_size, sampler=self.sampler,
                                 num_workers=tc.num_workers, drop_last=False, persistent_workers=False,
                                 pin_memory=dev.type == "cuda")
        self.model = build_model(cfg.model).to(dev)
        if world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        self.net = self.model.module if world > 1 else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        steps_per_epoch = max(1, math.ceil(math.ceil(len(self.train_ds) / world) / tc.batch_size))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _schedule(tc, tc.max_steps or tc.epochs * steps_per_epoch))
        self.amp = tc.amp and dev.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        # stale: validations since the best one (early stopping); kept in last.pt, so that --resume continues it
        self.pos = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_epoch": -1, "stale": 0}
        self.log = CsvLog(out_dir / "log.csv", rank == 0)
        self.rng_state = None  # a resumed run's RNG state, restored once its first loader iterator exists

    def restore(self, state: dict) -> None:
        """Continue from a ``last.pt`` state: weights, optimizer, schedule, scaler, position, RNG."""
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without mixed precision (e.g. a CPU run)
            self.scaler.load_state_dict(state["scaler"])
        self.pos.update(state["position"])
        self.rng_state = (state["rng"], state.get("cuda_rng"))

    def save(self, path: Path) -> None:
        if self.rank == 0:
            ckpt.save(path, {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                             "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                             "rng": torch.get_rng_state(),
                             "cuda_rng": torch.cuda.get_rng_state_all() if self.dev.type == "cuda" else [],
                             "position": self.pos, "config": self.cfg.to_dict(), "data": self.data})

    def _restore_rng(self) -> None:
        if self.rng_state is not None:
            rng, cuda_rng = self.rng_state
            torch.set_rng_state(rng)
            if self.dev.type == "cuda" and cuda_rng:
                torch.cuda.set_rng_state_all(cuda_rng)
            self.rng_state = None

    def epoch(self) -> None:
        """Train from the current position to the end of its epoch (or to ``max_steps``)."""
        from tqdm.auto import tqdm

        from .losses import compute_loss

        tc, pos, epoch = self.tc, self.pos, self.pos["epoch"]
        self.sampler.set_epoch(epoch, pos["batch"] * tc.batch_size)
        for ds in (self.train_ds, self.val_ds):
            if ds is not None:
                ds.transform.set_epoch(epoch)
        self.model.train()
        batches = iter(self.loader)  # creating it draws from the global RNG: restore a resumed run's after
        self._restore_rng()
        bar = tqdm(batches, total=len(self.loader), desc=f"epoch {epoch}", dynamic_ncols=True,
                   disable=not self.progress or self.rank != 0)
        for batch in bar:
            batch = to_device(batch, self.dev)
            with torch.autocast(self.dev.type, enabled=self.amp):
                out = self.model(batch)
                loss, parts = compute_loss(out, batch, self.cfg.model.loss_weights)
            self._step(loss)
            pos["step"] += 1
            pos["batch"] += 1
            lr = self.sched.get_last_lr()[0]
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
            if pos["step"] % tc.log_every == 0:
                self.log.write(phase="train", epoch=epoch, step=pos["step"], lr=lr, loss=loss.item(),
                               **{f"loss_{k}": float(v) for k, v in parts.items()})
            if tc.max_steps and pos["step"] >= tc.max_steps:
                break

    def _step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.tc.clip_grad:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.clip_grad)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()

    def validate(self, epoch: int) -> bool:
        """Validate after ``epoch`` and log it; updates the position (best score, its epoch,
        validations since it) and returns whether this model is the best so far."""
        tc, pos = self.tc, self.pos
        figures = evaluate(self.net, self.val_ds, self.dev, self.amp, tc.batch_size, tc.num_workers)
        self.log.write(phase="val", epoch=epoch, step=pos["step"], **_flat(figures))
        value = float(figures.get(type(self.net).main_output, {}).get(tc.select_on, float("nan")))
        if _better(value, pos["best"]):
            pos["best"], pos["best_epoch"], pos["stale"] = value, epoch, 0
            return True
        pos["stale"] += 1
        return False

    def end_epoch(self, epoch: int) -> None:
        """After a complete epoch: validate (rank 0) and keep the best model; share rank 0's
        decisions with every rank; write ``last.pt``."""
        tc = self.tc
        if not (tc.max_steps and self.pos["step"] >= tc.max_steps):  # the epoch is complete: validate
            self.pos["epoch"], self.pos["batch"] = epoch + 1, 0
            if self.val_ds is not None and self.rank == 0 and self.validate(epoch):
                self.save(self.out_dir / "best.pt")
        if self.world > 1:  # rank 0 validates: every rank takes its best score and count
            import torch.distributed as dist

            shared = [self.pos]
            dist.broadcast_object_list(shared, src=0)
            self.pos = shared[0]
        self.save(self.out_dir / "last.pt")


def train(shards, out_dir, cfg: ExperimentConfig | None = None, resume: bool = False, device: str = "auto",
          progress: bool = True, overrides: dict | None = None) -> dict:
    """Train (or with ``resume``, continue) a run in ``out_dir``.

    A resumed run takes its config from its checkpoint; ``overrides`` (train fields, e.g.
    ``{"max_steps": 20}``) apply on top, in both cases. Early stopping counts the validations
    since the best one across resumptions (the count is kept in ``last.pt``): a run that stopped
    early stays stopped when resumed, unless ``early_stopping`` is overridden (larger, or 0).

    Returns a dict: ``best`` (the best validation score of the main output, None before any
    validation or when it was NaN), ``best_epoch`` (-1: none), ``steps``, ``epochs`` (completed),
    ``stopped`` ("epochs", "max_steps" or "early_stopping"), ``out``, ``last`` (path of
    ``last.pt``) and ``best_checkpoint``: the path of ``best.pt``, or None when the run has a
    validation set but stopped (``max_steps``) before its first validation: there is no best
    model yet, and ``last`` is the checkpoint to use or resume.
    """
    rank, world, local_rank = _distributed()
    dev = _device(device, local_rank)
    out_dir = Path(out_dir)
    cfg, state = _resolve_run(out_dir, cfg, resume, overrides)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    _seed(cfg.train.seed + rank)
    if getattr(model_class(cfg.model.name), "fitted", False):
        return _fit(shards, out_dir, cfg, dev, state)
    run = _Run(shards, out_dir, cfg, dev, rank, world, progress)
    if state is not None:
        run.restore(state)
    reason = _finished(run.pos, cfg.train)
    while reason is None:
        epoch = run.pos["epoch"]
        run.epoch()
        run.end_epoch(epoch)
        reason = _finished(run.pos, cfg.train)
    if run.val_ds is None:  # no validation: the best checkpoint is the last
        run.save(out_dir / "best.pt")
    pos = run.pos
    return _result(out_dir, pos, reason, run.notes, has_best=run.val_ds is None or pos["best_epoch"] >= 0)


def _result(out_dir: Path, pos: dict, stopped: str, notes: list, has_best: bool) -> dict:
    """What :func:`train` returns, from a run's position."""
    best = pos["best"] if pos["best"] is not None and np.isfinite(pos["best"]) else None
    return {"out": str(out_dir), "best": best, "best_epoch": pos["best_epoch"], "steps": pos["step"],
            "epochs": pos["epoch"], "stopped": stopped, "last": str(out_dir / "last.pt"), "notes": notes,
            "best_checkpoint": str(out_dir / "best.pt") if has_best else None}



def _fit(shards, out_dir: Path, cfg: ExperimentConfig, dev: torch.device, state: dict | None) -> dict:
    """A model fitted in one pass instead of trained by gradients (``fitted = True``, e.g.
    ``lfcc-gmm``): fit on the training set, validate once, write ``last.pt`` and ``best.pt`` (the
    same format as a trained model's; a resumed fitted run is done already)."""
    notes: list[str] = []
    if state is None:
        train_ds, val_ds = datasets(shards, cfg, notes)
        loader = DataLoader(train_ds, batch_size=cfg.train.batch_size, shuffle=False,
                            num_workers=cfg.train.num_workers)
        model = build_model(cfg.model)
        t0 = time.perf_counter()
        report = model.fit(loader, seed=cfg.train.seed)
        log = CsvLog(out_dir / "log.csv", True)
        log.write(phase="fit", epoch=0, step=len(loader), seconds=round(time.perf_counter() - t0, 2),
                  **{f"frames_{k}": v["frames"] for k, v in report.items()})
        pos = {"epoch": 1, "batch": 0, "step": len(loader), "best": None, "best_epoch": -1, "stale": 0}
        if val_ds is not None:
            figures = evaluate(model.to(dev), val_ds, dev, False, cfg.train.batch_size, cfg.train.num_workers)
            log.write(phase="val", epoch=0, step=pos["step"], **_flat(figures))
            value = float(figures.get(type(model).main_output, {}).get(cfg.train.select_on, float("nan")))
            pos["best"], pos["best_epoch"] = value, 0
        state = {"model": model.state_dict(), "position": pos, "config": cfg.to_dict(),
                 "data": ckpt.data_rates(shard_info(shards)), "fit": report}
        for name in ("last.pt", "best.pt"):
            ckpt.save(out_dir / name, state)
    return _result(out_dir, state["position"], "fitted", notes, has_best=True)
