"""build-shards: an extracted (and converted) store -> training-ready shards for the detector.

The shards format (``avdd-shards`` version 1) is specified in ``docs/shards-format.md`` and read
by ``detector/data.py``; this module writes it. Video clips and audio tracks are stored once
each and samples point at them, so a real clip used by several pair types costs its pixels once.
Big arrays keep one sample per zarr chunk inside zarr shards of ``clips_per_shard`` /
``audio_per_shard`` samples (random reads of one sample, few files; see benchmarks/RESULTS.md).
One task copies one block of clips or audio tracks (aligned with the zarr shards) and then
writes its done-marker; a re-run skips finished blocks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from . import faults
from . import store as st
from .cluster import Placement, run_stage, set_torch_threads
from .pairs import PAIRS, SPLIT_NAMES, PairConfig, Samples, StoreView, plan_samples
from .splits import assign_splits

FORMAT = "avdd-shards"
VERSION = 1
# The log-mel the detector reads (cached here when asked): part of the format (docs/shards-format.md).
MEL = {"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 80, "f_min": 0.0,
       "f_max": 8000.0, "log_offset": 1e-6}
PAIR_CODES = {name: i for i, name in enumerate((*PAIRS, "unpaired"))}
SPLIT_CODES = {name: i for i, name in enumerate(SPLIT_NAMES)}


@dataclass(frozen=True)
class ShardsConfig:
    pairs: PairConfig = field(default_factory=PairConfig)
    split_ratios: dict = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    keep_given_splits: bool = True  # keep the splits datasets give (FF++ official, ASVspoof ...)
    split_seed: int = 0
    cache_mel: bool = False  # opt-in: store the log-mel of every audio track (float16); the models compute it
    clips_per_shard: int = 32  # video clips per zarr shard (and per copy task)
    audio_per_shard: int = 256  # audio tracks per zarr shard (and per copy task)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def store_view(store) -> tuple[StoreView, list[dict], dict]:
    """The store's metadata for planning, its items, and the stage plans used."""
    attrs = st.store_attrs(store)
    ext = attrs["stages"].get("extract")
    if ext is None:
        raise ValueError(f"{store} has no extracted samples: run `avdd-data extract` first")
    g = st.open_root(store)
    n, k = ext["n_samples"], ext["shard_size"]
    done = st.done_mask(store, "extract", "samples", ext["stage_hash"], n, k)
    meta = {k: g[f"meta/{k}"][:] for k in ("status", "has_video", "has_audio", "video_label", "audio_label",
                                           "method", "item", "identity")}
    rows = [json.loads(str(r)) for r in g["items/row"][:]]
    converted = {}
    for key, plan in attrs["stages"].items():
        if not key.startswith("convert:"):
            continue
        name = plan["vocoder"]
        ok = st.done_mask(store, "convert", name, plan["stage_hash"], n, k, drop_failed=True)
        converted[name] = ok & meta["has_audio"]
    cfg = ext["config"]
    view = StoreView(
        usable=done & (meta["status"] <= st.STATUS["partial"]), has_video=meta["has_video"],
        has_audio=meta["has_audio"], video_label=meta["video_label"], audio_label=meta["audio_label"],
        method=meta["method"], item=meta["item"], identity=meta["identity"], item_split=np.array([]),
        converted=converted, samples_per_frame=int(round(cfg["sample_rate"] / cfg["fps"])),
    )
    stages = {k: v["stage_hash"] for k, v in attrs["stages"].items()}
    return view, rows, stages


def plan(store, cfg: ShardsConfig) -> tuple[Samples, dict, dict]:
    view, rows, stages = store_view(store)
    splits, report = assign_splits(rows, cfg.split_ratios, cfg.split_seed, cfg.keep_given_splits)
    view.item_split = np.array(splits)
    samples, skipped = plan_samples(view, cfg.pairs)
    info = {"split_report": dataclasses.asdict(report), **skipped}
    return samples, info, stages


# ---- writing -------------------------------------------------------------------------------


