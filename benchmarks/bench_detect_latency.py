"""Wall time of one ``avdd-detect`` call on one sample video, with a tiny audio model.

The checkpoint is made once (unless ``--checkpoint`` names one): the sample speech is extracted,
built into audio-only shards with its own (real) pairs, and a tiny audio model is trained for a
few steps (the weights do not matter for latency). Then ``avdd-detect --json`` runs ``--repeat``
times on the video as a user would run it (a fresh process each time, imports included) and the
median wall time is printed with each run's, with the CPU time of each call (user + system of
all its processes: on a shared machine it depends less on the other jobs than wall time does).

    python benchmarks/bench_detect_latency.py --work /tmp/avdd-latency \
        --video ../shared/data/talking/hdtf_WDA_AlexandriaOcasioCortez_000.mp4 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("AVDD_SAMPLE_DATA", ROOT.parent / "shared" / "data"))


def make_checkpoint(work: Path) -> Path:
    """A tiny audio model after 2 steps on audio shards of the sample speech."""
    from detector import config as C
    from detector.train import train
    from pipeline.extract import ExtractConfig, extract
    from pipeline.manifest import write_manifest
    from pipeline.recipes import prepare
    from pipeline.shards import ShardsConfig, build_shards

    corpus = work / "corpus"
    shutil.copytree(DATA / "speech", corpus, dirs_exist_ok=True)
    manifest = work / "m.jsonl"
    write_manifest(prepare("folder", corpus, default_label="real"), manifest, "folder", corpus)
    extract(manifest, work / "s.zarr", config=ExtractConfig(clips_per_video=4), workers=0, progress=False)
    shards = work / "shards.zarr"
    build_shards(work / "s.zarr", shards, ShardsConfig(split_ratios={"train": 1.0, "val": 0.0, "test": 0.0}),
                 workers=0, progress=False)
    cfg = C.tiny("audio")
    cfg.train.val_split = ""
    return Path(train(shards, work / "run", cfg, progress=False, overrides={"max_steps": 2})["best_checkpoint"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="Folder for the checkpoint (kept between runs).")
    ap.add_argument("--video", type=Path, default=DATA / "talking" / "hdtf_WDA_AlexandriaOcasioCortez_000.mp4")
    ap.add_argument("--checkpoint", type=Path, help="Use this checkpoint instead of making one.")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = args.checkpoint or args.work / "run" / "best.pt"
    if not ckpt.is_file():
        ckpt = make_checkpoint(args.work)
    exe = shutil.which("avdd-detect") or sys.exit("avdd-detect is not on PATH")
    times, cpu = [], []
    for _ in range(args.repeat):
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([exe, str(args.video), "--checkpoint", str(ckpt), "--json"], capture_output=True,
                              text=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(time.perf_counter() - t0)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)  # all its processes, less load-bound
        if proc.returncode != 0:
            sys.exit(f"avdd-detect failed: {proc.stderr.strip()}")
        row = json.loads(proc.stdout)["files"][0]
    print(json.dumps({"video": str(args.video), "checkpoint": str(ckpt), "clips": row["clips"],
                      "runs_s": [round(t, 2) for t in times], "median_s": round(statistics.median(times), 2),
                      "cpu_s": [round(t, 2) for t in cpu], "median_cpu_s": round(statistics.median(cpu), 2),
                      "load_average": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
