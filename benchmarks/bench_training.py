"""Training throughput (clips/s) of every detector model, on real shards.

For each model (av, av-noatt, video, audio) and preset (tiny, base): optimizer steps (forward,
loss, backward, AdamW step) on batches of real samples (the six sample videos' shards), timed
after one warm-up step. "model" times the steps on a batch already in memory; "end to end" adds
reading and augmenting (default training augmentations) in DataLoader workers.

    python benchmarks/bench_training.py [--shards SHARDS.zarr] [--device cpu] [--steps 3] [--batch 4]
        [--models av,audio] [--presets tiny] [--no-video-compression]

The training split is repeated (fresh augmentations each time) so that every DataLoader worker has
batches to make within one pass. ``--no-video-compression`` leaves out the H.264 augmentation, for
machines without an ffmpeg binary; the table's header says so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from detector import config as C  # noqa: E402
from detector.builder import build_model  # noqa: E402
from detector.losses import compute_loss  # noqa: E402
from detector.scoring import to_device  # noqa: E402
from detector.train import datasets  # noqa: E402


def measure(shards, name: str, preset: str, device, steps: int, batch: int, workers: int,
            video_compression: bool = True) -> tuple[float, float]:
    cfg = C.PRESETS[preset](name)
    cfg.train.batch_size, cfg.train.num_workers, cfg.train.val_split = batch, workers, ""
    if not video_compression:
        cfg.augment.p_video_compression = 0.0
    train_ds, _ = datasets(shards, cfg)
    model = build_model(cfg.model).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    amp = device.type == "cuda"

    def step(b):
        with torch.autocast(device.type, enabled=amp):
            loss, _ = compute_loss(model(b), b, cfg.model.loss_weights)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one = train_ds
    ds = ConcatDataset([one] * max(1, -(-(steps + 2) * batch // len(one))))
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    fixed = to_device(next(iter(loader)), device)
    step(fixed)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(fixed)
    sync()
    model_rate = steps * batch / (time.perf_counter() - t0)
    it, done = iter(loader), 0
    t0 = time.perf_counter()
    while done < steps:
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        step(to_device(b, device))
        done += 1
    sync()
    return model_rate, steps * batch / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="av,av-noatt,video,audio")
    ap.add_argument("--presets", default="tiny,base")
    ap.add_argument("--no-video-compression", action="store_true", help="leave out the H.264 augmentation")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    shards = args.shards
    if shards is None:
        from bench_shards import build_sample_shards

        shards = build_sample_shards(Path(tempfile.mkdtemp(prefix="avdd-bench-")))
    device = torch.device(args.device)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} torch threads"
    aug = " (H.264 augmentation left out)" if args.no_video_compression else ""
    amp = "; mixed precision (float16 autocast)" if device.type == "cuda" else ""
    print(f"Device: {dev}; torch {torch.__version__}{amp}; batch {args.batch}; {args.steps} timed steps; "
          f"DataLoader workers {args.workers}{aug}.\n")
    print("| model | preset | parameters | model (clips/s) | end to end (clips/s) |\n|---|---|---|---|---|")
    for preset in args.presets.split(","):
        for name in args.models.split(","):
            params = sum(p.numel() for p in build_model(C.PRESETS[preset](name).model).parameters())
            try:
                m, e = measure(shards, name, preset, device, args.steps, args.batch, args.workers,
                               video_compression=not args.no_video_compression)
            except Exception as exc:  # reported in the table, the other models still run
                print(f"| {name} | {preset} | {params / 1e6:.2f} M | not measured: {type(exc).__name__}: "
                      f"{str(exc)[:200]} | - |", flush=True)
                continue
            print(f"| {name} | {preset} | {params / 1e6:.2f} M | {m:.2f} | {e:.2f} |", flush=True)


if __name__ == "__main__":
    main()
