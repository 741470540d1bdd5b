"""Real-time factor of every vocoder, each beside its baseline, in one run.

RTF = seconds of compute / seconds of audio produced (lower is faster; < 1 is faster than real
time). Inputs are real speech: clips cut from ../shared/data/speech (or $AVDD_SAMPLE_DATA) at
16 kHz, the length of the store's clips (1.28 s), converted the way the convert stage does
(``copy_synthesize``: resample, mel, vocoder, resample back).

Pairs measured in the same run:
- griffinlim: our batched torch fast Griffin-Lim on a batch of clips vs ``librosa.griffinlim``
  clip by clip, same magnitude spectrograms, same n_iter (target: >= 5x per audio-second);
- wavernn: folded (batched overlapping segments) vs unfolded sample-by-sample (target >= 8x);
- wavenet: incremental (cached dilated-conv inputs) vs naive recomputation of the receptive field
  for every sample (target >= 20x; the naive path is timed on fewer samples);
- world, melgan, parallel_wavegan, waveglow: RTF alone.
Neural vocoders run with the release's default config and random weights: these numbers are
about speed only (audio quality needs trained weights).

    python benchmarks/bench_vocoders.py [--device cpu] [--batch 16] [--threads 1] [--only NAME,...] [--half]

``--half``: the neural vocoders in float16 (CUDA only, as ``avdd-data convert --half``).
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
from tables import emit  # benchmarks/tables.py (the scripts run from benchmarks/)

SR = 16000
CLIP = 20480  # samples: 32 frames at 25 fps


def speech_clips(n: int) -> np.ndarray:
    import soundfile as sf

    env = os.environ.get("AVDD_SAMPLE_DATA")
    data = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted((data / "speech").glob("*.wav"))])
    starts = np.linspace(0, len(audio) - CLIP, n).astype(int)
    return np.stack([audio[s : s + CLIP] for s in starts])


def timed(fn, *args, sync=None, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    if sync:
        sync()
    return out, time.perf_counter() - t0


def bench_griffinlim(clips, device, sync):
    """The phase reconstruction itself on the same magnitudes (ours batched vs librosa per
    clip), and our whole copy synthesis (mel, inverse filterbank, Griffin-Lim)."""
    import librosa

    from pipeline.vocoders import load_vocoder
    from pipeline.vocoders.griffinlim import griffin_lim

    voc = load_vocoder("griffinlim", device=device)
    n_iter, m = voc.config.n_iter, voc.mel
    audio_s = clips.size / SR
    mags = m.magnitude(torch.from_numpy(clips).to(device))
    griffin_lim(mags[:2], m.n_fft, m.hop_length, m.win, n_iter=2)  # warm-up
    _, ours = timed(griffin_lim, mags, m.n_fft, m.hop_length, m.win, n_iter=n_iter, length=CLIP, sync=sync)
    t0 = time.perf_counter()
    for mag in mags.cpu().numpy():
        librosa.griffinlim(mag, n_iter=n_iter, hop_length=m.hop_length, win_length=m.win, n_fft=m.n_fft,
                           length=CLIP, random_state=0)
    base = time.perf_counter() - t0
    voc.copy_synthesize(clips[:1], SR)  # warm-up
    _, whole = timed(voc.copy_synthesize, clips, SR, sync=sync)
    return [(f"griffinlim phase reconstruction (ours, batch {len(clips)})", ours / audio_s,
             f"librosa.griffinlim clip by clip, n_iter={n_iter}", base / audio_s),
            ("griffinlim copy synthesis (mel, inverse filterbank, phase)", whole / audio_s, "", None)]


def bench_plain(name, clips, device, sync, half=False):
    from pipeline.vocoders import get_vocoder_class

    cls = get_vocoder_class(name)
    voc = cls(device=device).use_half(half) if cls.needs_checkpoint else cls(device=device)
    voc.copy_synthesize(clips[:1], SR)
    _, secs = timed(voc.copy_synthesize, clips, SR, sync=sync)
    return [(f"{name}", secs / (clips.size / SR), "", None)]


def bench_wavernn(clips, device, sync, half=False, unfolded_clips=2):
    """Folded: the whole batch of clips in one folded, batched generation (as the convert stage
    runs it); unfolded: clip by clip, sample by sample, on ``unfolded_clips`` of them (RTF is per
    second of audio, so the two are comparable)."""
    from pipeline.vocoders.wavernn import VOCODER as WaveRNN

    voc = WaveRNN(device=device).use_half(half)
    feats = voc.features(torch.as_tensor(_resample(clips, voc.sample_rate), device=device))
    per_clip_s = clips.shape[1] / SR
    _, folded = timed(voc.generate, feats, folded=True, sync=sync)
    _, unfolded = timed(lambda: [voc.generate(f[None], folded=False) for f in feats[:unfolded_clips]], sync=sync)
    return [(f"wavernn folded (batch of {len(clips)} clips)", folded / (len(clips) * per_clip_s),
             "unfolded, one clip at a time, sample by sample", unfolded / (unfolded_clips * per_clip_s))]


def bench_wavenet(clips, device, sync, half=False, frames=2, naive_steps=8):
    """Per-sample cost at steady state: incremental generation of ``frames`` mel frames, against
    the naive step, which runs the whole stack over a full receptive field to produce one sample
    (timed over ``naive_steps`` steps: its cost per sample is constant once the field is full)."""
    from pipeline.vocoders.wavenet import VOCODER as WaveNet

    voc = WaveNet(device=device).use_half(half)
    net, cfg = voc.model, voc.config
    feats = voc.features(torch.as_tensor(_resample(clips[:1], voc.sample_rate), device=device))[..., :frames]
    out, inc = timed(voc.generate, feats, incremental=True, seed=0, sync=sync)
    inc_per_sample = inc / out.shape[-1]
    rf = cfg.receptive_field()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=half):
        c = net.upsample(feats.repeat(1, 1, -(-rf // (feats.shape[-1] * voc.mel.hop_length)) + 1))[..., :rf]
        x = torch.zeros(1, 1 if cfg.scalar_input else cfg.out_channels, rf, device=device)
        net.stack(x, c)  # warm-up
        _, naive = timed(lambda: [net.stack(x, c)[:, :, -1] for _ in range(naive_steps)], sync=sync)
    naive_per_sample = naive / naive_steps
    sr = voc.sample_rate
    return [(f"wavenet incremental (per sample, {out.shape[-1]} samples)", inc_per_sample * sr,
             f"naive: whole stack over the {rf}-sample receptive field per sample", naive_per_sample * sr)]


def _resample(clips, sr):
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(clips), SR, sr).numpy() if sr != SR else clips


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated vocoder names")
    ap.add_argument("--out", type=Path, help="append the markdown table to this file")
    ap.add_argument("--half", action="store_true", help="neural vocoders in float16 (CUDA only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    clips = speech_clips(args.batch)
    benches = {
        "griffinlim": lambda: bench_griffinlim(clips, args.device, sync),
        "world": lambda: bench_plain("world", clips, "cpu", None),
        "melgan": lambda: bench_plain("melgan", clips, args.device, sync, args.half),
        "parallel_wavegan": lambda: bench_plain("parallel_wavegan", clips, args.device, sync, args.half),
        "waveglow": lambda: bench_plain("waveglow", clips, args.device, sync, args.half),
        "wavernn": lambda: bench_wavernn(clips, args.device, sync, args.half),
        "wavenet": lambda: bench_wavenet(clips, args.device, sync, args.half),
    }
    only = [x for x in args.only.split(",") if x] or list(benches)
    rows = []
    for name in only:
        try:
            rows += benches[name]()
        except Exception as e:  # a vocoder that cannot run here is reported, not hidden
            rows.append((name, None, f"not measured: {type(e).__name__}: {e}", None))
        print(rows[-1], file=sys.stderr)
    emit(render(rows, args), args.out)


def render(rows, args) -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.machine()
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({cpu}), {args.threads} thread(s)"
    precision = "float16" if args.half else "float32"
    head = (f"Device: {dev}; torch {torch.__version__}; neural vocoders in {precision}; batch {args.batch} clips of {CLIP / SR:.2f} s real speech.\n\n"
            "| vocoder | RTF | baseline | baseline RTF | speed-up |\n|---|---|---|---|---|")
    body = []
    for name, rtf, base, base_rtf in rows:
        f = lambda x: "-" if x is None else f"{x:.4g}"  # noqa: E731
        speed = f"{base_rtf / rtf:.1f}x" if rtf and base_rtf else "-"
        body.append(f"| {name} | {f(rtf)} | {base or '-'} | {f(base_rtf)} | {speed} |")
    return "\n".join([head, *body])


if __name__ == "__main__":
    main()
