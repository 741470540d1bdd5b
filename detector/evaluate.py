"""Evaluating a trained detector on shards: every metric the report shows, as one dict.

Scores: ``sync`` (the sync stream's P(sequence fake)) and ``two_stream`` (fake if either modality
head says fake: the larger of P(video fake) and P(audio fake)) for the {2+1}-stream models; the
head's own output for single-modality models (``video``, ``audio``). Each mode is scored against
its label: ``sequence_fake`` for sync and two_stream, ``video_fake`` / ``audio_fake`` for the heads.

The result (``evaluate_shards``) holds: ``modes`` (accuracy, AUC, EER, AP per mode),
``modalities`` (each head against its own label), ``per_category`` and ``per_split`` (per mode),
``curves`` (ROC), ``file_level`` (clip scores averaged per source file), ``shortcuts`` (AUC of
trivial cues alone), and optionally ``robustness`` and ``unseen``.
"""

from __future__ import annotations

import re

import numpy as np

from . import metrics as M
from .augment import Augment, Corrupt
from .builder import model_class
from .checkpoint import check_rates
from .data import ShardDataset
from .scoring import LABEL, mode_scores, score

CORRUPTIONS = ("gaussian_noise", "jpeg", "video_compression", "all")
CUES = ("duration", "leading_silence", "trailing_silence", "loudness", "bandwidth")


def _known(y: np.ndarray) -> np.ndarray:
    return y >= 0  # -1: unknown (inference-only shards)


def _summary(s: np.ndarray, y: np.ndarray, mask=None) -> dict:
    m = _known(y) & np.isfinite(s) & (True if mask is None else mask)
    return M.summary(s[m], y[m])


def per_category(s: np.ndarray, y: np.ndarray, categories: np.ndarray) -> dict:
    """Per category: accuracy on its samples; AUC, EER and AP of its samples against the real ones."""
    out = {}
    real = categories == "real"
    for cat in sorted(set(categories.tolist())):
        m = (categories == cat) & _known(y) & np.isfinite(s)
        row = {"n": int(m.sum()), "acc": M.accuracy(s[m], y[m]) if m.any() else float("nan")}
        if cat != "real" and real.any():
            both = (m | real) & np.isfinite(s)
            row.update({k: v for k, v in M.summary(s[both], y[both]).items() if k in ("auc", "eer", "ap")})
        out[cat] = row
    return out


def file_level(s: np.ndarray, y: np.ndarray, ids: np.ndarray) -> dict:
    """Clip scores averaged per file (``ids``: one key per file version, e.g. the source id and
    the category: a real file and its vocoded copy are two files; label: fake if any clip is)."""
    keep = _known(y) & np.isfinite(s)
    files = sorted(set(ids[keep].tolist()))
    fs = np.array([s[keep & (ids == f)].mean() for f in files])
    fy = np.array([y[keep & (ids == f)].max() for f in files])
    return M.summary(fs, fy)


def _roc(s: np.ndarray, y: np.ndarray, points: int = 200) -> dict:
    m = _known(y) & np.isfinite(s)
    if len(set(y[m].tolist())) < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = M.roc_curve(s[m], y[m])
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).astype(int))
    return {"fpr": fpr[idx].round(5).tolist(), "tpr": tpr[idx].round(5).tolist()}


# ---- shortcut audit --------------------------------------------------------------------------


