"""Reading training samples: the shards' DataLoader against decoding the source media, and the
zarr layout of the shards.

1. Throughput (samples/s) of ``torch.utils.data.DataLoader`` over ``detector.data.ShardDataset``
   (video + audio + cached mel, shuffled, batch 8) with 1 and 2 worker processes, against a
   baseline that builds the same samples from the source files: decode the clip's frames from the
   mp4 (ffmpeg, 25 fps grid), cut the face with the stored boxes (no detection, which is the
   expensive part: the baseline is generous) and decode the audio track. Target: >= 10x.
2. Layout: random reads of single clips when ``clips/face`` is written with 1 clip per file (zarr
   chunks, no sharding) or with zarr shards of 8, 32 and 128 clips: samples/s and files on disk.

    python benchmarks/bench_shards.py [--shards SHARDS.zarr] [--samples 64]

Without --shards it builds a store and shards from the six sample videos of ../shared/data (or
$AVDD_SAMPLE_DATA) in a temporary folder first (extract 4 clips each, Griffin-Lim conversion).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import DataLoader, Dataset

from detector.data import ShardDataset, shard_info


def build_sample_shards(tmp: Path) -> Path:
    from pipeline.convert import ConvertConfig, convert
    from pipeline.extract import ExtractConfig, extract
    from pipeline.manifest import merge_manifests, write_manifest
    from pipeline.recipes import prepare
    from pipeline.shards import ShardsConfig, build_shards

    env = os.environ.get("AVDD_SAMPLE_DATA")
    data = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    parts = []
    for recipe, sub, opts in [("dfdc", "dfdc", {}), ("ffpp", "ffpp", {}), ("folder", "talking", {"default_label": "real"})]:
        out = tmp / f"{recipe}.jsonl"
        write_manifest(prepare(recipe, data / sub, **opts), out, recipe, data / sub)
        parts.append(out)
    merge_manifests(parts, tmp / "all.jsonl")
    extract(tmp / "all.jsonl", tmp / "s.zarr", config=ExtractConfig(clips_per_video=4), workers=0, progress=False)
    convert(tmp / "s.zarr", ConvertConfig("griffinlim"), workers=0, progress=False)
    build_shards(tmp / "s.zarr", tmp / "shards.zarr", ShardsConfig(cache_mel=True), workers=0, progress=False)
    return tmp / "shards.zarr"


class DecodeFromSource(Dataset):
    """The baseline: the same samples built from the source video and audio files."""

    def __init__(self, shards: Path, indices: np.ndarray):
        info = shard_info(shards)
        self.store, self.fps, self.F = info["store"], info["fps"], info["frames_per_clip"]
        g = zarr.open_group(str(shards), mode="r")
        clip, audio = g["samples/clip"][:][indices], g["samples/audio"][:][indices]
        src_clip = g["clips/source"][:]
        src_audio = g["audio/source_sample"][:]
        self.items = [(int(src_clip[c]) if c >= 0 else -1, int(src_audio[a]) if a >= 0 else -1)
                      for c, a in zip(clip, audio)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from pipeline.faces import crop_square
        from pipeline.media import iter_clips, probe, read_audio
        from pipeline.store import item_row, open_root

        s_clip, s_audio = self.items[i]
        g = open_root(self.store)
        s = s_clip if s_clip >= 0 else s_audio
        row = item_row(g, int(g["meta/item"][s]))
        path = Path(g.attrs["avdd"]["stages"]["extract"]["root"]) / row["path"]
        start = int(g["meta/start_frame"][s])
        out = {}
        if s_clip >= 0:
            info = probe(path)
            size = (info.video.width, info.video.height)
            frames = next(iter_clips(path, [start], self.F, self.fps, size))[1]
            boxes = g["video/box"][s]
            out["video"] = torch.from_numpy(np.stack([
                crop_square(f, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, 1.3 * max(b[2] - b[0], b[3] - b[1]), 128)
                for f, b in zip(frames, boxes)])).permute(0, 3, 1, 2)
        if s_audio >= 0:
            wave = read_audio(path)[start * 640 : start * 640 + self.F * 640]
            out["audio"] = torch.from_numpy(np.pad(wave, (0, self.F * 640 - len(wave))))
        return out



def loader_rate(ds, workers: int, batch: int = 8, warm: bool = False) -> float:
    """Samples/s of one shuffled epoch; ``warm``: after a first, untimed epoch of persistent
    workers (their start, imports and store opening left out)."""
    dl = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True, collate_fn=list,
                    generator=torch.Generator().manual_seed(0), persistent_workers=warm and workers > 0)
    if warm:
        for _ in dl:
            pass
    t0 = time.perf_counter()
    n = sum(len(b) for b in dl)
    return n / (time.perf_counter() - t0)


def layout_rates(shards: Path, tmp: Path, reads: int = 200, clips: int = 512) -> list[tuple]:
    """The shards' clips repeated up to ``clips`` clips, written in each layout, read at random."""
    from pipeline.store import create_array, open_root

    face = zarr.open_group(str(shards), mode="r")["clips/face"][:]
    data = np.concatenate([face] * -(-clips // len(face)))[:clips]
    rng = np.random.default_rng(0)
    order = rng.integers(0, len(data), size=reads)
    rows = []
    for per_shard in (1, 8, 32, 128):
        path = tmp / f"layout_{per_shard}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        root = open_root(path, mode="w")
        if per_shard == 1:  # one chunk (file) per clip, no zarr sharding
            arr = root.create_array("face", shape=data.shape, chunks=(1, *data.shape[1:]), dtype=np.uint8)
        else:
            arr = create_array(root, "face", data.shape, np.uint8, per_shard)
        arr[:] = data
        files = sum(1 for _ in path.rglob("*") if _.is_file())
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        g = zarr.open_group(str(path), mode="r")["face"]
        g[0]
        t0 = time.perf_counter()
        for i in order:
            g[int(i)]
        rows.append((per_shard, reads / (time.perf_counter() - t0), files, size / 2**20))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=Path)
    ap.add_argument("--samples", type=int, default=64, help="samples read by each loader")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="avdd-bench-"))
    shards = args.shards or build_sample_shards(tmp)
    full = ShardDataset(shards, split=None, modalities=("video", "audio", "mel"), require=("video",))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(full), size=min(args.samples, len(full)), replace=False))
    sub = torch.utils.data.Subset(full, pick)
    base = DecodeFromSource(shards, full.index[pick])
    rows = []
    for workers in (1, 2):
        ours = loader_rate(sub, workers)
        theirs = loader_rate(base, workers)
        rows.append((workers, ours, theirs))
        print(rows[-1], file=sys.stderr)
    layouts = layout_rates(shards, tmp)
    print(render(rows, layouts, len(pick), shards))
    shutil.rmtree(tmp, ignore_errors=True)


def render(rows, layouts, n, shards) -> str:
    info = shard_info(shards)
    out = [f"{n} samples with video (video 32x128x128 + audio 1.28 s + mel), from shards of {info['n_samples']} "
           f"samples; batch 8, shuffled; torch 1 thread per process.\n",
           "| DataLoader workers | shards (samples/s) | decode from source (samples/s) | speed-up |",
           "|---|---|---|---|"]
    out += [f"| {w} | {a:.1f} | {b:.2f} | {a / b:.0f}x |" for w, a, b in rows]
    out += ["", "Layout of `clips/face` (the clips repeated to 512): random single-clip reads (one process).", "",
            "| clips per file | reads/s | files | MiB |", "|---|---|---|---|"]
    out += [f"| {k} | {r:.1f} | {f} | {m:.1f} |" for k, r, f, m in layouts]
    return "\n".join(out)


if __name__ == "__main__":
    main()
