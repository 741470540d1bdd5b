"""Face extraction throughput against a naive baseline, and the agreement of their boxes.

Ours: the extract stage's per-item path (``pipeline.extract.extract_item``) with its default
config: frames decoded on the 25 fps grid (short side at most 720 px); a coarse MTCNN pass on
frames downscaled to a 360 px short side, every 16th frame, finds and tracks the faces and picks
the main one; a local pass on a 160 px window around the main face (2.5 face sizes), every 2nd
frame, locates it precisely; boxes interpolated and smoothed; face and mouth crops cut. Throughput counts every clip frame that gets a face crop, over the
whole wall time (decode, detection, tracking and cropping).

Naive: the same frames decoded at full resolution and ``MTCNN.detect`` (facenet-pytorch,
default settings) called on every frame. Its throughput also includes decoding.

Agreement: for every frame, the IoU of our (smoothed, interpolated) main-face box with the
naive detection of the same face (the naive box that overlaps it most).

    python benchmarks/bench_face_extraction.py [VIDEO ...] [--clips 4] [--threads 1] [--out FILE.md]

Without VIDEO it uses the two 1080p DFDC samples under ../shared/data (or $AVDD_SAMPLE_DATA).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.extract import ExtractConfig, extract_item
from pipeline.faces import iou
from pipeline.manifest import ManifestRow
from pipeline.media import iter_clips, probe
from tables import emit  # benchmarks/tables.py (the scripts run from benchmarks/)


def sample_videos() -> list[Path]:
    env = os.environ.get("AVDD_SAMPLE_DATA")
    data = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return [data / "dfdc/dfdc_sample_real/lynaeydofd.mp4", data / "dfdc/dfdc_train_part_0/brtujopkby.mp4"]


def run_ours(path: Path, cfg: ExtractConfig, threads: int):
    row = ManifestRow(id=path.stem, path=path.name, media="video", has_audio=False)
    t0 = time.perf_counter()
    clips = extract_item(row, path.parent, cfg, threads)
    seconds = time.perf_counter() - t0
    frames = sum(len(c.box) for c in clips if c.box is not None)
    return clips, frames, seconds


def run_naive(path: Path, clips, cfg: ExtractConfig, threads: int):
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    info = probe(path)
    starts = [c.start_frame for c in clips]
    t0 = time.perf_counter()
    boxes, detect_s = [], 0.0
    for _, frames in iter_clips(path, starts, cfg.frames_per_clip, cfg.fps, (info.video.width, info.video.height),
                                threads, seek_gap=10**6):
        for frame in frames:
            t1 = time.perf_counter()
            b, _ = mtcnn.detect(frame)
            detect_s += time.perf_counter() - t1
            boxes.append(np.zeros((0, 4)) if b is None else b)
    return boxes, time.perf_counter() - t0, detect_s


def agreement(clips, naive_boxes) -> np.ndarray:
    ours = np.concatenate([c.box for c in clips if c.box is not None])
    return np.array([max((iou(o, n) for n in nb), default=0.0) for o, nb in zip(ours, naive_boxes)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--clips", type=int, default=4, help="clips per video (of 32 frames)")
    ap.add_argument("--threads", type=int, default=1, help="torch and ffmpeg threads (both sides)")
    ap.add_argument("--out", type=Path, help="append the markdown table to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = ExtractConfig(clips_per_video=args.clips)
    rows = []
    for path in args.videos or sample_videos():
        info = probe(path)
        clips, frames, ours_s = run_ours(path, cfg, args.threads)
        naive_boxes, naive_s, naive_detect_s = run_naive(path, clips, cfg, args.threads)
        ious = agreement(clips, naive_boxes)
        rows.append({
            "video": f"{path.name} ({info.video.width}x{info.video.height})",
            "frames": frames,
            "ours_fps": frames / ours_s,
            "naive_fps": len(naive_boxes) / naive_s,
            "naive_detect_fps": len(naive_boxes) / naive_detect_s,
            "speedup": (frames / ours_s) / (len(naive_boxes) / naive_s),
            "iou_mean": float(ious.mean()),
            "iou_min": float(ious.min()),
            "iou_ge_09": float((ious >= 0.9).mean()),
        })
        print(rows[-1], file=sys.stderr)
    emit(render(rows, args), args.out)


def render(rows, args) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    head = (f"Machine: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}, {args.threads} thread(s) on "
            f"both sides; {args.clips} clips x 32 frames per video.\n\n"
            "| video | frames | ours (frames/s) | naive (frames/s) | naive detect only (frames/s) | speed-up | "
            "mean IoU | min IoU | frames with IoU >= 0.9 |\n|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r['video']} | {r['frames']} | {r['ours_fps']:.2f} | {r['naive_fps']:.2f} | {r['naive_detect_fps']:.2f} "
            f"| {r['speedup']:.1f}x | {r['iou_mean']:.3f} | {r['iou_min']:.3f} | {r['iou_ge_09']:.0%} |" for r in rows]
    return "\n".join([head, *body])


if __name__ == "__main__":
    main()