def audio_cues(wave: np.ndarray, sr: int = 16000) -> dict[str, float]:
    """Trivial properties of one clip: seconds of leading / trailing silence (below -40 dB of the
    clip's loudest 20 ms), loudness (RMS, dBFS) and bandwidth (frequency under which 99% of the
    energy lies, Hz)."""
    frame = sr // 50
    n = len(wave) // frame
    if n == 0 or not np.any(wave):
        return {"leading_silence": len(wave) / sr, "trailing_silence": len(wave) / sr, "loudness": -120.0,
                "bandwidth": 0.0}
    rms = np.sqrt((wave[: n * frame].reshape(n, frame) ** 2).mean(1)) + 1e-12
    loud = 20 * np.log10(rms) > 20 * np.log10(rms.max()) - 40
    first, last = int(np.argmax(loud)), int(np.argmax(loud[::-1]))
    power = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    cum = np.cumsum(power) / power.sum()
    return {"leading_silence": first * frame / sr, "trailing_silence": last * frame / sr,
            "loudness": float(20 * np.log10(np.sqrt((wave.astype(np.float64) ** 2).mean()) + 1e-12)),
            "bandwidth": float(np.searchsorted(cum, 0.99) * sr / 2 / (len(power) - 1))}


def shortcut_audit(ds: ShardDataset, labels: dict[str, np.ndarray]) -> dict:
    """The AUC that each trivial cue reaches alone on these samples, for each label (direction
    free: max(AUC, 1 - AUC)). A detector whose AUC a cue nearly reaches has learned little more."""
    import zarr

    g = zarr.open_group(ds.path, mode="r")
    duration = g["samples/duration"][:][ds.index] if "duration" in g["samples"] else np.full(len(ds), np.nan)
    audio_idx = ds.table["audio"]
    waves = g["audio/wave"]
    cues = {c: np.full(len(ds), np.nan) for c in CUES}
    cues["duration"] = duration.astype(np.float64)
    for i, a in enumerate(audio_idx):
        if a >= 0:
            for k, v in audio_cues(np.asarray(waves[int(a)])).items():
                cues[k][i] = v
    out = {}
    for cue, values in cues.items():
        row = {}
        for name, y in labels.items():
            m = np.isfinite(values) & _known(y)
            a = M.auc(values[m], y[m]) if m.any() else float("nan")
            row[name] = max(a, 1 - a) if np.isfinite(a) else float("nan")
        out[cue] = row
    return out


# ---- the whole evaluation ----------------------------------------------------------------------


def eval_dataset(shards, cfg, split, require: tuple[str, ...] = (), modalities=None) -> ShardDataset:
    """The samples of ``split`` with the model's inputs (default: its modalities) and its eval
    transform."""
    mods = modalities or model_class(cfg.model.name).modalities
    return ShardDataset(shards, split=split, modalities=mods, require=require,
                        transform=Augment.for_model(cfg, train=False))


