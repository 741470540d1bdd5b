"""FaceForensics++ layout with the official splits.

::

    original_sequences/youtube/<c>/videos/<id>.mp4
    manipulated_sequences/<Method>/<c>/videos/<target>_<source>.mp4
    original_sequences/actors/<c>/videos/<actor>__<scene>.mp4                (DeepFakeDetection)
    manipulated_sequences/DeepFakeDetection/<c>/videos/<a>_<b>__<scene>__<code>.mp4

``<c>`` is the compression (raw, c23, c40). The official splits (``manifests/splits/ffpp``) list
[target, source] pairs; a manipulated ``A_B`` and the originals ``A`` and ``B`` belong to the
split of pair [A, B], and share the group ``pair:A_B``. DeepFakeDetection is in no official
split (``split: null``); a fake and its original actor video share a group.

FF++ videos carry no audio. ``audio_dir`` maps a video to its original audio: the file
``<audio_dir>/<target>.<wav|flac|m4a|mp3|aac>`` is the audio of ``<target>.mp4`` and of every
``<target>_<source>.mp4`` made from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MediaError
from ..manifest import Failure, RecipeResult, ManifestRow
from ..paths import inside
from ..resources import manifests_dir
from . import register
from ._common import corpus_path, finish

AUDIO_EXTS = (".wav", ".flac", ".m4a", ".mp3", ".aac")


def load_splits(splits_dir=None) -> dict[str, tuple[str, str]]:
    """Map every FF++ id (``A``, ``B``, ``A_B``, ``B_A``) to (split, pair group)."""
    splits_dir = Path(splits_dir) if splits_dir else manifests_dir() / "splits" / "ffpp"
    out: dict[str, tuple[str, str]] = {}
    for split in ("train", "val", "test"):
        path = splits_dir / f"{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"FF++ split file not found: {path}")
        for a, b in json.loads(path.read_text()):
            group = f"pair:{a}_{b}"
            for key in (a, b, f"{a}_{b}", f"{b}_{a}"):
                out[key] = (split, group)
    return out


@register("ffpp")
def prepare_ffpp(
    corpus_dir, compression: str = "c23", audio_dir=None, splits_dir=None, probe: bool = False
) -> RecipeResult:
    root = corpus_path(corpus_dir)
    splits = load_splits(splits_dir)
    audio, refused = _audio_index(Path(audio_dir)) if audio_dir else ({}, [])
    candidates: list[ManifestRow] = []
    found_any = False
    for seq_dir in sorted((root / "original_sequences").glob(f"*/{compression}/videos")):
        found_any = True
        for f in sorted(seq_dir.glob("*.mp4")):
            candidates.append(_original(root, f, seq_dir.parts[-3], compression, splits))
    for seq_dir in sorted((root / "manipulated_sequences").glob(f"*/{compression}/videos")):
        found_any = True
        method = seq_dir.parts[-3]
        for f in sorted(seq_dir.glob("*.mp4")):
            candidates.append(_manipulated(root, f, method, compression, splits))
    if not found_any:
        raise FileNotFoundError(
            f"No FaceForensics++ videos for compression {compression!r} under {root} "
            f"(expected original_sequences/*/{compression}/videos or manipulated_sequences/*/{compression}/videos)"
        )
    for row in candidates:
        src = audio.get(row.extra["target"])
        if src is not None:
            row.audio_path, row.has_audio, row.audio_label = str(src), True, "real"
        elif audio_dir:
            row.extra["audio_missing"] = True
    return finish(root, candidates, refused, "video", probe)


def _audio_index(audio_dir: Path) -> tuple[dict[str, Path], list[Failure]]:
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"FF++ audio directory not found: {audio_dir}")
    out, refused = {}, []
    for p in sorted(audio_dir.iterdir()):
        if p.suffix.lower() in AUDIO_EXTS:
            try:  # a symlink out of the audio folder is not followed
                out[p.stem] = inside(audio_dir, p.name).resolve()
            except MediaError as e:
                refused.append(Failure.from_error(e))
    return out, refused


def _original(root, f: Path, source: str, compression: str, splits) -> ManifestRow:
    vid = f.stem
    actor = vid.split("__")[0] if source == "actors" else None
    split, group = splits.get(vid, (None, f"dfd:{vid}" if actor else vid))
    return ManifestRow(
        id=f"original/{vid}",
        path=f.relative_to(root).as_posix(),
        video_label="real",
        method=None,
        group=group,
        identity=actor or vid,
        split=None if actor else split,
        has_audio=False,
        extra={"target": vid, "compression": compression, "source_sequences": source},
    )


def _manipulated(root, f: Path, method: str, compression: str, splits) -> ManifestRow:
    stem = f.stem
    if "__" in stem:  # DeepFakeDetection: <a>_<b>__<scene>__<code>
        actors, scene = stem.split("__")[0], stem.split("__")[1]
        target_actor, source_actor = (actors.split("_") + [None])[:2]
        target = f"{target_actor}__{scene}"
        split, group, identity = None, f"dfd:{target}", target_actor
        extra = {"target": target, "source": source_actor}
    else:
        target, _, source = stem.partition("_")
        split, group = splits.get(stem, (None, target))  # unlisted: grouped with its original
        identity = target
        extra = {"target": target, "source": source}
    return ManifestRow(
        id=f"{method}/{stem}",
        path=f.relative_to(root).as_posix(),
        video_label="fake",
        method=method,
        source_id=target,
        group=group,
        identity=identity,
        split=split,
        has_audio=False,
        extra={**extra, "compression": compression},
    )
