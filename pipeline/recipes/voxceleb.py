"""VoxCeleb1/2 folder layout: ``.../id<speaker>/<video id>/<clip>.(mp4|m4a|wav)``.

All items are authentic; identity and group are the speaker id, so a speaker never spans
two splits. The split follows the release's folders: ``dev`` -> train, ``test`` -> test,
otherwise none. When a clip exists both as video (mp4) and audio (m4a/wav), the video is kept.
"""

from __future__ import annotations

import re

from ..manifest import ManifestRow, RecipeResult
from ..media import AUDIO_SUFFIXES
from . import register
from ._common import corpus_path, finish

_SPEAKER = re.compile(r"^id\d+$")
_SPLIT_DIRS = {"dev": "train", "train": "train", "test": "test"}


@register("voxceleb")
def prepare_voxceleb(corpus_dir, probe: bool = False) -> RecipeResult:
    root = corpus_path(corpus_dir)
    by_id: dict[str, ManifestRow] = {}
    for f in sorted(root.rglob("*")):
        suffix = f.suffix.lower()
        if suffix not in {".mp4", ".m4a", ".wav"} or not f.is_file():
            continue
        rel = f.relative_to(root)
        parts = rel.parts
        if len(parts) < 3 or not _SPEAKER.match(parts[-3]):
            continue
        speaker, video, clip = parts[-3], parts[-2], f.stem
        rid = f"{speaker}/{video}/{clip}"
        media = "audio" if suffix in AUDIO_SUFFIXES else "video"
        if rid in by_id and by_id[rid].media == "video":
            continue
        split = next((_SPLIT_DIRS[p] for p in parts[:-3] if p in _SPLIT_DIRS), None)
        by_id[rid] = ManifestRow(
            id=rid,
            path=rel.as_posix(),
            media=media,
            video_label="real" if media == "video" else None,
            audio_label="real",
            method=None,
            group=speaker,
            identity=speaker,
            split=split,
            has_audio=True,
            extra={"video": video, "clip": clip},
        )
    if not by_id:
        raise FileNotFoundError(f"No VoxCeleb clips (id*/<video>/<clip>.mp4|m4a|wav) found under {root}")
    return finish(root, list(by_id.values()), [], "row", probe)
