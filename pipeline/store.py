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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
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


def open_root(path, mode: str = "r") -> zarr.Group:
    path = Path(path)
    if mode == "r" and not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"Not an avdd store (no zarr.json): {path}")
    return zarr.open_group(str(path), mode=mode)


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


def remove(path) -> None:
    if Path(path).exists():
        shutil.rmtree(path)


# ---- done-markers -------------------------------------------------------------------------


def marker_path(store, stage: str, output: str, shard: int) -> Path:
    return Path(store) / "_markers" / stage / output / f"{shard:06d}"


def write_marker(store, stage: str, output: str, shard: int, info: dict, arrays: list[str] | None = None) -> None:
    """Atomically write a done-marker: a zarr group whose attributes hold ``info``, the
    checksums of the shard ``shard`` of every array in ``arrays`` (as written, see
    :func:`shard_checksums`) and a checksum of the marker itself (``marker_sha``)."""
    from . import faults

    faults.point(stage, "before_marker", shard)
    d = marker_path(store, stage, output, shard)
    d.mkdir(parents=True, exist_ok=True)
    _ensure_groups(Path(store), d)
    body = {"stage": stage, "output": output, "shard": shard, "code_version": __version__,
            "finished": time.time(), **info}
    if arrays is not None:
        body["checksums"] = shard_checksums(store, arrays, shard)
    body["marker_sha"] = marker_sha(body)
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {"avdd_marker": body}}
    tmp = d / f".zarr.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(doc, default=_json_default))
    os.replace(tmp, d / "zarr.json")


def marker_sha(body: dict) -> str:
    """Checksum of a marker's content (all but ``marker_sha`` itself)."""
    rest = {k: v for k, v in body.items() if k != "marker_sha"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=_json_default).encode()).hexdigest()


def shard_file(store, array: str, shard: int) -> Path:
    """The file holding shard ``shard`` (along the sample axis) of a sharded array of a local
    store: ``<array>/c/<shard>/0/...`` (one zarr shard spans every other axis)."""
    meta = json.loads((Path(store) / array / "zarr.json").read_text())
    enc = meta.get("chunk_key_encoding", {}).get("configuration", {})
    sep = enc.get("separator", "/")
    key = sep.join(["c", str(shard)] + ["0"] * (len(meta["shape"]) - 1))
    return Path(store) / array / key


def shard_checksums(store, arrays: list[str], shard: int) -> dict[str, str | None]:
    """sha256 of the file of shard ``shard`` of each array; None where zarr wrote no file (a
    shard holding only the fill value)."""
    out = {}
    for name in arrays:
        f = shard_file(store, name, shard)
        out[name] = hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else None
    return out


def _ensure_groups(store: Path, d: Path) -> None:
    """Make every folder between the store root and a marker a zarr group (so that the store
    stays a clean zarr hierarchy)."""
    p = d.parent
    while p != store:
        meta = p / "zarr.json"
        if not meta.exists():
            tmp = p / f".zarr.json.tmp-{os.getpid()}"
            tmp.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
            os.replace(tmp, meta)
        p = p.parent


def read_marker(store, stage: str, output: str, shard: int) -> dict | None:
    f = marker_path(store, stage, output, shard) / "zarr.json"
    try:
        return json.loads(f.read_text())["attributes"]["avdd_marker"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def valid_marker(store, stage: str, output: str, shard: int, expected_hash: str) -> dict | None:
    m = read_marker(store, stage, output, shard)
    return m if m is not None and m.get("config_hash") == expected_hash else None


def all_markers(store, stage: str, output: str) -> list[dict]:
    d = Path(store) / "_markers" / stage / output
    if not d.is_dir():
        return []
    out = []
    for sub in sorted(d.iterdir()):
        if sub.is_dir():
            m = read_marker(store, stage, output, int(sub.name))
            if m is not None:
                out.append(m)
    return out


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"Cannot write {type(o).__name__} into a marker")


def item_row(root: zarr.Group, item: int) -> dict:
    """The manifest row (as a dict) of item ``item`` of an extracted store."""
    return json.loads(str(root["items/row"][int(item) : int(item) + 1][0]))
