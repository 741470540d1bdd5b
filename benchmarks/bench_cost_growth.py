"""Cost of the data stages as the corpus grows, and what that means for a full corpus.

Runs the three stages a corpus goes through before conversion, each as one ``avdd-data``
command with its defaults (a fresh process: interpreter start, imports and the local Dask
cluster's start are in the times), on corpora of growing size:

    avdd-data manifest folder CORPUS -o M.jsonl
    avdd-data extract M.jsonl --store S.zarr
    avdd-data build-shards --store S.zarr --out X.zarr --pairs own

- audio: ``--items`` utterances of 2 s cut from the sample speech (16 kHz wav, one file each, as
  ASVspoof2019 LA and In-the-Wild are);
- video: ``--videos`` copies of the two 1080p DFDC sample videos (10 s each, faces extracted
  with the default config: 4 clips of 32 frames).

For each kind, the marginal cost per item is the slope between the two largest corpora (it
leaves out the fixed part: start-up, imports, the cluster), in core-seconds (wall seconds x
the cores the default local cluster uses), and the time of a full corpus is extrapolated from
it: ``fixed + items x core_s / cores``, on one machine of 16 cores and on a cluster of N
single-core workers. That assumes the near-linear scaling measured in the scale-out section
of RESULTS.md (1.94x-2.05x with 2 workers on 2 cores); it is not measured beyond 2 cores here.

    python benchmarks/bench_cost_growth.py --items 400 1600 6400 --videos 8 24
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench_audio_corpus import make_corpus, run  # benchmarks/ (the scripts run from there)

CORPORA = {"ASVspoof2019 LA (audio)": ("audio", 121_461), "In-the-Wild (audio)": ("audio", 31_779),
           "DFDC (video)": ("video", 119_154)}  # sizes: the datasets' own protocol / metadata files
CLUSTERS = (64, 256, 1024)  # single-core workers


def make_videos(data: Path, out: Path, copies: int) -> None:
    out.mkdir(parents=True)
    videos = [data / "dfdc/dfdc_sample_real/lynaeydofd.mp4", data / "dfdc/dfdc_train_part_0/brtujopkby.mp4"]
    for k in range(copies):
        src = videos[k % len(videos)]
        shutil.copyfile(src, out / f"v{k:05d}_{src.name}")


def fmt_hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("AVDD_SAMPLE_DATA", str(Path(__file__).resolve().parents[2]
                                                                             / "shared" / "data")))
    ap.add_argument("--items", type=int, nargs="+", default=[400, 1600, 6400])
    ap.add_argument("--videos", type=int, nargs="*", default=[8, 24])
    args = ap.parse_args()
    data, cores = Path(args.data), os.cpu_count() or 1
    measured: dict[str, list[tuple[int, dict]]] = {"audio": [], "video": []}
    for kind, sizes in (("audio", args.items), ("video", args.videos)):
        for n in sizes:
            tmp = Path(tempfile.mkdtemp(prefix="avdd-cost-"))
            try:
                (make_corpus if kind == "audio" else make_videos)(data, tmp / "corpus", n)
                times = run(tmp / "corpus", tmp, "soundfile")  # the three commands, default reader
                measured[kind].append((n, {k: times[k] for k in ("manifest", "extract", "build-shards")}))
                print(kind, n, measured[kind][-1], file=sys.stderr)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    stages = ("manifest", "extract", "build-shards")
    lines = [f"| kind | items | {' | '.join(f'{s} (s)' for s in stages)} | total (s) | ms per item |",
             "|---|---|" + "---|" * (len(stages) + 2)]
    marginal, fixed = {}, {}
    for kind, runs in measured.items():
        for n, t in runs:
            total = sum(t.values())
            lines.append(f"| {kind} | {n:,} | {' | '.join(f'{t[s]:.1f}' for s in stages)} | {total:.1f} | "
                         f"{1e3 * total / n:.1f} |")
        if len(runs) >= 2:
            (n0, t0), (n1, t1) = runs[-2], runs[-1]
            marginal[kind] = {s: (t1[s] - t0[s]) / (n1 - n0) * cores for s in stages}  # core-seconds per item
            fixed[kind] = sum(t0.values()) - sum(marginal[kind].values()) * n0 / cores
    lines += ["", f"Marginal cost (slope between the two largest corpora), core-seconds per item on this machine "
              f"({cores} cores):", "", f"| kind | {' | '.join(stages)} | all three |", "|---|" + "---|" * 4]
    for kind, m in marginal.items():
        lines.append(f"| {kind} | {' | '.join(f'{m[s]:.4f}' for s in stages)} | {sum(m.values()):.4f} |")
    lines += ["", "Extrapolated time of the three stages for a full corpus (fixed part + items x core-seconds / "
              "cores):", "", "| corpus | items | 16-core machine | " + " | ".join(f"{w} workers" for w in CLUSTERS)
              + " |", "|---|---|---|" + "---|" * len(CLUSTERS)]
    for name, (kind, n) in CORPORA.items():
        if kind not in marginal:
            continue
        per = sum(marginal[kind].values())
        cells = [fmt_hours(max(fixed[kind], 0) + n * per / w) for w in (16, *CLUSTERS)]
        lines.append(f"| {name} | {n:,} | {' | '.join(cells)} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
