"""Helpers shared by the recipes: checking listed files and probing them."""

from __future__ import annotations

import contextlib
import contextvars
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import MediaError
from ..manifest import Failure, ManifestRow, RecipeResult
from ..media import in_process_audio, probe, sniff_kind
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


# Where probe_rows probes: None (threads in this process) or a Placement (a Dask cluster),
# set around a recipe by :func:`probing_on` (``avdd-data manifest --workers/--scheduler``).
_PLACEMENT: contextvars.ContextVar = contextvars.ContextVar("avdd_probe_placement", default=None)
PROBE_CHUNK = 256  # files probed per Dask task


@contextlib.contextmanager
def probing_on(where):
    """Probe the files of the recipes run in this block on ``where`` (a
    :class:`~pipeline.cluster.Placement`: a local cluster, a scheduler, a batch cluster)."""
    token = _PLACEMENT.set(where)
    try:
        yield
    finally:
        _PLACEMENT.reset(token)


def probe_files(root: str, paths: list[str], threads: int = 4) -> list[tuple]:
    """``(info dict, size in bytes)`` or ``("error", reason, detail)`` per file under ``root``:
    one Dask task's share of the probing (plain tuples: they travel between processes)."""

    def one(rel: str):
        path = Path(root) / rel
        try:
            return probe(path).to_dict(), path.stat().st_size
        except MediaError as e:
            return "error", e.reason, e.detail

    # files libsndfile reads are probed in-process in microseconds: inline (a thread pool only
    # adds its overhead and GIL contention); the rest wait on ffmpeg subprocesses, in threads
    out: list = [None] * len(paths)
    slow = []
    for k, rel in enumerate(paths):
        if in_process_audio(rel):
            out[k] = one(rel)
        else:
            slow.append(k)
    if slow:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for k, res in zip(slow, pool.map(one, [paths[k] for k in slow])):
                out[k] = res
    return out


def _probe_on_cluster(where, root: Path, rows: list[ManifestRow]) -> list:
    from ..cluster import dask_client

    chunks = [[r.path for r in rows[i : i + PROBE_CHUNK]] for i in range(0, len(rows), PROBE_CHUNK)]
    if not chunks:
        return []
    ctx = contextlib.nullcontext(where.client) if where.client is not None else dask_client(
        where.scheduler, where.local_workers, cluster=where.cluster, cluster_config=where.cluster_config)
    with ctx as client:
        futures = client.map(probe_files, [str(root)] * len(chunks), chunks, pure=False)
        return [one for fut in futures for one in fut.result()]


def probe_rows(root: Path, rows: list[ManifestRow], workers: int = 8) -> tuple[list[ManifestRow], list[Failure]]:
    """Probe every row's file (in ``workers`` threads, or on the Dask cluster of
    :func:`probing_on`): set ``media`` and ``has_audio`` from the streams found and record
    duration, frame size, fps, audio rate and channels and the file's size in bytes in
    ``extra`` (extract reads them instead of probing again). Rows whose file cannot be read
    become failures."""
    where = _PLACEMENT.get()
    if where is not None:
        results = _probe_on_cluster(where, root, rows)
    else:
        results = probe_files(str(root), [r.path for r in rows], threads=workers)
    kept, failures = [], []
    for row, res in zip(rows, results):
        if res[0] == "error":
            failures.append(Failure.from_error(MediaError(root / row.path, res[1], res[2]), id=row.id, root=root))
            continue
        info, size = res
        row.media = "video" if info["width"] is not None else "audio"
        if row.media == "audio":
            row.video_label = None
        if row.audio_path is None:
            row.has_audio = info["audio_sample_rate"] is not None
            if not row.has_audio:
                row.audio_label = None
        # what extract would probe again (media.recorded_info), with the size it was true for
        row.extra.update({k: v for k, v in info.items() if v is not None} | {"bytes": size})
        kept.append(row)
    return kept, failures
