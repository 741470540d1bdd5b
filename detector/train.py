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
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from . import metrics as M
from .config import ExperimentConfig
from .data import ShardDataset

MODALITIES = {"av": ("video", "audio"), "av-noatt": ("video", "audio"), "video": ("video",), "audio": ("audio",)}
MAIN_OUTPUT = {"av": "sync", "av-noatt": "sync", "video": "video", "audio": "audio"}
LABEL_OF = {"video": "video_fake", "audio": "audio_fake", "sync": "sequence_fake"}


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


def _schedule(cfg, total_steps: int):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def datasets(shards, cfg: ExperimentConfig) -> tuple[ShardDataset, ShardDataset | None]:
    from .augment import Augment

    mods = MODALITIES[cfg.model.name]
    pairs = tuple(cfg.train.pairs) or None
    train_ds = ShardDataset(shards, split=cfg.train.train_split, modalities=mods, require=mods, pairs=pairs)
    train_ds.transform = Augment.for_model(cfg, train=True)
    val_ds = None
    if cfg.train.val_split:
        val_ds = ShardDataset(shards, split=cfg.train.val_split, modalities=mods, require=mods, pairs=pairs)
        val_ds.transform = Augment.for_model(cfg, train=False)
        if len(val_ds) == 0:
            val_ds = None
    if len(train_ds) == 0:
        raise ValueError(f"{shards}: no '{cfg.train.train_split}' samples with {' and '.join(mods)} for "
                         f"model {cfg.model.name!r}")
    return train_ds, val_ds


@torch.inference_mode()
def evaluate(model, loader, device, amp: bool = False) -> dict:
    """Scores of every output on a loader, and accuracy/AUC per output (both inference modes
    for av models: ``sync`` and ``two_stream``)."""
    model.eval()
    scores: dict[str, list] = {}
    labels: dict[str, list] = {}
    for batch in loader:
        batch = _to(batch, device)
        with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
            out = model(batch)
        for head, label in LABEL_OF.items():
            if f"p_{head}" in out:
                scores.setdefault(head, []).append(out[f"p_{head}"].float().cpu())
                labels.setdefault(head, []).append(batch[label].float().cpu())
        if "p_video" in out and "p_audio" in out:
            scores.setdefault("two_stream", []).append(torch.maximum(out["p_video"], out["p_audio"]).float().cpu())
            labels.setdefault("two_stream", []).append(batch["sequence_fake"].float().cpu())
    result = {}
    for head in scores:
        s, y = torch.cat(scores[head]).numpy(), torch.cat(labels[head]).numpy()
        result[head] = {"acc": M.accuracy(s, y), "auc": M.auc(s, y), "n": len(y)}
    return result


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


def _better(score: float, best: float | None) -> bool:
    """A first score is the best so far; a finite one beats any earlier NaN (e.g. the AUC of a
    one-class validation set) and any lower one."""
    if best is None:
        return True
    return bool(np.isfinite(score) and (not np.isfinite(best) or score > best))


