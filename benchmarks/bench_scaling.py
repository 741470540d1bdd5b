"""Scaling of the extract and convert stages with the number of local Dask workers.

Builds a corpus from the sample media (the talking-head videos and the real speech, each copied
``--copies`` times under new names so that every item is its own task), then runs

    extract   (default face pipeline, 2 clips of 32 frames per item, one item per shard)
    convert   griffinlim and world

once with 1 worker and once with N workers (one torch thread each), each into a fresh store,
and prints a markdown table: items or clips per second of the stage's shards (the time from
the first task submitted to the last finished: the cluster's start is left out, each worker's
model load is in) and the ratio to one worker. The stores of all runs are also compared: they
must be equal, whatever the number of workers.

    python benchmarks/bench_scaling.py --copies 12 --workers 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

from pipeline.cluster import Placement
from pipeline.convert import ConvertConfig, convert
from pipeline.extract import ExtractConfig, extract
from pipeline.manifest import write_manifest
from pipeline.recipes import prepare


def corpus(data: Path, out: Path, copies: int) -> Path:
    out.mkdir(parents=True)
    files = sorted((data / "talking").glob("*.mp4")) + sorted((data / "speech").glob("*.wav"))
    for k in range(copies):
        for f in files:
            shutil.copy(f, out / f"{f.stem}-{k}{f.suffix}")
    manifest = out.parent / "corpus.jsonl"
    write_manifest(prepare("folder", out, default_label="real"), manifest, "folder", out)
    return manifest


def run(manifest: Path, store: Path, workers: int) -> dict:
    where = Placement(workers=workers, threads=1) if workers else Placement(workers=0, threads=1)
    cfg = ExtractConfig(clips_per_video=2, items_per_shard=1)
    ex = extract(manifest, store, config=cfg, where=where, progress=False)
    out = {"extract": (ex.seconds, ex.shards)}
    for name in ("griffinlim", "world"):
        cv = convert(store, ConvertConfig(vocoder=name), where=where, progress=False)
        out[name] = (cv.seconds, int(cv.counts.get("samples", 0)))
    return out


def arrays(store: Path) -> dict:
    g = zarr.open_group(str(store), mode="r")
    names = ["video/face", "video/box", "audio/real", "audio/fake/griffinlim", "audio/fake/world", "meta/status"]
    return {n: g[n][:] for n in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("AVDD_SAMPLE_DATA", str(Path(__file__).resolve().parents[2]
                                                                             / "shared" / "data")))
    ap.add_argument("--copies", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="avdd-scaling-"))
    try:
        manifest = corpus(Path(args.data), tmp / "corpus", args.copies)
        results = {}
        for w in (1, args.workers):
            t = time.perf_counter()
            results[w] = run(manifest, tmp / f"w{w}.zarr", w)
            results[w]["wall"] = time.perf_counter() - t
        a, b = arrays(tmp / "w1.zarr"), arrays(tmp / f"w{args.workers}.zarr")
        same = all(np.array_equal(a[n], b[n], equal_nan=True) for n in a)
        print(f"Corpus: {args.copies} copies of the sample talking heads and speech; cores: {os.cpu_count()}; "
              f"stores equal across worker counts: {same}\n")
        print("| stage | unit | 1 worker (units/s) | "
              f"{args.workers} workers (units/s) | ratio |")
        print("|---|---|---|---|---|")
        for stage, unit in [("extract", "items"), ("griffinlim", "clips"), ("world", "clips")]:
            (s1, n1), (s2, n2) = results[1][stage], results[args.workers][stage]
            r1, r2 = n1 / s1, n2 / s2
            print(f"| {stage if stage == 'extract' else 'convert ' + stage} | {unit} ({n1}) | {r1:.2f} | "
                  f"{r2:.2f} | {r2 / r1:.2f}x |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
