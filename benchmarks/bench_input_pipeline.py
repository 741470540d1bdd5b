"""The augmented training input of a tiny model: clips per second of one DataLoader worker, and
what each step of a sample costs.

The samples are those ``avdd-train --preset tiny`` reads for the {2+1}-stream model: face crops
(32 x 128 px, scaled to 72 and cropped to 64) and 1.28 s of audio from the shards, through
``Augment.for_model(tiny("av"), train=True)`` with the default augmentation probabilities
(Gaussian noise, JPEG and H.264 each 0.5; flip; audio gain and noise). The loader rate is
clips/s of a ``DataLoader`` with one worker process (batch 8, shuffled, two epochs, the first
worker start left out). The breakdown times each step on its own in this process, per clip when
applied, and its mean cost per clip at the config's probability.

    python benchmarks/bench_input_pipeline.py [--shards SHARDS.zarr] [--samples 64]

Without --shards it builds shards from the sample videos first (as bench_shards.py does).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_shards import build_sample_shards, loader_rate  # benchmarks/ (the scripts run from there)
from detector import augment as A
from detector.augment import Augment
from detector.config import tiny
from detector.data import ShardDataset


def per_clip_ms(fn, items) -> float:
    fn(items[0])
    t0 = time.perf_counter()
    for x in items:
        fn(x)
    return 1e3 * (time.perf_counter() - t0) / len(items)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=Path)
    ap.add_argument("--samples", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="avdd-input-"))
    try:
        shards = args.shards or build_sample_shards(tmp)
        cfg = tiny("av")
        aug = Augment.for_model(cfg, train=True)
        plain = ShardDataset(shards, split=None, modalities=("video", "audio"), require=("video", "audio"))
        pick = np.arange(min(args.samples, len(plain)))
        ds = torch.utils.data.Subset(ShardDataset(shards, split=None, modalities=("video", "audio"),
                                                  require=("video", "audio"), transform=aug), pick)
        rate = loader_rate(ds, workers=1, warm=True)
        raw = [plain[int(i)] for i in pick]
        small = [aug._resized(s)["video"][:, :, 4:68, 4:68].float() / 255.0 for s in raw]
        rng = np.random.default_rng(0)
        a = cfg.augment
        steps = [("read from shards (video + audio)", lambda i: plain[int(i)], list(pick), 1.0),
                 ("resize 128 -> 72 px (uint8)", aug._resized, raw, 1.0),
                 ("Gaussian noise", lambda v: A.gaussian_noise(v, 0.03, rng), small, a.p_gaussian_noise),
                 ("JPEG (32 frames)", lambda v: A.jpeg(v, 60), small, a.p_jpeg),
                 ("H.264 round trip (ffmpeg)", lambda v: A.video_compression(v, 30), small[:16], a.p_video_compression),
                 ("whole transform", aug, raw, 1.0)]
        lines = [f"DataLoader, 1 worker, tiny av model's input with its training augmentations: **{rate:.1f} clips/s** "
                 f"({len(pick)} clips, batch 8).", "",
                 "| step | ms per clip when applied | probability | mean ms per clip |", "|---|---|---|---|"]
        for name, fn, items, p in steps:
            ms = per_clip_ms(fn, items)
            lines.append(f"| {name} | {ms:.2f} | {p:g} | {ms * p:.2f} |")
        print("\n".join(lines))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