def _validate(net, loader, device, amp: bool, pos: dict, epoch: int, main: str, select_on: str, log) -> bool:
    """Validate after ``epoch`` and log it; updates ``pos`` (best score, its epoch, validations
    since it) and returns whether this model is the best so far."""
    figures = evaluate(net, loader, device, amp)
    log.write(phase="val", epoch=epoch, step=pos["step"], **_flat(figures))
    score = float(figures.get(main, {}).get(select_on, float("nan")))
    if _better(score, pos["best"]):
        pos["best"], pos["best_epoch"], pos["stale"] = score, epoch, 0
        return True
    pos["stale"] += 1
    return False


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
    from tqdm.auto import tqdm

    from .builder import build_model
    from .losses import compute_loss

    rank, world, local_rank = _distributed()
    dev = _device(device, local_rank)
    out_dir = Path(out_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    state = None
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"Nothing to resume: {last_path} does not exist")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        cfg = _config_from(state["config"])
    elif last_path.exists():
        raise FileExistsError(f"{out_dir} already holds a run; pass --resume to continue it or choose another --out")
    cfg = copy.deepcopy(cfg) if cfg is not None else ExperimentConfig()  # overrides leave the caller's alone
    for key, value in (overrides or {}).items():
        if not hasattr(cfg.train, key):
            raise ValueError(f"Unknown train setting {key!r}")
        setattr(cfg.train, key, value)
    tc = cfg.train
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    _seed(tc.seed + rank)
    train_ds, val_ds = datasets(shards, cfg)
    sampler = EpochSampler(len(train_ds), tc.seed, rank, world)
    loader = DataLoader(_Transformed(train_ds), batch_size=tc.batch_size, sampler=sampler,
                        num_workers=tc.num_workers, drop_last=False, persistent_workers=False,
                        pin_memory=dev.type == "cuda")
    val_loader = DataLoader(_Transformed(val_ds), batch_size=tc.batch_size, num_workers=tc.num_workers) \
        if val_ds is not None and rank == 0 else None
    model = build_model(cfg.model).to(dev)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    net = model.module if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = max(1, math.ceil(math.ceil(len(train_ds) / world) / tc.batch_size))
    total = tc.max_steps or tc.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(tc, total))
    amp = tc.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    # stale: validations since the best one (early stopping); kept in last.pt, so that --resume continues it
    pos = {"epoch": 0, "batch": 0, "step": 0, "best": None, "best_epoch": -1, "stale": 0}
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without mixed precision (e.g. a CPU run)
            scaler.load_state_dict(state["scaler"])
        pos.update(state["position"])
    log = CsvLog(out_dir / "log.csv", rank == 0)
    main = MAIN_OUTPUT[cfg.model.name]

    def save(path: Path) -> None:
        if rank == 0:
            tmp = path.with_name(path.name + ".tmp")
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict(), "rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state_all() if dev.type == "cuda" else [], "position": pos,
                        "config": cfg.to_dict(), "avdd_version": _version()}, tmp)
            os.replace(tmp, path)

    reason = _finished(pos, tc)
    while reason is None:
        epoch = pos["epoch"]
        sampler.set_epoch(epoch, pos["batch"] * tc.batch_size)
        for ds in (train_ds, val_ds):
            if ds is not None:
                ds.transform.set_epoch(epoch)
        model.train()
        batches = iter(loader)  # creating it draws from the global RNG: restore a resumed run's after
        if state is not None:
            torch.set_rng_state(state["rng"])
            if dev.type == "cuda" and state.get("cuda_rng"):
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            state = None
        bar = tqdm(batches, total=len(loader), desc=f"epoch {epoch}", disable=not progress or rank != 0,
                   dynamic_ncols=True)
        for batch in bar:
            batch = _to(batch, dev)
            with torch.autocast(dev.type, enabled=amp):
                out = model(batch)
                loss, parts = compute_loss(out, batch, cfg.model.loss_weights)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc.clip_grad:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
            scaler.step(opt)
            scaler.update()
            sched.step()
            pos["step"] += 1
            pos["batch"] += 1
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if pos["step"] % tc.log_every == 0:
                log.write(phase="train", epoch=epoch, step=pos["step"], lr=sched.get_last_lr()[0],
                          loss=loss.item(), **{f"loss_{k}": float(v) for k, v in parts.items()})
            if tc.max_steps and pos["step"] >= tc.max_steps:
                break
        if not (tc.max_steps and pos["step"] >= tc.max_steps):  # the epoch is complete: validate
            pos["epoch"], pos["batch"] = epoch + 1, 0
            if val_loader is not None and _validate(net, val_loader, dev, amp, pos, epoch, main, tc.select_on, log):
                save(best_path)
        if world > 1:  # rank 0 validates: every rank takes its best score and count
            import torch.distributed as dist

            shared = [pos]
            dist.broadcast_object_list(shared, src=0)
            pos = shared[0]
        save(last_path)
        reason = _finished(pos, tc)
    if val_ds is None:  # no validation: the best checkpoint is the last
        save(best_path)
    has_best = val_ds is None or pos["best_epoch"] >= 0
    best = pos["best"] if pos["best"] is not None and np.isfinite(pos["best"]) else None
    return {"out": str(out_dir), "best": best, "best_epoch": pos["best_epoch"], "steps": pos["step"],
            "epochs": pos["epoch"], "stopped": reason, "last": str(last_path),
            "best_checkpoint": str(best_path) if has_best else None}


class _Transformed(torch.utils.data.Dataset):
    """A ShardDataset with its ``transform`` applied (kept apart so that the dataset stays
    picklable for worker processes)."""

    def __init__(self, ds: ShardDataset | None):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        sample = self.ds[i]
        return self.ds.transform(sample) if getattr(self.ds, "transform", None) else sample


def _config_from(d: dict) -> ExperimentConfig:
    from .config import _build

    return _build(ExperimentConfig, d, "checkpoint config")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("avdd")
    except PackageNotFoundError:
        return "0.0.0+source"


def load_checkpoint(path, device: str = "cpu"):
    """(model in eval mode, ExperimentConfig) from a checkpoint written by :func:`train`."""
    from .builder import build_model

    state = torch.load(path, map_location="cpu", weights_only=True)
    if "config" not in state or "model" not in state:
        raise ValueError(f"{path} is not an avdd detector checkpoint (no config/model)")
    cfg = _config_from(state["config"])
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg
