"""Raw media to shards for evaluation and inference: the one entry point of the detector into
the pipeline, called in-process (``avdd-detect``, ``avdd-eval --manifest``).

:func:`prepare_files` indexes files with the folder recipe, extracts them exactly as for training
and builds unlabelled shards of their own pairs, all in the ``test`` split;
:func:`prepare_manifest` does the same for any manifest, keeping its labels. The policy of how
(which pairs, splits, suffixes, whether faces are searched) lives here, not in the detector;
the detector reads the shards (docs/shards-format.md). Per-file failures are returned, never
raised; an error of the stages themselves raises with its message and cause.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .manifest import RecipeResult, write_manifest
from .media import MEDIA_SUFFIXES


class PrepareError(RuntimeError):
    """A stage could not write its output (the message names it; the cause is chained)."""


@dataclass
class PrepareConfig:
    """How raw media become shards for a detector.

    ``modalities``: what the detector will read ("video", "mouth", "audio"); without "video" or
    "mouth", files are taken as audio only and no face is searched (much faster). ``workers``: local Dask worker
    processes (0: in this process; None: one per core); or ``scheduler`` (a running Dask
    cluster, ``tcp://HOST:PORT``), or ``cluster`` (slurm, pbs, sge, lsf) with the YAML
    ``cluster_config`` (see :mod:`pipeline.jobqueue`). Remote workers must see the files and
    the work directory at the same paths."""

    clips_per_item: int = 4  # clips per video; an audio-only file gives every clip (up to clips_per_audio)
    # the clip grid of the detector's training data (its checkpoint's rates); None: the extract defaults
    fps: float | None = None
    frames_per_clip: int | None = None
    clips_per_audio: int = 64
    modalities: tuple[str, ...] = ("video", "audio")
    workers: int | None = 0
    progress: bool = False
    scheduler: str | None = None
    cluster: str | None = None
    cluster_config: str | None = None

    def placement(self):
        from .cluster import Placement
        from .jobqueue import JobQueueConfig

        if self.scheduler and self.cluster:
            raise ValueError("give a scheduler or a batch cluster, not both")
        config = JobQueueConfig.from_yaml(self.cluster_config) if self.cluster_config else None
        return Placement(scheduler=self.scheduler, workers=self.workers, cluster=self.cluster, cluster_config=config)


@dataclass
class PrepareResult:
    """``shards``: the shards (None when no file was usable); ``ids``: item id -> file (for
    :func:`prepare_files`); ``failures``: file (or item id) -> one-line reason, for the files
    that could not be used at all; ``extract``: the extract stage's summary (every failure)."""

    shards: Path | None
    ids: dict[str, Path] = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    extract: dict = field(default_factory=dict)

    def excluded(self) -> list[dict]:
        """The items of which no clip could be extracted: ``{"id", "reason", "detail"}`` each
        (``reason`` as the extract stage records it, e.g. ``outside_root``, ``too_short``)."""
        return [{"id": f["id"], "reason": f["reason"], "detail": (f.get("detail") or "").strip()}
                for f in self.extract.get("failures", []) if f.get("clip") is None]


def collect_files(paths) -> list[Path]:
    """The media files named, and those under the folders named (sorted, hidden files skipped)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in MEDIA_SUFFIXES and f.is_file()
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
        else:
            files.append(p)
    return files


def reason(fail: dict) -> str:
    """A failure record (``reason``, ``detail``) as one line for the user."""
    detail = (fail.get("detail") or "").strip().splitlines()
    return fail["reason"].replace("_", " ") + (f": {detail[0]}" if detail else "")


def prepare_manifest(manifest, work_dir, root=None, config: PrepareConfig | None = None,
                     keep_unlabelled: bool = False) -> PrepareResult:
    """Extract every item of ``manifest`` (up to ``clips_per_item`` clips each) into
    ``work_dir/store.zarr`` and build ``work_dir/shards.zarr`` of its own pairs, all in the
    ``test`` split. Existing work in ``work_dir`` is reused (the stages skip done shards)."""
    from .extract import ExtractConfig, extract
    from .pairs import PairConfig
    from .shards import ShardsConfig, build_shards
    from .store import StoreMismatch

    cfg = config or PrepareConfig()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    store, shards = work / "store.zarr", work / "shards.zarr"
    try:
        grid = {k: v for k, v in (("fps", cfg.fps), ("frames_per_clip", cfg.frames_per_clip)) if v is not None}
        extract_cfg = ExtractConfig(clips_per_video=cfg.clips_per_item, clips_per_audio=cfg.clips_per_audio, **grid)
        summary = extract(manifest, store, root=root, config=extract_cfg,
                          where=cfg.placement(), progress=cfg.progress)
    except StoreMismatch as e:
        raise PrepareError(f"{store}: {e}") from e
    if summary.errors:
        shard, err = sorted(summary.errors.items())[0]
        raise PrepareError(f"extract: shard {shard} of {store} not written: {err.strip().splitlines()[-1]}")
    shards_cfg = ShardsConfig(pairs=PairConfig(pairs=("own",), keep_unlabelled=keep_unlabelled),
                              split_ratios={"train": 0.0, "val": 0.0, "test": 1.0}, keep_given_splits=False,
                              cache_mel=False)
    try:
        built = build_shards(store, shards, shards_cfg, where=cfg.placement(), progress=cfg.progress)
    except StoreMismatch as e:
        raise PrepareError(f"{shards}: {e}") from e
    if built["errors"]:
        block, err = sorted(built["errors"].items())[0]
        raise PrepareError(f"build-shards: block {block} of {shards} not written: {err.strip().splitlines()[-1]}")
    return PrepareResult(shards=shards, extract=summary.to_dict())


def prepare_files(files, work_dir, config: PrepareConfig | None = None) -> PrepareResult:
    """Shards of raw files for inference: the files are linked into a corpus under ``work_dir``
    (one id per file), indexed with the folder recipe, extracted and built unlabelled.

    Returns the shards (None when no file was usable), id -> file, and file -> reason for the
    files that could not be used at all (missing, unreadable, nothing extracted)."""
    from .recipes import prepare

    cfg = config or PrepareConfig()
    work = Path(work_dir)
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    result = PrepareResult(shards=None)
    for k, f in enumerate(map(Path, files)):
        if not f.exists():
            result.failures[f] = "file does not exist"
            continue
        link = corpus / f"{k:05d}{f.suffix.lower() or '.bin'}"
        if not link.exists():
            link.symlink_to(f.resolve())
        result.ids[link.stem] = f
    if not result.ids:
        return result
    # the corpus links to the files given: their folders are the manifest's allowed roots (any
    # other path leading out of the corpus is still refused, see pipeline/paths.py)
    allowed = sorted({str(f.resolve().parent) for f in result.ids.values()})
    indexed = prepare("folder", corpus, allowed_roots=allowed)
    for fail in indexed.failures:
        f = result.ids.pop(Path(fail.path).stem, None)
        if f is not None:
            result.failures[f] = reason(dataclasses.asdict(fail))
    if not result.ids:
        return result
    manifest = work / "files.jsonl"
    write_manifest(_for_modalities(indexed, cfg.modalities), manifest, "folder", corpus,
                   options={"allowed_roots": allowed})
    prepared = prepare_manifest(manifest, work / "extract", corpus, cfg, keep_unlabelled=True)
    result.shards, result.extract = prepared.shards, prepared.extract
    for fail in prepared.extract.get("failures", []):
        f = result.ids.get(fail["id"])
        if f is not None and fail["clip"] is None:  # the whole item failed
            result.failures[f] = reason(fail)
    return result


def _for_modalities(indexed: RecipeResult, modalities) -> RecipeResult:
    """Without "video" or "mouth": every item as audio only (no face search)."""
    if not {"video", "mouth"} & set(modalities):
        for row in indexed.rows:
            row.media = "audio"
    return indexed
