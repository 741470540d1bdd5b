"""Copy-synthesis quality of the vocoders that need no checkpoint, on real speech.

For every utterance in ../shared/data/speech (or $AVDD_SAMPLE_DATA/speech), and for every clip of
audio extracted from the sample videos (a store built by ``avdd-data run`` / ``extract``, given
with --store), re-synthesise with each vocoder and report against the real audio: same length,
mel-cepstral distortion (MCD), log-spectral distance (LSD) and energy-envelope correlation
(definitions in pipeline/quality.py).

    python benchmarks/quality_copy_synthesis.py [--store STORE.zarr] [--vocoders griffinlim,world]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def speech_files() -> list[Path]:
    env = os.environ.get("AVDD_SAMPLE_DATA")
    data = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return sorted((data / "speech").glob("*.wav"))


def rows_for(name: str, store: Path | None) -> list[tuple]:
    import soundfile as sf
    import zarr

    from pipeline.quality import quality
    from pipeline.vocoders import load_vocoder

    voc = load_vocoder(name)
    out = []
    figs, same = [], True
    for p in speech_files():
        x, sr = sf.read(p, dtype="float32")
        y = voc.copy_synthesize(x[None], sr)[0]
        same &= y.shape == x.shape
        figs.append(quality(x, y, sr))
    out.append((name, f"speech/*.wav ({len(figs)} utterances)", same, figs))
    if store is not None:
        g = zarr.open_group(str(store), mode="r")
        idx = np.flatnonzero(g["meta/has_audio"][:])
        real = g["audio/real"][:][idx]
        fake = voc.copy_synthesize(real, 16000)
        figs = [quality(r, f) for r, f in zip(real, fake)]
        out.append((name, f"clips extracted from the sample videos ({len(idx)})", fake.shape == real.shape, figs))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path)
    ap.add_argument("--vocoders", default="griffinlim,world")
    args = ap.parse_args(argv)
    print("| vocoder | audio | same length | MCD dB (mean) | LSD dB (mean) | env corr (mean) | env corr (min) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.vocoders.split(","):
        for voc, what, same, figs in rows_for(name, args.store):
            m = {k: np.array([f[k] for f in figs]) for k in figs[0]}
            print(f"| {voc} | {what} | {'yes' if same else 'NO'} | {m['mcd'].mean():.3f} | {m['lsd'].mean():.2f} "
                  f"| {m['env_corr'].mean():.3f} | {m['env_corr'].min():.3f} |")


if __name__ == "__main__":
    main()