def _unique(samples: Samples) -> tuple[list[int], list[tuple], np.ndarray, np.ndarray]:
    clips = sorted({c for c in samples.clip if c >= 0})
    audios = sorted({a for a in samples.audio if a is not None}, key=lambda a: (a[0], a[1], a[2]))
    ci = {c: i for i, c in enumerate(clips)}
    ai = {a: i for i, a in enumerate(audios)}
    clip_idx = np.array([ci.get(c, -1) for c in samples.clip], np.int32)
    audio_idx = np.array([ai[a] if a is not None else -1 for a in samples.audio], np.int32)
    return clips, audios, clip_idx, audio_idx


def _create(out, store, samples: Samples, clips, audios, clip_idx, audio_idx, cfg: ShardsConfig, attrs: dict):
    src = st.open_root(store)
    root = st.open_root(out, mode="w")
    face, mouth, audio = src["video/face"], src["video/mouth"], src["audio/real"]
    st.create_array(root, "clips/face", (len(clips), *face.shape[1:]), np.uint8, cfg.clips_per_shard)
    st.create_array(root, "clips/mouth", (len(clips), *mouth.shape[1:]), np.uint8, cfg.clips_per_shard)
    st.create_array(root, "audio/wave", (len(audios), audio.shape[1]), np.float32, cfg.audio_per_shard)
    if cfg.cache_mel:
        frames = audio.shape[1] // MEL["hop_length"] + 1
        st.create_array(root, "audio/mel", (len(audios), MEL["n_mels"], frames), np.float16, cfg.audio_per_shard)
    n = len(samples)
    small = {
        "samples/clip": (clip_idx, np.int32), "samples/audio": (audio_idx, np.int32),
        "samples/video_fake": (np.array(samples.video_fake), np.int8),
        "samples/audio_fake": (np.array(samples.audio_fake), np.int8),
        "samples/sequence_fake": (np.array(samples.sequence_fake), np.int8),
        "samples/pair": (np.array([PAIR_CODES[p] for p in samples.pair]), np.int8),
        "samples/split": (np.array([SPLIT_CODES[s] for s in samples.split]), np.int8),
        "samples/sync_offset": (np.array(samples.sync_offset), np.int16),
        "clips/source": (np.array(clips, dtype=np.int64), np.int64),
        "audio/source_sample": (np.array([a[1] for a in audios], dtype=np.int64), np.int64),
        "audio/shift": (np.array([a[2] for a in audios], dtype=np.int64), np.int32),
    }
    for name, (values, dtype) in small.items():
        arr = st.create_array(root, name, (len(values),), dtype, max(1, len(values)), sample_chunk=max(1, len(values)))
        if len(values):
            arr[:] = values.astype(dtype)
    strings = {"samples/method": samples.method, "samples/vocoder": samples.vocoder,
               "samples/category": samples.category, "audio/source": [a[0] for a in audios]}
    meta = {k: src[f"meta/{k}"][:] for k in ("id", "identity", "group", "clip")}
    duration = src["meta/duration"][:] if "meta/duration" in src else np.full(len(meta["id"]), np.nan, np.float32)
    source = [c if c >= 0 else a[1] for c, a in zip(samples.clip, samples.audio)]
    arr = st.create_array(root, "samples/duration", (n,), np.float32, max(1, n), sample_chunk=max(1, n))
    if n:
        arr[:] = duration[source].astype(np.float32)
    for key in ("id", "identity", "group"):
        strings[f"samples/{key}"] = [str(meta[key][c]) if c >= 0 else str(meta[key][a[1]])
                                     for c, a in zip(samples.clip, samples.audio)]
    for name, values in strings.items():
        arr = root.create_array(name, shape=(len(values),), chunks=(max(1, len(values)),), dtype=str)
        if len(values):
            arr[:] = np.array(values, dtype=str)
    root.attrs[FORMAT] = {**attrs, "n_samples": n, "n_clips": len(clips), "n_audio": len(audios)}


