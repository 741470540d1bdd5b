"""Scoring raw video or audio files: ``avdd-detect``.

Files are prepared as for training by the pipeline, in this process
(:func:`pipeline.prepare.prepare_files`: decode, faces, audio, clips; no face search for a model
without video input), each
clip is scored with what it has (an {2+1}-stream model uses its video head alone on a clip without
audio, its audio head alone on a clip without a face, and all three outputs when it has both),
and the clip probabilities are averaged per file.

Output (``--json``)::

    {"checkpoint": str, "model": "av", "mode": "sync" | "two_stream" | "video" | "audio",
     "threshold": 0.5,
     "files": [{"path": str, "clips": int, "clips_with_face": int, "clips_with_audio": int,
                "p_video_fake": float | null, "p_audio_fake": float | null,
                "p_sequence_fake": float | null, "p_two_stream": float | null,
                "score": float | null, "verdict": "fake" | "real" | null,
                "notes": [str], "error": str | null}]}

``score`` is the probability the chosen mode gives (falling back to the available head when the
mode needs a modality the file lacks; the fallback is named in ``notes``); ``verdict`` is
``score >= threshold``. A file that cannot be read gets ``error`` and no scores.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .checkpoint import check_rates, clip_grid, load_checkpoint
from .data import ShardDataset
from .evaluate import eval_dataset
from .scoring import mode_scores, score


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return round(float(x.mean()), 6) if len(x) else None


def detect(paths, checkpoint, mode: str | None = None, device: str = "cpu", clips_per_file: int = 4,
           threshold: float = 0.5, work_dir=None, workers: int | None = 0, scheduler: str | None = None,
           cluster: str | None = None, cluster_config=None) -> dict:
    """Score every media file in ``paths`` (files or folders) with the model in ``checkpoint``.
    The files are prepared by ``workers`` local processes, on the Dask ``scheduler`` or on a
    batch ``cluster`` (see :class:`pipeline.prepare.PrepareConfig`)."""
    from pipeline.prepare import PrepareConfig, collect_files, prepare_files

    model, cfg = load_checkpoint(checkpoint, device)
    name = cfg.model.name
    allowed = type(model).modes
    mode = mode or allowed[0]
    if mode not in allowed:
        raise ValueError(f"Mode {mode!r} does not apply to a {name!r} model; use {' or '.join(allowed)}")
    files = collect_files(paths)
    if not files:
        raise FileNotFoundError(f"No media files in {', '.join(map(str, paths))}")
    with tempfile.TemporaryDirectory(prefix="avdd-detect-") as tmp:
        prepared = prepare_files(files, work_dir or tmp, PrepareConfig(clips_per_item=clips_per_file,
                                                                       **clip_grid(model),
                                                                       modalities=type(model).modalities,
                                                                       workers=workers, scheduler=scheduler,
                                                                       cluster=cluster,
                                                                       cluster_config=cluster_config))
        shards, ids, errors = prepared.shards, prepared.ids, prepared.failures
        rows = {f: _row(f, errors.get(f)) for f in files}
        if shards is not None:
            ds = eval_dataset(shards, cfg, None)
            check_rates(model, ds.info, shards)
            scores = score(model, ds, device, batch_size=8)
            sample_ids = ds.strings("id")
            for sid, f in ids.items():
                m = sample_ids == sid
                if f in errors or not m.any():
                    rows[f]["error"] = rows[f]["error"] or "no clip could be extracted"
                    continue
                rows[f].update(_file_scores(ds, m, scores, mode, threshold, type(model).modalities))
    return {"checkpoint": str(checkpoint), "model": name, "mode": mode, "threshold": threshold,
            "files": [rows[f] for f in files]}


def _row(path: Path, error: str | None) -> dict:
    return {"path": str(path), "clips": 0, "clips_with_face": 0, "clips_with_audio": 0, "p_video_fake": None,
            "p_audio_fake": None, "p_sequence_fake": None, "p_two_stream": None, "score": None, "verdict": None,
            "notes": [], "error": error}


def _file_scores(ds: ShardDataset, m: np.ndarray, scores: dict, mode: str, threshold: float,
                 modalities: tuple[str, ...]) -> dict:
    hv = ds.table["clip"][m] >= 0
    ha = ds.table["audio"][m] >= 0
    pv, pa, ps = (_mean(scores[k][m]) for k in ("p_video", "p_audio", "p_sync"))
    two = _mean(mode_scores(scores, "two_stream")[m])  # NaN (skipped) where a clip lacks a modality
    faces = bool({"video", "mouth"} & set(modalities))  # for an audio model, faces are not searched
    notes = []
    if faces and not hv.any():
        notes.append("no face found: scored on the audio only")
    elif faces and not hv.all():
        notes.append(f"no face in {int((~hv).sum())} of {len(hv)} clips")
    if not ha.any() and "audio" in modalities:
        notes.append("no audio track: scored on the video only")
    chosen = {"sync": ps, "two_stream": two, "video": pv, "audio": pa}[mode]
    if chosen is None:  # the mode needs what the file lacks: the head that is there
        fallback = "p_audio_fake" if pa is not None else "p_video_fake"
        chosen = pa if pa is not None else pv
        notes.append(f"mode {mode} needs both modalities: score is {fallback}")
    return {"clips": int(m.sum()), "clips_with_face": int(hv.sum()), "clips_with_audio": int(ha.sum()),
            "p_video_fake": pv, "p_audio_fake": pa, "p_sequence_fake": ps, "p_two_stream": two,
            "score": chosen, "verdict": None if chosen is None else ("fake" if chosen >= threshold else "real"),
            "notes": notes}
