"""Media to shards for evaluation and inference, through the ``avdd-data`` command line.

The detector never imports the data pipeline: to evaluate on a manifest or to score raw files it
runs ``python -m pipeline.cli`` (the same program as ``avdd-data``) in a subprocess, which
extracts faces and audio exactly as for training, and reads the shards it writes. The contract
is the command line's JSON output and the shards format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MEDIA_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv",
                  ".wav", ".flac", ".m4a", ".mp3", ".ogg", ".opus", ".aac"}


class PipelineError(RuntimeError):
    """``avdd-data`` failed; the message holds its error output."""


def avdd_data(*args: str) -> dict:
    """Run ``avdd-data ARGS --json`` and return its JSON summary."""
    cmd = [sys.executable, "-m", "pipeline.cli", *map(str, args), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        err = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise PipelineError(f"avdd-data {args[0]} failed: {err[-1] if err else proc.returncode}")
    out = proc.stdout.strip()
    start = out.find("{")
    try:
        return json.loads(out[start:]) if start >= 0 else {}
    except json.JSONDecodeError as e:
        raise PipelineError(f"avdd-data {args[0]} printed no JSON summary ({e})") from None


def shards_from_manifest(manifest, work_dir, root=None, clips_per_item: int = 4, keep_unlabelled: bool = False,
                         workers: int | None = None) -> tuple[Path, dict]:
    """Extract every item of ``manifest`` (up to ``clips_per_item`` clips each) and build shards
    of its own pairs, all in the ``test`` split. Returns the shards and the extract summary
    (with every failure). Existing work in ``work_dir`` is reused (the stages skip done shards)."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    common = ["--no-progress"] + (["--workers", str(workers)] if workers is not None else [])
    args = ["extract", manifest, "--store", work / "store.zarr", "--clips-per-video", str(clips_per_item), *common]
    if root is not None:
        args += ["--root", root]
    extracted = avdd_data(*args)
    build = ["build-shards", "--store", work / "store.zarr", "--out", work / "shards.zarr", "--pairs", "own",
             "--splits", "train=0,val=0,test=1", "--no-keep-splits", "--no-cache-mel", *common]
    avdd_data(*(build + (["--keep-unlabelled"] if keep_unlabelled else [])))
    return work / "shards.zarr", extracted


def _reason(fail: dict) -> str:
    """A failure record of avdd-data (``reason``, ``detail``) as one line for the user."""
    return fail["reason"].replace("_", " ") + (f": {fail['detail']}" if fail["detail"] else "")


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


def shards_from_files(files: list[Path], work_dir, clips_per_item: int = 4,
                      workers: int | None = None) -> tuple[Path | None, dict[str, Path], dict[Path, str]]:
    """Shards of raw files for inference: the files are linked into a corpus under ``work_dir``
    (one id per file), indexed with the folder recipe, extracted, kept unlabelled.

    Returns (shards or None when no file was usable, id -> file, file -> error for the files
    that could not be used at all)."""
    work = Path(work_dir)
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    ids: dict[str, Path] = {}
    errors: dict[Path, str] = {}
    for k, f in enumerate(files):
        if not f.exists():
            errors[f] = "file does not exist"
            continue
        link = corpus / f"{k:05d}{f.suffix.lower() or '.bin'}"
        if not link.exists():
            link.symlink_to(f.resolve())
        ids[link.stem] = f
    if not ids:
        return None, ids, errors
    manifest = work / "files.jsonl"
    # the corpus links to the files given: their folders are allowed roots of the manifest
    allow = sorted({str(f.resolve().parent) for f in ids.values()})
    avdd_data("manifest", "folder", corpus, "-o", manifest, *[x for a in allow for x in ("--allow-root", a)])
    for line in (work / "files.failures.jsonl").read_text().splitlines():
        fail = json.loads(line)
        f = ids.pop(Path(fail["path"]).stem, None)
        if f is not None:
            errors[f] = _reason(fail)
    if not ids:
        return None, ids, errors
    shards, extracted = shards_from_manifest(manifest, work / "extract", corpus, clips_per_item,
                                             keep_unlabelled=True, workers=workers)
    for fail in extracted.get("failures", []):
        f = ids.get(fail["id"])
        if f is not None and fail["clip"] is None:  # the whole item failed
            errors[f] = _reason(fail)
    return shards, ids, errors