def copy_block(block: int, kind: str, out: str, store: str, config_hash: str, threads: int = 1) -> dict:
    """Copy one block of clips (``kind="clips"``) or audio tracks (``"audio"``) into the shards."""
    if st.valid_marker(out, "build", kind, block, config_hash) is not None:
        return {"samples": 0, "skipped": True}
    set_torch_threads(threads)
    t0 = time.perf_counter()
    dst, src = st.open_root(out, mode="r+"), st.open_root(store)
    if kind == "clips":
        K = dst["clips/face"].shards[0]
        idx = dst["clips/source"][block * K : (block + 1) * K]
        for name in ("face", "mouth"):
            dst[f"clips/{name}"][block * K : block * K + len(idx)] = _gather(src[f"video/{name}"], idx)
            faults.point("build", "after_first_write", block)
        written = ["clips/face", "clips/mouth"]
    else:
        K = dst["audio/wave"].shards[0]
        sources = dst["audio/source"][block * K : (block + 1) * K]
        samples = dst["audio/source_sample"][block * K : (block + 1) * K]
        shifts = dst["audio/shift"][block * K : (block + 1) * K]
        wave = np.stack([_audio(src, str(s), int(i), int(k)) for s, i, k in zip(sources, samples, shifts)]) \
            if len(samples) else np.zeros((0, dst["audio/wave"].shape[1]), np.float32)
        dst["audio/wave"][block * K : block * K + len(wave)] = wave
        faults.point("build", "after_first_write", block)
        written = ["audio/wave"]
        if "mel" in dst["audio"]:
            dst["audio/mel"][block * K : block * K + len(wave)] = log_mel(wave).astype(np.float16)
            written.append("audio/mel")
        idx = samples
    counts = {"samples": int(len(idx)), "failed": 0}
    st.write_marker(out, "build", kind, block, {"config_hash": config_hash, "counts": counts, "failures": [],
                                                 "seconds": round(time.perf_counter() - t0, 3)}, arrays=written)
    return counts


