"""DFDC (Deepfake Detection Challenge) training-set layout.

Every folder under the corpus that holds a ``metadata.json`` (``dfdc_train_part_*/`` and any
folder in the same format) is read. ``metadata.json`` maps a file name to
``{"label": "REAL"|"FAKE", "split": ..., "original": <file of the original> }``.

- A fake and its original share a ``group`` (the original's id), so no split separates them.
- DFDC labels only the video. Its audio is taken as authentic (``audio_label: real``), as in the
  copy-synthesis setting this project reproduces; ``extra.audio_label_assumed`` says so.
- DFDC names no manipulation method (``method: unknown`` for fakes) and no identity.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MediaError
from ..manifest import Failure, ManifestRow, RecipeResult
from . import register
from ._common import corpus_path, finish

_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@register("dfdc")
def prepare_dfdc(corpus_dir, probe: bool = False) -> RecipeResult:
    root = corpus_path(corpus_dir)
    candidates: list[ManifestRow] = []
    failures: list[Failure] = []
    metas = sorted(root.rglob("metadata.json"))
    if not metas:
        raise FileNotFoundError(f"No DFDC metadata.json found under {root}")
    for meta_path in metas:
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("top level is not an object")
        except (OSError, ValueError) as e:
            failures.append(Failure.from_error(MediaError(meta_path, "unreadable", str(e)), root=root))
            continue
        folder = meta_path.parent
        for name, entry in sorted(meta.items()):
            row = _row(root, folder, name, entry)
            if isinstance(row, Failure):
                failures.append(row)
            else:
                candidates.append(row)
    return finish(root, candidates, failures, "video", probe)


def _row(root: Path, folder: Path, name: str, entry) -> ManifestRow | Failure:
    rel = (folder / name).relative_to(root).as_posix()
    label = str(entry.get("label", "")).upper() if isinstance(entry, dict) else ""
    if label not in ("REAL", "FAKE"):
        return Failure(path=rel, reason="invalid_row", detail=f"metadata label {label or None!r} is not REAL/FAKE")
    vid = Path(name).stem
    original = entry.get("original")
    original_id = Path(original).stem if label == "FAKE" and original else None
    return ManifestRow(
        id=vid,
        path=rel,
        media="video",
        video_label="fake" if label == "FAKE" else "real",
        audio_label="real",
        method="unknown" if label == "FAKE" else None,
        source_id=original_id,
        group=original_id or vid,
        identity=None,
        split=_SPLITS.get(str(entry.get("split", "")).lower()),
        has_audio=True,
        extra={"part": folder.name, "audio_label_assumed": True},
    )
