"""The convert stage: copy synthesis of a store's real audio through a vocoder.

For vocoder ``NAME`` it writes, next to ``audio/real``::

    audio/fake/NAME          (N, L) float32: the re-synthesised clip, same rate, same length
    quality/NAME/mcd         (N,) float32 mel-cepstral distortion against the real clip (dB)
    quality/NAME/lsd         (N,) float32 log-spectral distance (dB)
    quality/NAME/env_corr    (N,) float32 correlation of the energy envelopes

(NaN quality and zero audio where a sample has no real audio or its conversion failed.) The
vocoder, its checkpoint's hash and its resolved config are recorded in the store's attributes
(stage ``convert:NAME``) and in every shard's done-marker. One task converts one whole shard;
the vocoder is loaded once per worker process; shards are converted only once extracted.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass, field

import numpy as np

from . import faults
from . import store as st
from .cluster import Placement, run_stage, set_torch_threads
from .quality import quality

STAGE = "convert"
QUALITY = ("mcd", "lsd", "env_corr")
ALWAYS_USABLE = ("griffinlim", "world")


@dataclass(frozen=True)
class ConvertConfig:
    vocoder: str
    checkpoint: str | None = None  # neural vocoders: the user's checkpoint file
    device: str = "cpu"  # cpu or cuda[:N]
    batch_size: int = 16  # clips converted together
    trust_pickle: bool = False  # allow legacy pickled checkpoints (restricted unpickler)
    # neural vocoders in float16 (CUDA only): faster, but adds a rounding-noise floor that
    # float32 conversions lack (NeuralVocoder.use_half); off by default
    half: bool = False
    options: dict = field(default_factory=dict)  # vocoder options (e.g. {"n_iter": 64} for griffinlim)


_CACHE: dict[str, object] = {}
LOADS = {"count": 0}  # vocoder loads in this process (each worker loads a vocoder once)


def get_vocoder(cfg: ConvertConfig):
    """The vocoder for ``cfg``, loaded once per process (each Dask worker keeps its own)."""
    from .cluster import worker_device
    from .vocoders import load_vocoder

    key = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    if key not in _CACHE:
        LOADS["count"] += 1
        _CACHE[key] = load_vocoder(cfg.vocoder, checkpoint=cfg.checkpoint, device=worker_device(cfg.device),
                                   trust_pickle=cfg.trust_pickle, half=cfg.half, **cfg.options)
    return _CACHE[key]


def output_name(vocoder: str) -> str:
    return f"audio/fake/{vocoder}"


# ---- one shard -----------------------------------------------------------------------------


def convert_shard(shard: int, store: str, config: dict, stage_hash: str, threads: int = 1) -> dict:
    """Convert the real audio of one shard and write the shard whole, then its done-marker."""
    cfg = ConvertConfig(**config)
    name = cfg.vocoder
    done = st.valid_marker(store, STAGE, name, shard, stage_hash)
    if done is not None:
        return {**done["counts"], "skipped": True}
    set_torch_threads(threads)
    t0 = time.perf_counter()
    root = st.open_root(store, mode="r+")
    K = root[output_name(name)].shards[0]
    lo = shard * K
    real = root["audio/real"][lo : lo + K]
    todo = np.flatnonzero(root["meta/has_audio"][lo : lo + len(real)])
    fake = np.zeros_like(real)
    figures = {q: np.full(len(real), np.nan, np.float32) for q in QUALITY}
    failures = []
    vocoder = get_vocoder(cfg)
    sr = st.store_attrs(store)["stages"]["extract"]["config"]["sample_rate"]
    for b in range(0, len(todo), cfg.batch_size):
        idx = todo[b : b + cfg.batch_size]
        for i, y, err in _synthesize(vocoder, real[idx], sr, idx):
            if err is not None:
                failures.append({"sample": lo + int(i), "reason": "vocoder_error", "detail": err})
                continue
            fake[i] = y
            for q, v in quality(real[i], y, sr).items():
                figures[q][i] = v
    root[output_name(name)][lo : lo + len(real)] = fake
    faults.point(STAGE, "after_first_write", shard)
    for q in QUALITY:
        root[f"quality/{name}/{q}"][lo : lo + len(real)] = figures[q]
    converted = len(todo) - len(failures)
    counts = {"samples": converted, "failed": len(failures), "without_audio": int(len(real) - len(todo)),
              "audio_seconds": round(converted * real.shape[1] / sr, 3)}
    st.write_marker(store, STAGE, name, shard, {
        "config_hash": stage_hash, "counts": counts, "failures": failures,
        "seconds": round(time.perf_counter() - t0, 3), "vocoder": vocoder.info(),
    }, arrays=[output_name(name)] + [f"quality/{name}/{q}" for q in QUALITY])
    return counts


def _synthesize(vocoder, clips: np.ndarray, sr: int, idx: np.ndarray) -> list:
    """(index, waveform, error) per clip: the batch at once, or clip by clip when the batch
    fails, so that one bad clip does not cost the others."""
    try:
        return [(i, y, None) for i, y in zip(idx, vocoder.copy_synthesize(clips, sr))]
    except Exception as e:  # recorded per sample; the shard goes on
        if len(idx) == 1:
            return [(idx[0], None, f"{type(e).__name__}: {e}")]
        return [r for i, clip in zip(idx, clips) for r in _synthesize(vocoder, clip[None], sr, np.array([i]))]


# ---- the driver ----------------------------------------------------------------------------


@dataclass
class ConvertSummary:
    store: str
    vocoder: str
    shards: int
    skipped: int
    computed: int
    not_extracted: int
    errors: dict[int, str]
    counts: dict
    quality: dict
    seconds: float
    info: dict
    workers: dict = dataclasses.field(default_factory=dict)  # shard -> Dask worker that wrote it (this run)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def prepare(store, cfg: ConvertConfig, overwrite: bool = False) -> dict:
    """Check the vocoder loads, create its arrays with their final shapes (or check an existing
    conversion used the same vocoder, checkpoint and config). Returns the stage's plan."""
    extract_plan = st.store_attrs(store)["stages"].get("extract")
    if extract_plan is None:
        raise ValueError(f"{store} has no extracted audio yet: run `avdd-data extract` first")
    info = get_vocoder(cfg).info()
    plan = {
        "vocoder": cfg.vocoder, "info": info, "config": dataclasses.asdict(cfg),
        "stage_hash": st.config_hash([info["vocoder"], info["checkpoint_hash"], info["config"],
                                      extract_plan["stage_hash"], st.FORMAT_VERSION]),
    }
    key = f"{STAGE}:{cfg.vocoder}"
    existing = st.store_attrs(store)["stages"].get(key)
    if existing is not None and existing["stage_hash"] != plan["stage_hash"]:
        if not overwrite:
            raise st.StoreMismatch(
                f"{store} already holds a {cfg.vocoder} conversion made with another checkpoint or config "
                f"(checkpoint {existing['info']['checkpoint_hash']} -> {info['checkpoint_hash']}). "
                "Use --overwrite to replace it.")
        for path in (output_name(cfg.vocoder), f"quality/{cfg.vocoder}", f"_markers/{STAGE}/{cfg.vocoder}"):
            st.remove(st.join(store, path))
        existing = None
    if existing is None:
        root = st.open_root(store, mode="r+")
        real = root["audio/real"]
        K = extract_plan["shard_size"]
        st.create_array(root, output_name(cfg.vocoder), real.shape, np.float32, K)
        for q in QUALITY:
            st.create_array(root, f"quality/{cfg.vocoder}/{q}", (real.shape[0],), np.float32, K,
                            fill_value=float("nan"), sample_chunk=K)
        st.set_stage_attrs(store, key, plan)
    return plan


