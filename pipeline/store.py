"""The zarr store: layout, creation with final shapes, and per-shard done-markers.

Layout of a store (zarr v3); every array in ``video/``, ``audio/`` and ``meta/`` shares the
sample axis 0 (one sample = one clip; item ``i``'s clips are samples ``i*C .. i*C+C-1``)::

    zarr.json                 attributes["avdd"]: format version, per-stage config and plan
    items/row                 (n_items,) str: the manifest row (JSON) of every item
    meta/{item,clip}          (N,) int32/int16: item index and clip slot of each sample
    meta/{id,method,split,identity,group}   (N,) str: from the manifest
    meta/{video_label,audio_label}          (N,) int8: 0 real, 1 fake, -1 unknown/absent
    meta/status               (N,) int8: see STATUS
    meta/{has_video,has_audio}(N,) bool: face crops / audio present for this sample
    meta/start_frame          (N,) int32: clip start on the fps grid (start time = start_frame / fps)
    meta/n_faces              (N,) int8: face tracks seen in the clip
    meta/source_size          (N, 2) int32: decoded frame width, height
    meta/duration             (N,) float32: seconds of the whole item (NaN when unknown)
    video/face                (N, F, S, S, 3) uint8 face crops
    video/mouth               (N, F, M, M, 3) uint8 mouth crops
    video/box                 (N, F, 4) float32 smoothed face box (x0, y0, x1, y1), source pixels
    video/landmarks           (N, F, 5, 2) float32 smoothed MTCNN landmarks, source pixels
    video/confidence          (N, F) float32 detector probability; NaN where interpolated
    audio/real                (N, L) float32 16 kHz mono audio of exactly the clip's span
    _markers/<stage>/<output>/<shard>   zarr groups whose attributes are done-markers

Rules (see DESIGN.md): arrays get their final shape before any task runs; a shard (a
contiguous run of ``shard_size`` samples, aligned with the arrays' zarr shards/chunks) is
written whole by exactly one task, data first and then an atomically written done-marker
holding the config hash, counts, per-sample failures and code version.

Where a store lives: a local path, or any fsspec URL (``s3://bucket/x.zarr``, ``gs://...``;
``file://`` means a local path). On object storage a zarr shard is one object and a marker is
one object, each written by a single PUT, which readers see whole or not at all: the same
guarantees as the atomic rename on a local disk, with no shared filesystem between workers.
Credentials and endpoints come from fsspec's configuration (e.g. ``FSSPEC_S3_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``), so that every worker reads the same settings from its environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from . import __version__

FORMAT = "avdd-store"
FORMAT_VERSION = 1

# meta/status values
STATUS = {"ok": 0, "partial": 1, "failed": 2, "unused": 3}
LABEL_CODES = {"real": 0, "fake": 1, None: -1}


class StoreMismatch(RuntimeError):
    """The store was made with another config or manifest than the one asked for now."""


def config_hash(obj) -> str:
    """Stable short hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_url(path) -> bool:
    """True for a store on another filesystem than the local one (``s3://``, ``gs://``, ...)."""
    return "://" in str(path) and not str(path).startswith("file://")


def location(path) -> str:
    """How a store is named to tasks: an absolute local path, or the URL as given."""
    text = str(path).removeprefix("file://")
    return text.rstrip("/") if is_url(text) else str(Path(text).resolve())


def join(path, *parts: str) -> str:
    """``path/part/...`` for local paths and URLs alike."""
    text = str(path).removeprefix("file://")
    return "/".join([text.rstrip("/"), *parts]) if is_url(text) else str(Path(text, *parts))


def _fs(url: str):
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def exists(path, name: str = "zarr.json") -> bool:
    """Whether ``path/name`` exists (default: the group's metadata, i.e. a zarr group is there)."""
    target = join(path, name)
    if is_url(target):
        fs, p = _fs(target)
        return fs.exists(p)
    return Path(target).is_file()


def _write_atomic(target: str, data: bytes) -> None:
    """Write one file whole: rename of a temporary file locally, one PUT on object storage."""
    if is_url(target):
        fs, p = _fs(target)
        fs.pipe_file(p, data)
        return
    tmp = Path(f"{target}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _read_bytes(target: str) -> bytes:
    if is_url(target):
        fs, p = _fs(target)
        return fs.cat_file(p)
    return Path(target).read_bytes()


def _read_text(target: str) -> str:
    return _read_bytes(target).decode()


def open_root(path, mode: str = "r") -> zarr.Group:
    if mode == "r" and not exists(path):
        raise FileNotFoundError(f"Not an avdd store (no zarr.json): {path}")
    return zarr.open_group(location(path), mode=mode)


def store_attrs(path) -> dict:
    attrs = dict(open_root(path).attrs).get("avdd")
    if not attrs or attrs.get("format") != FORMAT:
        raise ValueError(f"{path} is a zarr group but not an avdd store (no 'avdd' attributes)")
    if attrs.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has store format {attrs['version']}, newer than this avdd ({FORMAT_VERSION}); upgrade avdd"
        )
    return attrs


