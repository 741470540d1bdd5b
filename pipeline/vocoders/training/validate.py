"""Validation of a vocoder under training: copy synthesis of the held-out utterances exactly as
the convert stage does it (``Vocoder.copy_synthesize`` at the store's rate), scored with
:func:`pipeline.quality.quality` (MCD, LSD, envelope correlation), plus the converted wavs and a
real-vs-converted spectrogram PNG of the first utterance.

Validation draws no numbers from torch's global generator that training would see (it runs in
``torch.random.fork_rng``), so a run validated at other steps trains identically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...quality import quality
from .data import Utterance


def validate(voc, clips: list[Utterance], sample_rate: int, out_dir: Path | None = None) -> dict:
    """Mean MCD / LSD / env_corr over ``clips`` (float32 at ``sample_rate``); writes
    ``<i>.wav`` per clip and ``spectrogram.png`` (first clip) into ``out_dir`` when given."""
    model = getattr(voc, "model", None)  # Griffin-Lim and WORLD have none
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    rows = []
    with torch.random.fork_rng(devices=[voc.device] if voc.device.type == "cuda" else []):
        torch.manual_seed(0)
        for i, clip in enumerate(clips):
            fake = voc.copy_synthesize(clip.audio[None], sample_rate)[0]
            rows.append(quality(clip.audio, fake, sample_rate))
            if out_dir is not None:
                write_outputs(out_dir, i, clip, fake, sample_rate, png=i == 0)
    if model is not None:
        model.train(was_training)
    return {k: float(np.nanmean([r[k] for r in rows])) for k in ("mcd", "lsd", "env_corr")}


def write_outputs(out_dir: Path, i: int, clip: Utterance, fake: np.ndarray, sample_rate: int, png: bool) -> None:
    import soundfile as sf

    out_dir.mkdir(parents=True, exist_ok=True)
    sf.write(out_dir / f"{i}.wav", np.clip(fake, -1, 1), sample_rate, subtype="PCM_16")
    if png:
        spectrogram_png(clip.audio, fake, sample_rate, out_dir / "spectrogram.png", title=clip.name)


def spectrogram_png(real: np.ndarray, fake: np.ndarray, sample_rate: int, path: Path, title: str = "") -> None:
    """Two log-mel spectrograms (80 bands, 64 ms windows, 16 ms hop at 16 kHz), same colour scale."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_fft, hop = int(0.064 * sample_rate), int(0.016 * sample_rate)
    mels = [librosa.power_to_db(librosa.feature.melspectrogram(y=x.astype(np.float32), sr=sample_rate, n_fft=n_fft,
                                                               hop_length=hop, n_mels=80), ref=1.0, top_db=None)
            for x in (real, fake)]
    vmax = max(m.max() for m in mels)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, m, label in zip(axes, mels, ("real", "converted")):
        im = ax.imshow(m, origin="lower", aspect="auto", vmin=vmax - 80, vmax=vmax, cmap="magma",
                       extent=(0, len(real) / sample_rate, 0, 80))
        ax.set_ylabel(f"{label}\nmel band")
    axes[0].set_title(title)
    axes[1].set_xlabel("seconds")
    fig.colorbar(im, ax=axes, label="dB")
    fig.savefig(path, dpi=80)
    plt.close(fig)
