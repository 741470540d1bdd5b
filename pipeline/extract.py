"""Extraction: manifest -> face crops, mouth crops and clip-aligned audio in a zarr store.

Each video gives up to ``clips_per_video`` clips of ``frames_per_clip`` frames on a fixed
``fps`` grid, spread evenly over the media without overlap. An audio-only item gives every clip
on a grid of ``audio_hop_frames`` (default: the clip length, so clips touch; shorter hops
overlap), up to ``clips_per_audio`` (a longer file has that many, spread evenly); one shorter
than a clip (but at least ``min_audio_seconds``) gives one clip, itself repeated. Every item of a
store has the same number of sample slots: the larger of ``clips_per_video`` and the most clips
an audio-only item of the manifest needs (:func:`clips_per_item`); unused slots are marked so.

A clip starting at grid frame ``k`` covers ``[k / fps, (k + F) / fps)``; its audio is
exactly ``F / fps * sample_rate`` samples from sample ``k * sample_rate / fps``.

:func:`extract_shard` is the pure per-shard function every worker runs; :func:`extract` plans
the store and maps it over the shards that are not done yet.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import faults
from . import store as st
from .cluster import Placement, run_stage, set_torch_threads
from .errors import MediaError
from .faces import FaceConfig, crop_clip, track_clip
from .manifest import ManifestRow, manifest_allowed_roots, manifest_root, read_manifest
from .media import decoded_size, iter_clips, probe, read_audio, recorded_info
from .paths import inside

STAGE = "extract"
OUTPUT = "samples"


@dataclass(frozen=True)
class ExtractConfig:
    fps: float = 25.0  # frames are sampled on this grid
    frames_per_clip: int = 32  # 1.28 s at 25 fps
    clips_per_video: int = 4  # at most; fewer when the media is shorter
    clips_per_audio: int = 64  # an audio-only item: at most this many clips (else every clip on the hop grid)
    audio_hop_frames: int = 0  # an audio-only item's clips start every this many grid frames (0: frames_per_clip)
    # an audio-only item shorter than one clip but at least this long gives one clip: the
    # utterance repeated until the clip is full (as anti-spoofing front-ends pad short trials)
    min_audio_seconds: float = 0.5
    audio_only: bool = False  # every item as audio only: no frames decoded, no face searched
    sample_rate: int = 16000  # audio is mono at this rate
    items_per_shard: int = 4  # a shard (one task) holds the clips of this many items
    decode_short_side: int = 720  # frames are decoded at most this large (short side); 0 = native
    seek_gap_seconds: float = 30.0  # clips further apart are reached by seeking, not decoding through
    max_pad_frames: int = 2  # a clip cut short by at most this many frames repeats its last frame
    face: FaceConfig = field(default_factory=FaceConfig)

    def __post_init__(self):
        if isinstance(self.face, dict):
            object.__setattr__(self, "face", FaceConfig(**{**self.face, "thresholds": tuple(self.face["thresholds"])}))
        if min(self.frames_per_clip, self.clips_per_video, self.clips_per_audio, self.items_per_shard) < 1:
            raise ValueError("frames_per_clip, clips_per_video, clips_per_audio and items_per_shard must be >= 1")
        if self.audio_hop_frames < 0:
            raise ValueError(f"audio_hop_frames must be >= 0 (0: the clip length), not {self.audio_hop_frames}")

    @property
    def audio_hop(self) -> int:
        """Grid frames between the starts of an audio-only item's clips."""
        return self.audio_hop_frames or self.frames_per_clip

    @property
    def audio_samples(self) -> int:
        """Samples per clip: frames / fps x sample_rate."""
        return int(round(self.frames_per_clip * self.sample_rate / self.fps))

    def audio_start(self, start_frame: int) -> int:
        return int(round(start_frame * self.sample_rate / self.fps))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hashed(self) -> dict:
        """The part of the config that changes results (not where or how fast it runs)."""
        d = self.to_dict()
        for k in ("device", "batch_size"):
            d["face"].pop(k)
        return d


