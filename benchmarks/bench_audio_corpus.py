"""Indexing and extracting a corpus of many short utterances: in-process audio vs ffmpeg.

Cuts ``--items`` utterances of 2 s from the real speech in the sample data (16 kHz wav, as
ASVspoof2019 LA's flac and In-the-Wild's wav are short single files), then times, for each audio
reader (``AVDD_AUDIO_READER=ffmpeg``: one ffmpeg subprocess per probe and per decode; default:
soundfile + soxr in-process):

    avdd-data manifest folder CORPUS -o M.jsonl        (every file probed)
    avdd-data extract M.jsonl --store S.zarr           (local Dask cluster, default workers)
    avdd-data build-shards --store S.zarr --out X.zarr --pairs own

and checks that the two manifests are identical and the two stores' audio equal. The in-process
reader, a few seconds a stage, runs ``--repeat`` times (median): a single run of it varies by
more than the baseline's, whose stages take minutes.

    python benchmarks/bench_audio_corpus.py --items 400 1600 [--baseline OLD_TREE]

With ``--baseline`` the same commands also run from another source tree (``PYTHONPATH``), e.g.
``git worktree add /tmp/before 0f52d7c`` for the version this work started from, and the
speed-up is taken against it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import zarr


def make_corpus(data: Path, out: Path, n: int, seconds: float = 2.0) -> None:
    out.mkdir(parents=True)
    speech = [sf.read(f, dtype="int16")[0] for f in sorted((data / "speech").glob("*.wav"))]
    size = int(16000 * seconds)
    pieces = [s[i:i + size] for s in speech for i in range(0, len(s) - size + 1, size // 4)]
    for k in range(n):
        sf.write(out / f"utt{k:06d}.wav", pieces[k % len(pieces)], 16000, subtype="PCM_16")


def timed(cmd: list[str], env: dict, cwd: Path | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def run_median(corpus: Path, work: Path, reader: str, repeat: int) -> dict:
    """:func:`run` ``repeat`` times into fresh outputs; the median time of each stage."""
    runs = []
    for k in range(repeat):
        for leftover in work.glob(f"{reader}.*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        runs.append(run(corpus, work, reader))
    out = dict(runs[-1])
    for stage in ("manifest", "extract", "build-shards"):
        out[stage] = float(np.median([r[stage] for r in runs]))
    return out


def run(corpus: Path, work: Path, reader: str, tree: Path | None = None) -> dict:
    env = dict(os.environ)
    if reader == "ffmpeg":
        env["AVDD_AUDIO_READER"] = "ffmpeg"
    else:
        env.pop("AVDD_AUDIO_READER", None)
    if tree is not None:  # the same commands with another version of avdd (e.g. before this work), run
        env["PYTHONPATH"] = str(tree)  # from that tree: ``-m`` puts the working directory first on sys.path
    exe = [sys.executable, "-m", "pipeline.cli"]
    m, s, x = work / f"{reader}.jsonl", work / f"{reader}.zarr", work / f"{reader}.shards.zarr"
    cwd = tree
    return {"manifest": timed(exe + ["manifest", "folder", str(corpus), "-o", str(m), "--default-label", "real"], env,
                              cwd),
            "extract": timed(exe + ["extract", str(m), "--store", str(s), "--no-progress"], env, cwd),
            "build-shards": timed(exe + ["build-shards", "--store", str(s), "--out", str(x), "--pairs", "own",
                                         "--no-progress"], env, cwd),
            "rows": [json.loads(line) for line in m.read_text().splitlines()], "store": s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("AVDD_SAMPLE_DATA", str(Path(__file__).resolve().parents[2]
                                                                             / "shared" / "data")))
    ap.add_argument("--items", type=int, nargs="+", default=[400, 1600])
    ap.add_argument("--baseline", type=Path,
                    help="Also run the source tree of another avdd version (e.g. a worktree of the commit before "
                         "this work) with its own audio path, and give the speed-up against it.")
    ap.add_argument("--repeat", type=int, default=3,
                    help="Runs of the in-process reader (each into fresh outputs); its median is reported.")
    args = ap.parse_args()
    base = " baseline tree (s) |" if args.baseline else ""
    print(f"| items | stage |{base} ffmpeg per file (s) | in-process (s) | speed-up |")
    print("|---|---|---|---|---|" + ("---|" if args.baseline else ""))
    for n in args.items:
        tmp = Path(tempfile.mkdtemp(prefix="avdd-audio-corpus-"))
        try:
            make_corpus(Path(args.data), tmp / "corpus", n)
            old = run(tmp / "corpus", tmp / "old", "baseline", args.baseline) if args.baseline else None
            slow, fast = run(tmp / "corpus", tmp, "ffmpeg"), run_median(tmp / "corpus", tmp, "soundfile", args.repeat)
            assert slow["rows"] == fast["rows"], "manifests differ"
            if old is not None:  # the baseline does not record file sizes: the rest must be equal
                strip = lambda rows: [{**r, "extra": {k: v for k, v in r["extra"].items() if k != "bytes"}}
                                      for r in rows]  # noqa: E731
                assert strip(old["rows"]) == strip(fast["rows"]), "manifests differ from the baseline's"
            a, b = (zarr.open_group(str(r["store"]), mode="r")["audio/real"][:] for r in (slow, fast))
            diff = float(np.abs(a - b).max())
            ref = old or slow
            for stage in ("manifest", "extract", "build-shards"):
                cols = f" {old[stage]:.1f} |" if old else ""
                print(f"| {n} | {stage} |{cols} {slow[stage]:.1f} | {fast[stage]:.1f} | {ref[stage] / fast[stage]:.1f}x |")
            print(f"| {n} | manifests identical, audio max abs difference {diff:.2g} | | | |" + (" |" if old else ""))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
