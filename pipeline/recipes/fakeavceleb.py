"""FakeAVCeleb (v1.2) from its ``meta_data.csv``.

The CSV header reads ``source,target1,target2,method,category,type,race,gender,path,`` but each
row carries ten cells: the eight named ones, then the file name, then the directory
(``FakeAVCeleb/<type>/<race>/<gender>/<source>``). The directory is resolved against the corpus
root as written, or with its first component replaced by the folder that holds ``meta_data.csv``
(the release folder, which may be named ``FakeAVCeleb_v1.2/`` on disk), so the corpus may be the
release folder or the folder that holds it.

Categories: A RealVideo-RealAudio, B RealVideo-FakeAudio, C FakeVideo-RealAudio,
D FakeVideo-FakeAudio. Identity and group are the ``source`` identity, so all videos of one
person (and every fake made from them) stay in one split. FakeAVCeleb has no official split.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..manifest import Failure, ManifestRow, RecipeResult
from ..media import MEDIA_SUFFIXES
from . import register
from ._common import corpus_path, finish

TYPES = {
    "RealVideo-RealAudio": ("real", "real"),
    "RealVideo-FakeAudio": ("real", "fake"),
    "FakeVideo-RealAudio": ("fake", "real"),
    "FakeVideo-FakeAudio": ("fake", "fake"),
}
CATEGORIES = {"A": "RealVideo-RealAudio", "B": "RealVideo-FakeAudio", "C": "FakeVideo-RealAudio", "D": "FakeVideo-FakeAudio"}
FIELDS = ("source", "target1", "target2", "method", "category", "type", "race", "gender")


@register("fakeavceleb")
def prepare_fakeavceleb(corpus_dir, metadata=None, probe: bool = False) -> RecipeResult:
    root = corpus_path(corpus_dir)
    meta_path = Path(metadata) if metadata else _find_metadata(root)
    try:  # the folder holding meta_data.csv is the release folder, whatever it is named
        base = meta_path.resolve().parent.relative_to(root)
    except ValueError:
        base = Path()
    candidates, failures = [], []
    with open(meta_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader, None)
        for n, cells in enumerate(reader, 2):
            if not any(c.strip() for c in cells):
                continue
            row = _row(root, base, cells, f"{meta_path.name}:{n}")
            (failures if isinstance(row, Failure) else candidates).append(row)
    return finish(root, candidates, failures, "video", probe)


def _find_metadata(root: Path) -> Path:
    for cand in [root / "meta_data.csv", *sorted(root.glob("*/meta_data.csv")), *sorted(root.rglob("meta_data.csv"))]:
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"No FakeAVCeleb meta_data.csv found under {root}")


def _row(root: Path, base: Path, cells: list[str], where: str) -> ManifestRow | Failure:
    cells = [c.strip() for c in cells]
    named = dict(zip(FIELDS, cells[:8]))
    rest = [c for c in cells[8:] if c]
    name = next((c for c in rest if Path(c).suffix.lower() in MEDIA_SUFFIXES), None)
    folder = next((c for c in rest if "/" in c), None)
    mtype = named.get("type") or CATEGORIES.get(named.get("category", ""), "")
    if name is None or folder is None or mtype not in TYPES:
        return Failure(path=where, reason="invalid_row", detail=f"cannot read file, folder and type from {cells}")
    rel = _resolve(root, base, folder, name)
    video_label, audio_label = TYPES[mtype]
    method = named.get("method") or "unknown"
    source = named["source"]
    fake = "fake" in (video_label, audio_label)
    target1 = named.get("target1") if named.get("target1") not in ("", "-") else None
    return ManifestRow(
        id=f"{mtype}/{named.get('race')}/{named.get('gender')}/{source}/{Path(name).stem}",
        path=rel,
        media="video",
        video_label=video_label,
        audio_label=audio_label,
        method=method if fake else None,
        source_id=f"{source}/{Path(name).stem.split('_')[0]}" if fake else None,
        group=source,
        identity=source,
        split=None,
        has_audio=True,
        extra={k: named.get(k) for k in ("category", "race", "gender", "target2")} | {"type": mtype, "target1": target1},
    )


def _resolve(root: Path, base: Path, folder: str, name: str) -> str:
    """``folder/name`` as written, else with ``folder``'s first component replaced by ``base``
    (the folder of meta_data.csv, relative to the root); the latter when neither exists."""
    parts = Path(folder).parts
    options = [Path(folder) / name, base / Path(*parts[1:]) / name]  # folder has a '/' (see _row)
    for rel in options:
        if (root / rel).exists():
            return rel.as_posix()
    return options[-1].as_posix()