def convert(store, cfg: ConvertConfig, client=None, scheduler: str | None = None, workers: int | None = None,
            threads: int | None = None, overwrite: bool = False, progress: bool = True,
            where: Placement | None = None) -> ConvertSummary:
    """Convert every extracted shard of ``store`` with ``cfg.vocoder``; done shards are skipped.
    ``where`` (a :class:`~pipeline.cluster.Placement`) replaces client/scheduler/workers/threads."""
    plan = prepare(store, cfg, overwrite)
    extract_plan = st.store_attrs(store)["stages"]["extract"]
    shards = range(extract_plan["n_shards"])
    extracted = [s for s in shards
                 if st.valid_marker(store, "extract", "samples", s, extract_plan["stage_hash"]) is not None]
    todo = [s for s in extracted if st.valid_marker(store, STAGE, cfg.vocoder, s, plan["stage_hash"]) is None]
    where = where or Placement(client, scheduler, workers, threads)
    fn = functools.partial(convert_shard, store=st.location(store), config=dataclasses.asdict(cfg),
                           stage_hash=plan["stage_hash"], threads=where.task_threads())
    run = run_stage(fn, todo, where, f"convert-{cfg.vocoder}", progress, gpu=cfg.device.startswith("cuda"))
    return summarize(store, cfg.vocoder, plan, skipped=len(extracted) - len(todo),
                     not_extracted=len(shards) - len(extracted), run=run)


def summarize(store, vocoder: str, plan: dict, skipped: int = 0, not_extracted: int = 0, run=None) -> ConvertSummary:
    markers = st.valid_markers(store, STAGE, vocoder, plan["stage_hash"])
    counts: dict[str, float] = {}
    for m in markers:
        for k, v in m["counts"].items():
            counts[k] = round(counts.get(k, 0) + v, 3)
    return ConvertSummary(
        store=str(store), vocoder=vocoder, shards=len(markers) + (len(run.errors) if run else 0),
        skipped=skipped, computed=len(run.done) if run else 0, not_extracted=not_extracted,
        errors=dict(run.errors) if run else {}, counts=counts, quality=quality_summary(store, vocoder),
        seconds=round(run.seconds, 2) if run else 0.0, info=plan["info"],
        workers=dict(run.workers) if run else {},
    )


def quality_summary(store, vocoder: str) -> dict:
    """Mean and median of each quality figure over the converted samples."""
    root = st.open_root(store)
    out = {}
    for q in QUALITY:
        v = root[f"quality/{vocoder}/{q}"][:]
        v = v[np.isfinite(v)]
        out[q] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4), "n": int(len(v))} \
            if len(v) else {"mean": None, "median": None, "n": 0}
    return out


def usable_vocoders(checkpoints: dict[str, str]) -> list[str]:
    """``--vocoder all``: the vocoders that need no checkpoint, and those given one."""
    from .vocoders import NAMES

    unknown = sorted(set(checkpoints) - set(NAMES))
    if unknown:
        raise ValueError(f"Checkpoints given for unknown vocoder(s) {unknown}; valid vocoders: {', '.join(NAMES)}")
    return [n for n in NAMES if n in ALWAYS_USABLE or n in checkpoints]