def set_stage_attrs(path, stage: str, info: dict) -> None:
    root = open_root(path, mode="r+")
    attrs = dict(root.attrs).get("avdd") or {"format": FORMAT, "version": FORMAT_VERSION, "stages": {}}
    attrs["stages"][stage] = info
    root.attrs["avdd"] = attrs


def create_array(root: zarr.Group, name: str, shape, dtype, shard_size: int, fill_value=0, sample_chunk: int = 1):
    """An array with sample axis 0: zarr shards of ``shard_size`` samples (one per task) and
    inner chunks of ``sample_chunk`` samples (for random reads of single samples)."""
    shape = tuple(int(s) for s in shape)
    rest = shape[1:]
    if dtype is str:
        return root.create_array(name, shape=shape, chunks=(shard_size, *rest), dtype=str, overwrite=True)
    return root.create_array(
        name,
        shape=shape,
        chunks=(sample_chunk, *rest),
        shards=(shard_size, *rest),
        dtype=dtype,
        fill_value=fill_value,
        overwrite=True,
    )


# ---- array specs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArraySpec:
    """One array of the sample axis: ``name``, the shape of one sample, dtype, fill value and
    inner chunking (``"shard"``: one chunk per task shard, for small per-sample values; ``"sample"``:
    one chunk per sample, for random reads of media). Strings (``dtype`` str) are chunked per shard."""

    name: str
    shape: tuple[int, ...]
    dtype: object
    fill: object = 0
    chunk: str = "sample"

    def create(self, root: zarr.Group, n: int, shard_size: int):
        """The array with its final shape: ``n`` samples, zarr shards of ``shard_size``."""
        sample_chunk = shard_size if self.chunk == "shard" else 1
        return create_array(root, self.name, (n, *self.shape), self.dtype, shard_size, fill_value=self.fill,
                            sample_chunk=sample_chunk)

    def buffer(self, n: int) -> np.ndarray:
        """``n`` samples in memory, filled as a fresh array is (zeros: pages the OS provides
        lazily, so a face buffer that no clip fills costs nothing)."""
        if self.dtype is not str and not (isinstance(self.fill, float) and np.isnan(self.fill)) and self.fill == 0:
            return np.zeros((n, *self.shape), self.dtype)
        return np.full((n, *self.shape), self.fill, self.dtype)


def _spec(name: str, shape: tuple[int, ...], dtype, fill=0) -> ArraySpec:
    small = len(shape) <= 1 and np.dtype(dtype).itemsize * int(np.prod(shape)) <= 64
    return ArraySpec(name, shape, dtype, fill, "shard" if small else "sample")


def extract_specs(frames: int, face: int, mouth: int, audio_samples: int) -> list[ArraySpec]:
    """The arrays the extract stage fills per shard (see the layout above): ``frames`` per
    clip, ``face`` and ``mouth`` crop sides, ``audio_samples`` per clip."""
    F = frames
    return [
        _spec("video/face", (F, face, face, 3), np.uint8),
        _spec("video/mouth", (F, mouth, mouth, 3), np.uint8),
        _spec("video/box", (F, 4), np.float32),
        _spec("video/landmarks", (F, 5, 2), np.float32),
        _spec("video/confidence", (F,), np.float32, np.nan),
        _spec("audio/real", (audio_samples,), np.float32),
        _spec("meta/status", (), np.int8, STATUS["unused"]),
        _spec("meta/has_video", (), bool, False),
        _spec("meta/has_audio", (), bool, False),
        _spec("meta/start_frame", (), np.int32, -1),
        _spec("meta/n_faces", (), np.int8),
        _spec("meta/source_size", (2,), np.int32),
        _spec("meta/duration", (), np.float32, np.nan),
    ]


# the per-item arrays written once when a store is created (from the manifest)
ITEM_SPECS = [ArraySpec("meta/item", (), np.int32, chunk="shard"), ArraySpec("meta/clip", (), np.int16, chunk="shard"),
              ArraySpec("meta/video_label", (), np.int8, chunk="shard"),
              ArraySpec("meta/audio_label", (), np.int8, chunk="shard")]
STRING_SPECS = [ArraySpec(f"meta/{k}", (), str, chunk="shard") for k in ("id", "method", "split", "identity", "group")]


def remove(path) -> None:
    if is_url(path):
        fs, p = _fs(str(path))
        if fs.exists(p):
            fs.rm(p, recursive=True)
    elif Path(str(path).removeprefix("file://")).exists():
        shutil.rmtree(str(path).removeprefix("file://"))


# ---- done-markers -------------------------------------------------------------------------


def marker_path(store, stage: str, output: str, shard: int) -> Path:
    """The marker folder of a local store (see :func:`marker_location` for any store)."""
    return Path(store) / "_markers" / stage / output / f"{shard:06d}"


def marker_location(store, stage: str, output: str, shard: int) -> str:
    return join(store, "_markers", stage, output, f"{shard:06d}")


