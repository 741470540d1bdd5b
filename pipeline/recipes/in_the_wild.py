"""In-the-Wild audio deepfakes (Mueller et al., Interspeech 2022) from ``meta.csv``.

``meta.csv`` has the columns ``file,speaker,label`` with label ``bona-fide`` or ``spoof``;
the wav files sit beside it. The set is used for testing only: no split is assigned.
Identity and group are the speaker. The TTS systems are not named (``method: unknown``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..manifest import Failure, ManifestRow, RecipeResult
from . import register
from ._common import corpus_path, finish

_LABELS = {"bona-fide": "real", "bonafide": "real", "spoof": "fake"}


@register("in_the_wild")
def prepare_in_the_wild(corpus_dir, probe: bool = False) -> RecipeResult:
    root = corpus_path(corpus_dir)
    meta = next((p for p in [root / "meta.csv", *sorted(root.rglob("meta.csv"))] if p.is_file()), None)
    if meta is None:
        raise FileNotFoundError(f"No In-the-Wild meta.csv found under {root}")
    base = meta.parent
    candidates, failures = [], []
    with open(meta, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file", "speaker", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{meta}: missing column(s) {sorted(missing)}; found {reader.fieldnames}")
        for n, rec in enumerate(reader, 2):
            label = _LABELS.get((rec.get("label") or "").strip().lower())
            if label is None or not rec.get("file"):
                failures.append(Failure(path=f"meta.csv:{n}", reason="invalid_row",
                                        detail=f"label {rec.get('label')!r} is not bona-fide/spoof"))
                continue
            rel = (base / rec["file"].strip()).relative_to(root).as_posix()
            speaker = (rec.get("speaker") or "").strip() or None
            candidates.append(ManifestRow(
                id=Path(rec["file"].strip()).stem,
                path=rel,
                media="audio",
                audio_label=label,
                method="unknown" if label == "fake" else None,
                group=speaker or Path(rel).stem,
                identity=speaker,
                split=None,
                has_audio=True,
            ))
    return finish(root, candidates, failures, "audio", probe)
