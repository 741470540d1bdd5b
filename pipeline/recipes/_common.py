"""Helpers shared by the recipes: checking listed files and probing them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import MediaError
from ..manifest import Failure, ManifestRow, RecipeResult
from ..media import probe, sniff_kind
from ..paths import inside


def corpus_path(corpus_dir) -> Path:
    root = Path(corpus_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Corpus directory not found: {root}")
    return root


def check_media(root: Path, rel: str, expect: str, allowed=()) -> MediaError | None:
    """None when ``root/rel`` exists, is readable and looks like ``expect`` ("video", "audio"
    or "media"); else the MediaError saying what is wrong (``outside_root``, before opening
    it, when the path or its symlinks lead out of ``root`` and the ``allowed`` folders)."""
    try:
        path = inside(root, rel, allowed)
        kind = sniff_kind(path)
    except MediaError as e:
        return e
    if kind is None:
        return MediaError(path, "wrong_kind", "not a known audio or video container")
    # An mp4/mkv-family container may hold audio only, so "audio" accepts any media kind.
    if expect == "video" and kind != "video":
        return MediaError(path, "wrong_kind", f"expected {expect}, found {kind}")
    return None


def keep_checked(root: Path, candidates, expect: str, allowed=()) -> tuple[list[ManifestRow], list[Failure]]:
    """Split candidate rows into those whose files pass :func:`check_media` and failures."""
    rows, failures = [], []
    for row in candidates:
        err = check_media(root, row.path, expect if expect != "row" else row.media, allowed)
        if err is None:
            rows.append(row)
        else:
            failures.append(Failure.from_error(err, id=row.id, root=root))
    return rows, failures


def finish(root: Path, candidates: list[ManifestRow], failures: list[Failure], expect: str,
           probe: bool = False, workers: int = 8, allowed=()) -> RecipeResult:
    """The common end of a recipe: keep the candidates whose files pass :func:`check_media`
    (``expect`` as there, or "row" for each row's own media kind), probe them if asked, and
    return them with every failure."""
    rows, bad = keep_checked(root, candidates, expect, allowed)
    failures = failures + bad
    if probe:
        rows, bad = probe_rows(root, rows, workers=workers)
        failures += bad
    return RecipeResult(rows, failures)


def probe_rows(root: Path, rows: list[ManifestRow], workers: int = 8) -> tuple[list[ManifestRow], list[Failure]]:
    """Probe every row's file (in parallel threads): set ``media`` and ``has_audio`` from the
    streams found and record duration, frame size, fps, audio rate and channels and the file's
    size in bytes in ``extra`` (extract reads them instead of probing again).
    Rows whose file ffmpeg cannot read become failures."""

    def one(row: ManifestRow):
        try:
            info = probe(root / row.path)
            return row, (info, (root / row.path).stat().st_size)
        except MediaError as e:
            return row, e

    kept, failures = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for row, res in pool.map(one, rows):
            if isinstance(res, MediaError):
                failures.append(Failure.from_error(res, id=row.id, root=root))
                continue
            res, size = res
            row.media = "video" if res.video is not None else "audio"
            if row.media == "audio":
                row.video_label = None
            if row.audio_path is None:
                row.has_audio = res.audio is not None
                if not row.has_audio:
                    row.audio_label = None
            # what extract would probe again (media.recorded_info), with the size it was true for
            row.extra.update({k: v for k, v in res.to_dict().items() if v is not None} | {"bytes": size})
            kept.append(row)
    return kept, failures
