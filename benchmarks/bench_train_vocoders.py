"""Trained vs untrained neural vocoders on held-out real speech, next to Griffin-Lim and WORLD.

For each run directory written by ``avdd-data train-vocoder`` (``--runs DIR/NAME ...``): its
steps and minutes (``val.csv``), the training loss over the first and last 50 steps
(``log.csv``), and MCD / LSD / envelope correlation of copy synthesis of the run's held-out
utterances (the same split the trainer made: first ``val_seconds`` of each, at 16 kHz) through
the untrained model (``checkpoints/step-0000000.pt``) and through ``best.pt``; Griffin-Lim and
WORLD convert the same clips. Prints a Markdown table; ``--png-dir`` copies each run's
real-vs-converted spectrogram of the best step.

    python benchmarks/bench_train_vocoders.py --corpus /work/runs12/corpus \
        --runs /work/runs12/melgan /work/runs12/parallel_wavegan ... --png-dir docs/trained-vocoders
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
import yaml

from pipeline.vocoders import load_vocoder
from pipeline.vocoders.training.config import RunConfig
from pipeline.vocoders.training.data import load_files, source_files, split
from pipeline.vocoders.training.trainer import _val_clip
from pipeline.vocoders.training.validate import validate

LOSS = {"melgan": "stft_mag", "parallel_wavegan": "stft_mag", "waveglow": "nll", "wavernn": "nll", "wavenet": "nll"}


def held_out(corpus: Path, run: RunConfig, sample_rate: int = 22050) -> list:
    files = source_files(audio_dir=corpus)
    _, val = split([n for n, _ in files], run.train.n_val, run.train.seed)
    utts = load_files([f for f in files if f[0] in val], sample_rate)
    return [_val_clip(u, sample_rate, run.train) for u in utts]


def rows_of(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def fmt(q: dict) -> str:
    return f"{q['mcd']:.2f} / {q['lsd']:.1f} / {q['env_corr']:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--runs", type=Path, nargs="+", required=True)
    ap.add_argument("--png-dir", type=Path)
    a = ap.parse_args()
    lines = ["| vocoder | steps | minutes | train loss first 50 -> last 50 | untrained MCD / LSD / env | "
             "trained (best step) MCD / LSD / env |", "|---|---|---|---|---|---|"]
    clips = None
    for run_dir in a.runs:
        data = yaml.safe_load((run_dir / "config.yaml").read_text())
        data.pop("avdd_version", None)
        run = RunConfig.from_dict(data)
        clips = held_out(a.corpus, run)
        sr = run.train.val_sample_rate
        untrained = validate(load_vocoder(run.vocoder, run_dir / "checkpoints" / "step-0000000.pt"), clips, sr)
        best_voc = load_vocoder(run.vocoder, run_dir)
        trained = validate(best_voc, clips, sr)
        log = rows_of(run_dir / "log.csv")
        key = LOSS[run.vocoder]
        loss = [float(r[key]) for r in log if r.get(key)]
        lines.append(f"| {run.vocoder} | {len(log)} | {float(log[-1]['seconds']) / 60:.1f} | "
                     f"{np.mean(loss[:50]):.3f} -> {np.mean(loss[-50:]):.3f} | {fmt(untrained)} | "
                     f"{fmt(trained)} ({best_voc.trained['step']}) |")
        if a.png_dir:
            a.png_dir.mkdir(parents=True, exist_ok=True)
            src = run_dir / "val" / f"step-{best_voc.trained['step']:07d}" / "spectrogram.png"
            shutil.copyfile(src, a.png_dir / f"{run.vocoder}.png")
        print(f"{run.vocoder}: held out {[c.name for c in clips]}", flush=True)
    for name in ("griffinlim", "world"):
        q = validate(load_vocoder(name), clips, 16000)
        lines.append(f"| {name} | - | - | - | {fmt(q)} | |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