def evaluate_shards(model, cfg, shards, splits=("test",), modes: tuple[str, ...] | None = None,
                    robustness: bool = False, holdout: str | None = None, seed: int = 0, device="cpu",
                    batch_size: int = 16, workers: int = 0) -> dict:
    """Everything the report shows for ``model`` on the ``splits`` of ``shards``; ``holdout``: the
    category (method or vocoder) the shards hold out, evaluated as unseen."""
    name = cfg.model.name
    cls = model_class(name)
    explicit = bool(modes)
    modes = tuple(modes or cls.modes)
    bad = sorted(set(modes) - set(cls.modes))
    if bad:
        raise ValueError(f"Mode(s) {bad} do not apply to a {name!r} model; it has {', '.join(cls.modes)}")
    mods = cls.modalities
    ds = eval_dataset(shards, cfg, list(splits), require=mods)
    check_rates(model, ds.info, shards)
    heads_only = len(ds) == 0 and len(mods) == 2  # e.g. an av model on an audio-only set: its heads alone
    if heads_only:
        if explicit:
            raise ValueError(f"{shards}: no samples with both video and audio, which mode(s) {list(modes)} need")
        ds = eval_dataset(shards, cfg, list(splits))
    if len(ds) == 0:
        raise ValueError(f"{shards}: no samples with {' or '.join(mods)} in split(s) {list(splits)}")
    raw = score(model, ds, device, batch_size, workers=workers)
    if heads_only:
        modes = tuple(m for m in ("video", "audio") if np.isfinite(raw[f"p_{m}"]).any())
    categories, ids = ds.strings("category"), ds.strings("id")
    split_names = np.array(ds.info["splits"])[ds.table["split"]]
    files = np.array([f"{i}|{c}" for i, c in zip(ids.tolist(), categories.tolist())])
    result = {"model": name, "splits": list(splits), "n_samples": len(ds), "modes": {}, "per_category": {},
              "per_split": {}, "curves": {}, "file_level": {}}
    if heads_only:
        result["note"] = (f"No sample has both video and audio: the {name} model's "
                          f"{' and '.join(modes)} head(s) are evaluated alone, each on the samples it can read.")
    for mode in modes:
        s, y = mode_scores(raw, mode), raw[LABEL[mode]]
        result["modes"][mode] = _summary(s, y)
        result["per_category"][mode] = per_category(s, y, categories)
        result["per_split"][mode] = {sp: _summary(s, y, split_names == sp) for sp in sorted(set(split_names))}
        result["curves"][mode] = _roc(s, y)
        result["file_level"][mode] = file_level(s, y, files)
    result["modalities"] = {m: _summary(raw[f"p_{m}"], raw[f"{m}_fake"]) for m in ("video", "audio")
                            if np.isfinite(raw[f"p_{m}"]).any()}
    audited = {LABEL[m]: raw[LABEL[m]] for m in modes}
    audited.update({f"{m}_fake": raw[f"{m}_fake"] for m in result["modalities"]})
    result["shortcuts"] = shortcut_audit(ds, audited)
    if robustness:
        result["robustness"] = _robustness(model, cfg, ds, raw, modes, seed, device, batch_size, workers)
    if holdout:
        result["unseen"] = _unseen(model, cfg, shards, holdout, raw, ds, modes, device, batch_size, workers)
    return result


def _robustness(model, cfg, ds, raw, modes, seed, device, batch_size, workers) -> dict:
    """Each corruption (seeded, probability 0.5 per clip, as the paper's protocol) on the video:
    the metrics per mode, and the drop in AUC and accuracy from the clean run."""
    if "video" not in model_class(cfg.model.name).modalities:
        return {"skipped": "the model has no video input; the corruptions act on video"}
    out = {"clean": {m: _summary(mode_scores(raw, m), raw[LABEL[m]]) for m in modes}}
    for kind in CORRUPTIONS:
        r = score(model, ds, device, batch_size, corrupt=Corrupt(kind, seed=seed, p=0.5), workers=workers)
        out[kind] = {}
        for m in modes:
            fig = _summary(mode_scores(r, m), r[LABEL[m]])
            clean = out["clean"][m]
            fig["auc_drop"] = clean["auc"] - fig["auc"]
            fig["acc_drop"] = clean["acc"] - fig["acc"]
            out[kind][m] = fig
    return out


def _unseen(model, cfg, shards, name, raw, ds, modes, device, batch_size, workers) -> dict:
    """The held-out category (the shards' ``holdout`` split) against the evaluated real samples."""
    mods = model_class(cfg.model.name).modalities
    held = eval_dataset(shards, cfg, "holdout", require=mods)
    if len(held) == 0:
        return {"skipped": "the shards have no holdout split (build them with --holdout-category NAME)"}
    found = sorted(set(held.strings("category").tolist()))
    if not any(name in re.split("[:+]", c) for c in found):
        raise ValueError(f"{shards}: the holdout split holds {', '.join(found)}, not {name!r}")
    r = score(model, held, device, batch_size, workers=workers)
    real = ds.strings("category") == "real"
    out = {"categories": sorted(set(held.strings("category").tolist())), "n_heldout": len(held),
           "n_real": int(real.sum())}
    for m in modes:
        s = np.concatenate([mode_scores(r, m), mode_scores(raw, m)[real]])
        y = np.concatenate([r[LABEL[m]], raw[LABEL[m]][real]])
        out[m] = _summary(s, y)
    return out