def plan_starts(total_frames: int, frames_per_clip: int, clips: int) -> list[int]:
    """Start frames of up to ``clips`` non-overlapping clips spread evenly over
    ``total_frames`` grid frames (first clip at 0, last ending at the end)."""
    n = min(clips, total_frames // frames_per_clip)
    if n <= 0:
        return []
    if n == 1:
        return [(total_frames - frames_per_clip) // 2]
    span = total_frames - frames_per_clip
    return [int(round(i * span / (n - 1))) for i in range(n)]


def plan_audio_starts(total_frames: int, frames_per_clip: int, hop: int, clips: int) -> list[int]:
    """Start frames of every clip on a grid of ``hop`` frames from 0 that fits in
    ``total_frames``; when there are more than ``clips``, ``clips`` spread evenly instead (first
    at 0, last ending at the end, further apart than ``hop``)."""
    if total_frames < frames_per_clip:
        return []
    n = (total_frames - frames_per_clip) // hop + 1
    if n <= clips:
        return [i * hop for i in range(n)]
    if clips == 1:
        return [(total_frames - frames_per_clip) // 2]
    span = total_frames - frames_per_clip  # more than (clips - 1) hops: spread, further apart than the hop
    return [int(round(i * span / (clips - 1))) for i in range(clips)]


def clips_per_item(rows: list[ManifestRow], cfg: ExtractConfig) -> int:
    """Sample slots per item of a store: ``clips_per_video``, or more when an audio-only item of
    ``rows`` has more clips: by its duration as the manifest recorded it (the recipes' probe), or
    ``clips_per_audio`` for an item without one (files are not probed twice)."""
    slots = cfg.clips_per_video
    for row in rows:
        if row.media != "audio" and not cfg.audio_only:
            continue
        duration = (row.extra or {}).get("duration")
        if duration is None:
            return max(slots, cfg.clips_per_audio)
        total = int(np.floor(float(duration) * cfg.fps + 1e-6))
        slots = max(slots, len(plan_audio_starts(total, cfg.frames_per_clip, cfg.audio_hop, cfg.clips_per_audio)))
    return slots


# ---- one item ------------------------------------------------------------------------------


@dataclass
class Clip:
    """One extracted clip; arrays are None when that modality is absent."""

    start_frame: int
    face: np.ndarray | None = None
    mouth: np.ndarray | None = None
    box: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    confidence: np.ndarray | None = None
    n_faces: int = 0
    audio: np.ndarray | None = None
    source_size: tuple[int, int] = (0, 0)
    duration: float = float("nan")  # seconds of the whole item (video: container; audio: track)
    audio_only: bool = False  # taken as audio only (ExtractConfig.audio_only): no video expected
    failures: list[tuple[str, str]] = field(default_factory=list)


def extract_item(row: ManifestRow, root: Path, cfg: ExtractConfig, threads: int = 1, allowed=(),
                 slots: int | None = None) -> list[Clip]:
    """All clips of one item (at most ``slots``, the store's slots per item; default
    ``clips_per_video``). Raises MediaError when nothing can be taken from it, and
    ``outside_root`` before opening anything when a path of the row leads out of ``root``
    (absolute audio paths may also lie in the ``allowed`` folders, e.g. an FF++ --audio-dir)."""
    if cfg.audio_only and row.media != "audio":
        row = dataclasses.replace(row, media="audio")
    path = inside(root, row.path, allowed)
    src = inside(root, row.audio_path, allowed) if row.audio_path else path
    info = recorded_info(path, row.extra or {}) or probe(path)  # probed once, when indexed
    wants_audio = row.audio_path is not None or row.has_audio is not False
    audio, audio_failure = None, None
    if wants_audio:
        if src == path and info.audio is None:
            audio_failure = ("no_audio", "")
        else:
            try:
                audio = read_audio(src, cfg.sample_rate, threads)
            except MediaError as e:
                audio_failure = (e.reason, e.detail)
    if row.media == "video" and info.video is None and audio is None:
        raise MediaError(path, "no_video")
    seconds = len(audio) / cfg.sample_rate if audio is not None else np.nan  # of the track as read
    if row.media == "video" and info.video is not None:
        total = int(np.floor(info.duration * cfg.fps + 1e-6)) if info.duration else 10**9
        clips = _video_clips(path, info, total, cfg, threads)
    else:
        if audio is None:
            raise MediaError(path, *(audio_failure or ("no_audio", "")))
        total = int(len(audio) * cfg.fps / cfg.sample_rate + 1e-9)  # grid frames the audio covers
        if row.media == "audio":
            cap = min(cfg.clips_per_audio, slots or cfg.clips_per_audio)
            starts = plan_audio_starts(total, cfg.frames_per_clip, cfg.audio_hop, cap)
            if not starts and seconds >= cfg.min_audio_seconds:
                starts, audio = [0], np.resize(audio, max(len(audio), cfg.audio_samples))  # repeated to fill
        else:
            starts = plan_starts(total, cfg.frames_per_clip, cfg.clips_per_video)
        if not starts:
            shortest = f"{cfg.min_audio_seconds:.2f} s" if row.media == "audio" else "one clip"
            raise MediaError(path, "too_short", f"{seconds:.2f} s < {shortest}")
        clips = [Clip(start_frame=s, audio_only=cfg.audio_only) for s in starts]
        if row.media == "video":  # a video row whose file has no video stream: audio only
            for c in clips:
                c.failures.append(("no_video", ""))
    duration = info.duration if info.duration else seconds
    for c in clips:
        c.duration = duration
        if audio is not None:
            c.audio = _audio_span(audio, cfg.audio_start(c.start_frame), cfg.audio_samples)
            if c.audio is None:
                c.failures.append(("no_audio", "audio track ends before the clip"))
        elif audio_failure is not None:
            c.failures.append(audio_failure)
    return clips


def _video_clips(path: Path, info, total: int, cfg: ExtractConfig, threads: int) -> list[Clip]:
    F = cfg.frames_per_clip
    starts = plan_starts(total, F, cfg.clips_per_video)
    if not starts:
        raise MediaError(path, "too_short", f"{info.duration:.2f} s < one clip of {F / cfg.fps:.2f} s")
    size = decoded_size(info.video, cfg.decode_short_side)
    back = info.video.width / size[0]  # decoded pixels -> source pixels
    clips, anchor = [], None
    for start, frames in iter_clips(path, starts, F, cfg.fps, size, threads, int(cfg.seek_gap_seconds * cfg.fps)):
        clip = Clip(start_frame=start, source_size=(info.video.width, info.video.height))
        clips.append(clip)
        if len(frames) < F - cfg.max_pad_frames:
            clip.failures.append(("decode_error", f"video ended after {len(frames)} of {F} frames"))
            continue
        if len(frames) < F:
            frames = np.concatenate([frames, np.repeat(frames[-1:], F - len(frames), axis=0)])
        faces = track_clip(frames, cfg.face, anchor)
        if faces is None:
            clip.failures.append(("no_face", f"main face on < {cfg.face.min_detected_fraction:.0%} of frames"))
            continue
        anchor = faces.boxes.mean(axis=0)
        clip.face, clip.mouth = crop_clip(frames, faces, cfg.face)
        clip.box, clip.landmarks = faces.boxes * back, faces.landmarks * back
        clip.confidence, clip.n_faces = faces.confidence, faces.n_faces
    if len(clips) < len(starts):  # the decoder stopped early: later clips have no frames
        clips += [Clip(start_frame=s, failures=[("decode_error", "video ended before the clip")])
                  for s in starts[len(clips):]]
    return clips


def _audio_span(audio: np.ndarray, start: int, n: int) -> np.ndarray | None:
    """``n`` samples from ``start``, zero-padded past the end; None if it starts past the end."""
    if start >= len(audio):
        return None
    seg = audio[start : start + n]
    return seg if len(seg) == n else np.pad(seg, (0, n - len(seg)))


# ---- one shard -----------------------------------------------------------------------------


def _specs(cfg: ExtractConfig) -> list:
    return st.extract_specs(cfg.frames_per_clip, cfg.face.face_size, cfg.face.mouth_size, cfg.audio_samples)


def _buffers(n: int, cfg: ExtractConfig) -> dict[str, np.ndarray]:
    """One shard's arrays in memory (``n`` samples), as the store's specs define them."""
    return {spec.name: spec.buffer(n) for spec in _specs(cfg)}


def extract_shard(shard: int, store: str, root: str, config: dict, stage_hash: str, threads: int = 1,
                  allowed: tuple = (), slots: int | None = None) -> dict:
    """Extract the items of one shard and write the shard whole, then its done-marker.

    The shard's manifest rows are read from the store (``items/row``). A valid marker means
    the shard is done already (e.g. a retried task): nothing is redone. Returns the counts.
    """
    done = st.valid_marker(store, STAGE, OUTPUT, shard, stage_hash)
    if done is not None:
        return {**done["counts"], "skipped": True}
    cfg = ExtractConfig(**config)
    C = slots or cfg.clips_per_video  # sample slots per item (the plan's clips_per_item)
    lo = shard * cfg.items_per_shard * C
    first = shard * cfg.items_per_shard
    rows = [json.loads(r) for r in st.open_root(store)["items/row"][first : first + cfg.items_per_shard]]
    if any(r.get("media") == "video" for r in rows):  # only faces use torch: audio never imports it
        set_torch_threads(threads)
    buf = _buffers(len(rows) * C, cfg)
    failures: list[dict] = []
    t0 = time.perf_counter()
    for j, d in enumerate(rows):
        row = ManifestRow.from_dict(d)
        item = shard * cfg.items_per_shard + j
        try:
            clips = extract_item(row, Path(root), cfg, threads, allowed, C)
        except MediaError as e:
            _fail_item(buf, failures, j, C, lo, item, row, e.reason, e.detail)
            continue
        except Exception as e:  # a bug must not stop the run: record it with its traceback
            detail = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
            _fail_item(buf, failures, j, C, lo, item, row, "internal_error", detail)
            continue
        for c, clip in enumerate(clips):
            _put_clip(buf, j * C + c, clip, row)
            failures += [{"sample": lo + j * C + c, "item": item, "id": row.id, "clip": c, "reason": r,
                          "detail": dt} for r, dt in clip.failures]
    # arrays no clip of the shard filled (the video arrays of a shard of audio-only items, the
    # audio of a shard of silent videos) hold the fill value, which reads back the same without
    # a file: they are not encoded, unless an earlier attempt left a file to replace
    untouched = set() if buf["meta/has_video"].any() else set(VIDEO_ARRAYS)
    if not buf["meta/has_audio"].any():
        untouched.add("audio/real")
    root_group = st.open_root(store, mode="r+")
    written = []
    for name, data in buf.items():
        if name not in root_group:  # stores made before an array was added lack it
            continue
        if name not in untouched or st.shard_written(store, name, shard):
            root_group[name][lo : lo + len(data)] = data
        written.append(name)
        faults.point(STAGE, "after_first_write" if len(written) == 1 else "after_write", shard)
    status = buf["meta/status"]
    counts = {
        "samples": int((status <= st.STATUS["partial"]).sum()),
        "ok": int((status == st.STATUS["ok"]).sum()),
        "partial": int((status == st.STATUS["partial"]).sum()),
        "failed": int((status == st.STATUS["failed"]).sum()),
        "unused": int((status == st.STATUS["unused"]).sum()),
        "frames": int(buf["meta/has_video"].sum()) * cfg.frames_per_clip,
    }
    st.write_marker(store, STAGE, OUTPUT, shard, {
        "config_hash": stage_hash, "counts": counts, "failures": failures,
        "seconds": round(time.perf_counter() - t0, 3),
    }, arrays=written)
    return counts


# the arrays only a clip with a face writes (see _put_clip)
VIDEO_ARRAYS = ("video/face", "video/mouth", "video/box", "video/landmarks", "video/confidence", "meta/n_faces")


def _put_clip(buf: dict, i: int, clip: Clip, row: ManifestRow) -> None:
    buf["meta/start_frame"][i] = clip.start_frame
    buf["meta/source_size"][i] = clip.source_size
    buf["meta/duration"][i] = clip.duration
    if clip.face is not None:
        buf["video/face"][i], buf["video/mouth"][i] = clip.face, clip.mouth
        buf["video/box"][i], buf["video/landmarks"][i] = clip.box, clip.landmarks
        buf["video/confidence"][i], buf["meta/n_faces"][i] = clip.confidence, clip.n_faces
        buf["meta/has_video"][i] = True
    if clip.audio is not None:
        buf["audio/real"][i] = clip.audio
        buf["meta/has_audio"][i] = True
    expected = [row.media == "video" and not clip.audio_only, row.audio_path is not None or row.has_audio is not False]
    present = [buf["meta/has_video"][i], buf["meta/has_audio"][i]]
    missing = any(e and not p for e, p in zip(expected, present))
    buf["meta/status"][i] = st.STATUS["failed"] if not any(present) else st.STATUS["partial" if missing else "ok"]


def _fail_item(buf, failures, j, C, lo, item, row, reason, detail) -> None:
    buf["meta/status"][j * C : (j + 1) * C] = st.STATUS["failed"]
    failures.append({"sample": None, "item": item, "id": row.id, "clip": None, "reason": reason, "detail": detail})


# ---- the store and the driver --------------------------------------------------------------


def prepare_store(store, rows: list[ManifestRow], cfg: ExtractConfig, overwrite: bool = False,
                  root: str | None = None) -> dict:
    """Create the store's arrays with their final shapes (or check an existing store was made
    with the same config and manifest). Returns the plan stored in the store's attributes."""
    C = clips_per_item(rows, cfg)
    plan = {
        "config": cfg.to_dict(),
        "config_hash": st.config_hash(cfg.hashed()),
        "manifest_hash": st.config_hash([r.to_dict() for r in rows]),
        "n_items": len(rows),
        "clips_per_item": C,
        "n_samples": len(rows) * C,
        "shard_size": cfg.items_per_shard * C,
        "root": str(root) if root else None,  # the corpus the rows' paths are relative to (not hashed)
    }
    plan["n_shards"] = -(-plan["n_samples"] // plan["shard_size"])
    plan["stage_hash"] = st.config_hash([plan["config_hash"], plan["manifest_hash"], C, st.FORMAT_VERSION])
    existing = _existing_plan(store)
    if existing is not None and not overwrite:
        if existing["stage_hash"] == plan["stage_hash"]:
            return existing
        raise st.StoreMismatch(_mismatch_message(store, existing, plan))
    if overwrite:
        st.remove(store)
    _create_arrays(store, rows, cfg, plan)
    return plan


def _existing_plan(store) -> dict | None:
    if not st.exists(store):
        return None
    try:
        return st.store_attrs(store)["stages"].get(STAGE)
    except ValueError:
        raise st.StoreMismatch(f"{store} exists and is not an avdd store; choose another path") from None


def _mismatch_message(store, old: dict, new: dict) -> str:
    what = []
    if old["config_hash"] != new["config_hash"]:
        diff = _diff(old["config"], new["config"])
        what.append("config (" + ", ".join(diff) + ")")
    if old["manifest_hash"] != new["manifest_hash"]:
        what.append(f"manifest ({old['n_items']} items before, {new['n_items']} now)")
    return (f"Store {store} was extracted with a different {' and '.join(what) or 'format'}. "
            "Use --overwrite to delete it and extract again, or choose another --store.")


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k) and k not in ("device", "batch_size"):
            out.append(f"{prefix}{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return out


def _create_arrays(store, rows: list[ManifestRow], cfg: ExtractConfig, plan: dict) -> None:
    root = st.open_root(store, mode="w")
    root.attrs["avdd"] = {"format": st.FORMAT, "version": st.FORMAT_VERSION, "stages": {}}
    N, K = plan["n_samples"], plan["shard_size"]
    for spec in _specs(cfg):
        spec.create(root, N, K)
    C = plan["clips_per_item"]
    rep = lambda values: np.repeat(np.asarray(values), C)  # noqa: E731  item -> its C samples
    items = root.create_array("items/row", shape=(len(rows),), chunks=(max(1, min(len(rows), 4096)),), dtype=str)
    if rows:
        items[:] = np.array([json.dumps(r.to_dict(), sort_keys=True) for r in rows])
    static = {
        "meta/item": rep(np.arange(len(rows), dtype=np.int32)),
        "meta/clip": np.tile(np.arange(C, dtype=np.int16), len(rows)),
        "meta/video_label": rep([st.LABEL_CODES[r.video_label] for r in rows]),
        "meta/audio_label": rep([st.LABEL_CODES[r.audio_label] for r in rows]),
    }
    for spec in st.ITEM_SPECS:
        spec.create(root, N, K)[:] = static[spec.name].astype(spec.dtype)
    for spec in st.STRING_SPECS:
        arr = spec.create(root, N, K)
        if rows:
            arr[:] = rep([getattr(r, spec.name.split("/")[1]) or "" for r in rows]).astype(str)
    st.set_stage_attrs(store, STAGE, plan)


@dataclass
class ExtractSummary:
    store: str
    shards: int
    skipped: int
    computed: int
    errors: dict[int, str]
    counts: dict
    failures_by_reason: dict
    seconds: float
    failures: list = dataclasses.field(default_factory=list)  # every failure: id, clip, reason, detail
    workers: dict = dataclasses.field(default_factory=dict)  # shard -> Dask worker that wrote it (this run)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def extract(manifest, store, root=None, config: ExtractConfig | None = None, client=None,
            scheduler: str | None = None, workers: int | None = None, threads: int | None = None,
            overwrite: bool = False, progress: bool = True, where: Placement | None = None) -> ExtractSummary:
    """Extract every item of ``manifest`` into ``store``; shards already done are skipped.

    Runs on ``client`` if given, else on the Dask scheduler at ``scheduler``, else on a local
    cluster of ``workers`` processes (default: one per core; 0 runs in this process); ``where``
    (a :class:`~pipeline.cluster.Placement`, e.g. a batch cluster) replaces those four.
    """
    cfg = config or ExtractConfig()
    rows = read_manifest(manifest)
    root = manifest_root(manifest, root)
    allowed = tuple(manifest_allowed_roots(manifest))
    plan = prepare_store(store, rows, cfg, overwrite=overwrite, root=root)
    all_shards = range(plan["n_shards"])
    todo = [s for s in all_shards if st.valid_marker(store, STAGE, OUTPUT, s, plan["stage_hash"]) is None]
    where = where or Placement(client, scheduler, workers, threads)
    fn = functools.partial(extract_shard, store=st.location(store), root=str(root),
                           config=cfg.to_dict(), stage_hash=plan["stage_hash"], threads=where.task_threads(),
                           allowed=allowed, slots=plan["clips_per_item"])
    run = run_stage(fn, todo, where, "extract", progress, gpu=cfg.face.device.startswith("cuda"))
    return summarize(store, plan, skipped=len(all_shards) - len(todo), run=run)


def summarize(store, plan: dict, skipped: int = 0, run=None) -> ExtractSummary:
    markers = st.valid_markers(store, STAGE, OUTPUT, plan["stage_hash"])
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    failures = []
    for m in markers:
        for k, v in m["counts"].items():
            counts[k] = counts.get(k, 0) + v
        for f in m["failures"]:
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
            failures.append({k: f[k] for k in ("id", "clip", "reason")} | {"detail": f["detail"].split("\n")[0]})
    return ExtractSummary(
        store=str(store), shards=plan["n_shards"], skipped=skipped,
        computed=len(run.done) if run else 0, errors=dict(run.errors) if run else {},
        counts=counts, failures_by_reason=reasons, seconds=round(run.seconds, 2) if run else 0.0,
        failures=failures, workers=dict(run.workers) if run else {},
    )