def _gather(arr, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of a store array, read in ascending runs (one chunk per sample)."""
    return np.stack([arr[int(i)] for i in idx]) if len(idx) else np.zeros((0, *arr.shape[1:]), arr.dtype)


def _audio(src, source: str, sample: int, shift: int) -> np.ndarray:
    wave = src["audio/real" if source == "real" else f"audio/fake/{source}"][sample]
    return shift_audio(wave, shift) if shift else wave


def shift_audio(wave: np.ndarray, shift: int, fade: int = 160) -> np.ndarray:
    """``wave`` delayed by ``shift`` samples (advanced when negative), circularly. The clip's end
    and start meet at the seam: each side fades over ``fade`` samples (10 ms) so that no click
    marks the shifted pairs (what remains is a 20 ms dip, like a short pause)."""
    out = np.roll(wave, shift).astype(np.float32)
    seam = shift % len(wave)
    if fade and 0 < seam < len(wave):
        left, right = min(fade, seam), min(fade, len(wave) - seam)
        out[seam - left : seam] *= np.linspace(1, 0, left, endpoint=False, dtype=np.float32)
        out[seam : seam + right] *= np.linspace(0, 1, right, endpoint=False, dtype=np.float32)
    return out


def log_mel(wave: np.ndarray) -> np.ndarray:
    """(B, N) 16 kHz audio -> (B, n_mels, N // hop + 1) natural-log mel power (see :data:`MEL`):
    the pipeline's one STFT/mel implementation (:class:`pipeline.vocoders.mel.MelSpec`, centred
    frames, periodic Hann, Slaney filterbank), squared magnitude, ``ln(mel + log_offset)``."""
    import torch

    from .vocoders.mel import MelSpec

    spec = MelSpec(sample_rate=MEL["sample_rate"], n_fft=MEL["n_fft"], hop_length=MEL["hop_length"],
                   win_length=MEL["win_length"], n_mels=MEL["n_mels"], fmin=MEL["f_min"], fmax=MEL["f_max"])
    with torch.inference_mode():
        power = spec.magnitude(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))) ** 2
        return torch.log(torch.matmul(spec.filterbank(dtype=power.dtype), power) + MEL["log_offset"]).numpy()


# ---- the driver ----------------------------------------------------------------------------


def build_shards(store, out, cfg: ShardsConfig | None = None, client=None, scheduler: str | None = None,
                 workers: int | None = None, threads: int | None = None, overwrite: bool = False,
                 progress: bool = True, where: Placement | None = None) -> dict:
    """Plan the samples of ``store`` and write them as shards to ``out``; returns the summary.
    ``where`` (a :class:`~pipeline.cluster.Placement`) replaces client/scheduler/workers/threads."""
    cfg = cfg or ShardsConfig()
    samples, info, stages = plan(store, cfg)
    config_hash = st.config_hash([cfg.to_dict(), stages, VERSION])
    existing = _existing(out)
    if existing is not None and existing.get("config_hash") != config_hash:
        if not overwrite:
            raise st.StoreMismatch(f"{out} holds shards built from another store state or config; "
                                   "use --overwrite to rebuild them, or choose another --out")
        st.remove(out)
        existing = None
    clips, audios, clip_idx, audio_idx = _unique(samples)
    summary = summarize(samples)
    if existing is None:
        ext = st.store_attrs(store)["stages"]["extract"]["config"]
        attrs = {"format": FORMAT, "version": VERSION, "avdd_version": __version__, "config": cfg.to_dict(),
                 "config_hash": config_hash, "store": st.location(store), "store_stages": stages,
                 "mel": MEL if cfg.cache_mel else None, "mel_params": MEL, "splits": list(SPLIT_NAMES),
                 "pairs": list(PAIR_CODES), "fps": ext["fps"], "frames_per_clip": ext["frames_per_clip"],
                 "sample_rate": ext["sample_rate"], "plan": info, "summary": summary}
        _create(out, store, samples, clips, audios, clip_idx, audio_idx, cfg, attrs)
    n_clip_blocks = -(-len(clips) // cfg.clips_per_shard)
    n_audio_blocks = -(-len(audios) // cfg.audio_per_shard)
    todo = [b for b in range(n_clip_blocks) if st.valid_marker(out, "build", "clips", b, config_hash) is None]
    todo += [n_clip_blocks + b for b in range(n_audio_blocks)
             if st.valid_marker(out, "build", "audio", b, config_hash) is None]
    where = where or Placement(client, scheduler, workers, threads)
    fn = functools.partial(_block_task, n_clip_blocks=n_clip_blocks, out=st.location(out),
                           store=st.location(store), config_hash=config_hash, threads=where.task_threads())
    run = run_stage(fn, todo, where, "build-shards", progress)
    return {"out": str(out), "samples": len(samples), "clips": len(clips), "audio": len(audios),
            "blocks": n_clip_blocks + n_audio_blocks, "computed": len(run.done),
            "skipped": n_clip_blocks + n_audio_blocks - len(todo), "errors": dict(run.errors),
            "seconds": round(run.seconds, 2), "summary": summary, "plan": info}


def _block_task(block: int, n_clip_blocks: int, **kw) -> dict:
    if block < n_clip_blocks:
        return copy_block(block, "clips", **kw)
    return copy_block(block - n_clip_blocks, "audio", **kw)


def _existing(out) -> dict | None:
    if not st.exists(out):
        return None
    attrs = dict(st.open_root(out).attrs).get(FORMAT)
    if attrs is None:
        raise st.StoreMismatch(f"{out} exists and is not an avdd shards store; choose another --out")
    return attrs


def summarize(samples: Samples) -> dict:
    """Counts per pair type and split, per label and split, per category and split."""
    from collections import Counter

    def table(keys):
        t: dict[str, dict[str, int]] = {}
        for k, split in zip(keys, samples.split):
            t.setdefault(str(k), {}).setdefault(split, 0)
            t[str(k)][split] += 1
        return t

    seq = ["fake" if x else "real" for x in samples.sequence_fake]
    return {"by_pair": table(samples.pair), "by_sequence_label": table(seq), "by_category": table(samples.category),
            "by_split": dict(Counter(samples.split))}


def format_summary(summary: dict) -> str:
    splits = [s for s in SPLIT_NAMES if s in summary["by_split"]]
    lines = []
    for title, key in (("pair type", "by_pair"), ("sequence label", "by_sequence_label"), ("category", "by_category")):
        width = max([len(title), *(len(k) for k in summary[key])]) + 2
        lines.append(f"{title:<{width}}" + "".join(f"{s:>9}" for s in splits) + f"{'total':>9}")
        for k, row in sorted(summary[key].items()):
            lines.append(f"{k:<{width}}" + "".join(f"{row.get(s, 0):>9}" for s in splits) + f"{sum(row.values()):>9}")
        lines.append("")
    lines.append("total" + "".join(f"{summary['by_split'][s]:>9}" for s in splits))
    return "\n".join(lines)