def write_marker(store, stage: str, output: str, shard: int, info: dict, arrays: list[str] | None = None) -> None:
    """Atomically write a done-marker: a zarr group whose attributes hold ``info``, the
    checksums of the shard ``shard`` of every array in ``arrays`` (as written, see
    :func:`shard_checksums`) and a checksum of the marker itself (``marker_sha``)."""
    from . import faults

    faults.point(stage, "before_marker", shard)
    d = marker_location(store, stage, output, shard)
    if not is_url(d):
        Path(d).mkdir(parents=True, exist_ok=True)
    _ensure_groups(store, [stage, output])
    body = {"stage": stage, "output": output, "shard": shard, "code_version": __version__,
            "finished": time.time(), **info}
    if arrays is not None:
        body["checksums"] = shard_checksums(store, arrays, shard)
    body["marker_sha"] = marker_sha(body)
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {"avdd_marker": body}}
    _write_atomic(join(d, "zarr.json"), json.dumps(doc, default=_json_default).encode())


def marker_sha(body: dict) -> str:
    """Checksum of a marker's content (all but ``marker_sha`` itself)."""
    rest = {k: v for k, v in body.items() if k != "marker_sha"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=_json_default).encode()).hexdigest()


def shard_file(store, array: str, shard: int) -> str:
    """Where shard ``shard`` (along the sample axis) of a sharded array of a store lies (a local
    path or a URL): ``<array>/c/<shard>/0/...`` (one zarr shard spans every other axis)."""
    meta = json.loads(_read_text(join(store, array, "zarr.json")))
    enc = meta.get("chunk_key_encoding", {}).get("configuration", {})
    sep = enc.get("separator", "/")
    key = sep.join(["c", str(shard)] + ["0"] * (len(meta["shape"]) - 1))
    return join(store, array, *key.split("/"))


def shard_written(store, array: str, shard: int) -> bool:
    """Whether the file of shard ``shard`` of ``array`` exists (zarr writes none for a shard
    holding only the fill value)."""
    f = shard_file(store, array, shard)
    if is_url(f):
        fs, p = _fs(f)
        return fs.exists(p)
    return Path(f).is_file()


def shard_checksums(store, arrays: list[str], shard: int) -> dict[str, str | None]:
    """sha256 of the file of shard ``shard`` of each array; None where zarr wrote no file (a
    shard holding only the fill value)."""
    out = {}
    for name in arrays:
        try:
            data = _read_bytes(shard_file(store, name, shard))
        except FileNotFoundError:
            out[name] = None
            continue
        out[name] = hashlib.sha256(data).hexdigest()
    return out


def _ensure_groups(store, parts: list[str]) -> None:
    """Make every level between the store root and a marker a zarr group (so that the store
    stays a clean zarr hierarchy)."""
    empty = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}).encode()
    missing = []
    for k in range(len(parts), -1, -1):  # deepest first: once a level exists, so do its parents
        level = join(store, "_markers", *parts[:k])
        if exists(level):
            break
        missing.append(level)
    for level in reversed(missing):
        _write_atomic(join(level, "zarr.json"), empty)


def read_marker(store, stage: str, output: str, shard: int) -> dict | None:
    f = join(marker_location(store, stage, output, shard), "zarr.json")
    try:
        return json.loads(_read_text(f))["attributes"]["avdd_marker"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def valid_marker(store, stage: str, output: str, shard: int, expected_hash: str) -> dict | None:
    m = read_marker(store, stage, output, shard)
    return m if m is not None and m.get("config_hash") == expected_hash else None


def all_markers(store, stage: str, output: str) -> list[dict]:
    d = join(store, "_markers", stage, output)
    if is_url(d):
        fs, p = _fs(d)
        names = [n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(p, detail=False)] if fs.exists(p) else []
    else:
        names = [sub.name for sub in Path(d).iterdir() if sub.is_dir()] if Path(d).is_dir() else []
    out = []
    for name in sorted(n for n in names if n.isdigit()):
        m = read_marker(store, stage, output, int(name))
        if m is not None:
            out.append(m)
    return out


def valid_markers(store, stage: str, output: str, expected_hash: str) -> list[dict]:
    """The done-markers of (``stage``, ``output``) written with the config hash ``expected_hash``."""
    return [m for m in all_markers(store, stage, output) if m.get("config_hash") == expected_hash]


def done_mask(store, stage: str, output: str, expected_hash: str, n_samples: int, shard_size: int,
              drop_failed: bool = False) -> np.ndarray:
    """(n_samples,) bool: the samples of the shards that have a valid done-marker of (``stage``,
    ``output``); with ``drop_failed``, without the samples those markers list as failed."""
    done = np.zeros(n_samples, bool)
    for m in valid_markers(store, stage, output, expected_hash):
        done[m["shard"] * shard_size : (m["shard"] + 1) * shard_size] = True
        if drop_failed:
            for f in m["failures"]:
                if f.get("sample") is not None:
                    done[f["sample"]] = False
    return done


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"Cannot write {type(o).__name__} into a marker")


def item_row(root: zarr.Group, item: int) -> dict:
    """The manifest row (as a dict) of item ``item`` of an extracted store."""
    return json.loads(str(root["items/row"][int(item) : int(item) + 1][0]))
