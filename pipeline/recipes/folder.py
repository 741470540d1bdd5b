"""Any folder of media.

Every audio or video file under the folder (by extension, hidden folders skipped) becomes an
item; ffmpeg probes each one to tell video from audio-only files and to see whether there is
an audio track. Labels come from, in this order:

1. a CSV (``labels``) with the column ``path`` (relative to the folder) and ``label`` or
   ``video_label``/``audio_label``, optionally ``method``, ``identity``, ``group``, ``split``;
   when a CSV is given, only the files it lists are items;
2. a path component named ``real`` or ``fake`` (case-insensitive);
3. ``default_label`` (``real``, ``fake`` or None for unknown).

A single ``label`` of a video says whether the item is fake but not which track is: ``real``
sets both labels, ``fake`` sets the video label and leaves the audio label unknown.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import MediaError
from ..manifest import Failure, ManifestRow, RecipeResult
from ..media import MEDIA_SUFFIXES
from . import register
from ._common import corpus_path, finish

_LABEL_WORDS = {"real": "real", "fake": "fake", "bona-fide": "real", "bonafide": "real", "spoof": "fake",
                "0": "real", "1": "fake", "": None, "none": None, "unknown": None}


@register("folder")
def prepare_folder(corpus_dir, labels=None, default_label: str | None = None, workers: int = 8,
                   allowed_roots=None) -> RecipeResult:
    root = corpus_path(corpus_dir)
    if default_label not in (None, "real", "fake"):
        raise ValueError(f"default_label must be 'real', 'fake' or None, not {default_label!r}")
    failures: list[Failure] = []
    if labels:
        candidates, failures = _rows_from_csv(root, Path(labels))
    else:
        candidates = [_row(root, f, _label_from_path(root, f) or default_label) for f in _media_files(root)]
    if not candidates and not failures:
        raise FileNotFoundError(f"No media files ({', '.join(sorted(MEDIA_SUFFIXES))}) found under {root}")
    _disambiguate_ids(candidates)
    result = finish(root, candidates, failures, "media", probe=True, workers=workers, allowed=tuple(allowed_roots or ()))
    for row in result.rows:
        _settle_labels(row)
    return result


def _disambiguate_ids(rows: list[ManifestRow]) -> None:
    """Ids are paths without the extension; files that share one (clip.mp4, clip.wav) keep
    their extension instead."""
    seen: dict[str, int] = {}
    for r in rows:
        seen[r.id] = seen.get(r.id, 0) + 1
    for r in rows:
        if seen[r.id] > 1:
            if r.group == r.id:
                r.group = r.path
            r.id = r.path


def _media_files(root: Path) -> list[Path]:
    return sorted(
        f for f in root.rglob("*")
        if f.suffix.lower() in MEDIA_SUFFIXES and f.is_file()
        and not any(p.startswith(".") for p in f.relative_to(root).parts)
    )


def _label_from_path(root: Path, f: Path) -> str | None:
    for part in f.relative_to(root).parts[:-1]:
        if part.lower() in ("real", "fake"):
            return part.lower()
    return None


def _row(root: Path, f: Path, label: str | None, **fields) -> ManifestRow:
    rel = f.relative_to(root).as_posix()
    rid = rel.rsplit(".", 1)[0]
    row = ManifestRow(id=rid, path=rel, video_label=label, audio_label=label, **fields)
    row.extra["label"] = label
    return row


def _settle_labels(row: ManifestRow) -> None:
    """Apply the single-label rule once probing has said video or audio."""
    label = row.extra.pop("label", None)
    if row.extra.pop("explicit_labels", False):
        if "fake" in (row.video_label, row.audio_label) and row.method is None:
            row.method = "unknown"
        return
    if row.media == "audio":
        row.video_label, row.audio_label = None, label
    else:
        row.video_label = label
        row.audio_label = ("real" if label == "real" else None) if row.has_audio else None
    if label == "fake" and row.method is None:
        row.method = "unknown"


def _word(value: str | None, where: str) -> str | None:
    key = (value or "").strip().lower()
    if key not in _LABEL_WORDS:
        raise ValueError(f"{where}: label {value!r} is not one of real/fake/bona-fide/spoof/0/1")
    return _LABEL_WORDS[key]


def _rows_from_csv(root: Path, path: Path) -> tuple[list[ManifestRow], list[Failure]]:
    if not path.is_file():
        raise FileNotFoundError(f"Labels CSV not found: {path}")
    rows, failures = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "path" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: needs a 'path' column; found {reader.fieldnames}")
        for n, rec in enumerate(reader, 2):
            where = f"{path.name}:{n}"
            try:
                label = _word(rec.get("label"), where)
                vlab = _word(rec["video_label"], where) if "video_label" in rec else None
                alab = _word(rec["audio_label"], where) if "audio_label" in rec else None
            except ValueError as e:
                failures.append(Failure(path=where, reason="invalid_row", detail=str(e)))
                continue
            rel = (rec.get("path") or "").strip()
            if not rel:
                failures.append(Failure(path=where, reason="invalid_row", detail="empty 'path' cell"))
                continue
            f_path = Path(os.path.normpath(root / rel))  # lexical; symlinks are checked with the files
            if not f_path.is_relative_to(root):
                failures.append(Failure(path=where, reason="outside_root", detail=f"path {rel!r} is outside {root}"))
                continue
            split = (rec.get("split") or "").strip() or None
            if split not in (None, "train", "val", "test"):
                failures.append(Failure(path=where, reason="invalid_row", detail=f"split {split!r} is not train/val/test"))
                continue
            if not f_path.exists():
                failures.append(Failure.from_error(MediaError(f_path, "missing"), root=root))
                continue
            opt = {k: (rec.get(k) or "").strip() or None for k in ("method", "identity", "split")}
            row = _row(root, f_path, label, method=opt["method"], identity=opt["identity"], split=opt["split"])
            if rec.get("group"):
                row.group = rec["group"].strip()
            if "video_label" in rec or "audio_label" in rec:
                row.video_label, row.audio_label = vlab, alab
                row.extra["explicit_labels"] = True
            rows.append(row)
    return rows, failures
