"""Checkpoint files of a training run: writing them atomically, reading them back.

A checkpoint holds tensors, numbers and plain dicts only (it loads with
``torch.load(weights_only=True)``): ``model`` (state dict), ``optimizer``, ``scheduler``,
``scaler``, ``rng``, ``cuda_rng``, ``position`` (epoch, batch, step, best score, validations
since it), ``config`` (the resolved :class:`~detector.config.ExperimentConfig`), ``avdd_version``
and ``data``: the rates of the shards it was trained on (``fps``, ``sample_rate``,
``frames_per_clip``; absent in checkpoints written before it was recorded). A model loaded with
:func:`load_checkpoint` carries them as ``model.data_rates`` so that scoring can refuse shards
whose rates differ (:func:`check_rates`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import ExperimentConfig

RATES = ("fps", "sample_rate", "frames_per_clip")


def version() -> str:
    """The installed avdd version (``0.0.0+source`` when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version as _v

    try:
        return _v("avdd")
    except PackageNotFoundError:
        return "0.0.0+source"


def config_from(d: dict, where: str = "checkpoint config") -> ExperimentConfig:
    """The :class:`ExperimentConfig` saved in a checkpoint (or a run's ``config.json``)."""
    from .config import _build

    return _build(ExperimentConfig, d, where)


def data_rates(info: dict) -> dict:
    """The rates of a shards store (its attributes, :func:`detector.data.shard_info`)."""
    return {k: info.get(k) for k in RATES}


def clip_grid(model) -> dict:
    """``fps`` and ``frames_per_clip`` of the model's training data (for extracting raw files on
    the same clip grid); empty for a model without recorded rates."""
    rates = getattr(model, "data_rates", None) or {}
    return {k: rates[k] for k in ("fps", "frames_per_clip") if rates.get(k) is not None}


def check_rates(model, info: dict, shards) -> None:
    """Refuse shards whose fps, sample rate or clip length differ from the model's training data
    (models without recorded rates, e.g. from older checkpoints, are not checked)."""
    trained = getattr(model, "data_rates", None)
    if not trained:
        return
    found = data_rates(info)
    diff = [k for k in RATES if trained.get(k) is not None and found.get(k) != trained[k]]
    if diff:
        raise ValueError(f"{shards}: " + ", ".join(f"{k} {found.get(k)}" for k in diff)
                         + " differ from the model's training data ("
                         + ", ".join(f"{k} {trained[k]}" for k in diff) + "); rebuild the shards at those rates")


def save(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a partial file never replaces a good one)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**state, "avdd_version": version()}, tmp)
    os.replace(tmp, path)


def load_state(path) -> dict:
    """The raw checkpoint dict (on the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(path, device: str = "cpu"):
    """(model in eval mode, ExperimentConfig) from a checkpoint written by :func:`detector.train.train`."""
    from .builder import build_model

    state = load_state(path)
    if "config" not in state or "model" not in state:
        raise ValueError(f"{path} is not an avdd detector checkpoint (no config/model)")
    cfg = config_from(state["config"])
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.data_rates = state.get("data") or None
    return model.to(device).eval(), cfg
