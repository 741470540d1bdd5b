"""What the detector looks at: face patches, class-activation maps and attention over time, as PNGs.

:func:`visualize` picks ``n`` samples of a :class:`~detector.data.ShardDataset` (transform
``Augment(train=False)``), runs the model on each with gradients, and writes for models that read video

- ``patches_<k>_<id>.png``: the face patches with the highest and lowest 10 % **patch score**,
  and one ``patches_summary.png`` (a row per sample: its highest and lowest patches);
- ``cam_<k>_<id>.png``: Grad-CAM heat maps over a strip of frames;

and for models that read audio ``mel_<k>_<id>.png``: the log-mels of a real clip and its fake
counterpart (same ``audio/source_sample`` and clip: the ``own`` and ``vocoded`` pairs) one above
the other, each with the attention over time as a curve.

Definitions (our reading of the paper's figures for this architecture, whose sync-stream
attention is over time steps, not space):

- **Grad-CAM** (Selvaraju et al. 2017) of the main logit (``logit_sync`` for av models,
  ``logit_video`` / ``logit_audio`` for the single streams; the *fake* logit, so maps show
  evidence for "fake") w.r.t. a stream's last stage A (C, T, h, w):
  ``ReLU(sum_c alpha_c A_c)`` with ``alpha_c`` the gradient averaged over T, h, w; upsampled
  (trilinear) to (frames, crop, crop) and divided by its maximum (all zeros stay zeros).
- **Attention received** by a time step: the cross-attention weights averaged over layers,
  heads and queries, times the number of steps (1 = uniform). Video steps use ``audio_video``
  (audio queries video), audio steps ``video_audio``. Step s covers frames / mel frames
  [s L / S, (s + 1) L / S) of a clip of L of them.
- **Patch score**: each frame of the strip (``STRIP_FRAMES`` frames spread over the clip) is cut
  into a ``PATCH_GRID`` x ``PATCH_GRID`` grid; a patch scores (attention its frame's step
  receives) x (mean Grad-CAM value over the patch). Models without attention (video, av-noatt)
  use Grad-CAM alone, and their titles say so. The top and bottom ``FRACTION`` of the patches
  (at least one each) are shown. Scores are normalised per clip, so the summary sheet compares
  samples by rank, not by value.
- **Curve over the mel**: attention received by the audio steps; without attention, the audio
  stream's Grad-CAM averaged over frequency.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import zarr
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


PATCH_GRID = 7  # patches per side of a face crop
FRACTION = 0.1  # share of patches shown as highest and as lowest
STRIP_FRAMES = 8  # frames of a clip shown (and cut into patches)
SUMMARY_TILES = 8  # patches per side and sample on the summary sheet
TILE_INCH = 0.62  # size of one patch on the page
DPI = 100


# --- Grad-CAM and attention ---------------------------------------------------------------------

def grad_cam(features: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM from a stage's activations and the gradient of a logit w.r.t. them.

    Shapes: features, grads (B, C, *dims) -> (B, *dims), non-negative, not normalised.
    """
    alpha = grads.flatten(2).mean(-1)  # (B, C)
    cam = (alpha.view(*alpha.shape, *([1] * (features.ndim - 2))) * features).sum(1)
    return F.relu(cam)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Each row of (B, ...) divided by its maximum; rows of zeros stay zeros."""
    peak = x.flatten(1).amax(1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
    return x / peak


def attention_received(attention: dict, direction: str) -> torch.Tensor | None:
    """{``layer<r>.<direction>``: (B, heads, Tq, S)} -> (B, S): weight each key step receives,
    averaged over layers, heads and queries, times S (1 = uniform); None without such maps."""
    maps = [w for k, w in attention.items() if k.split(".", 1)[1] == direction]
    if not maps:
        return None
    return torch.stack([w.float().mean(dim=(1, 2)) for w in maps]).mean(0) * maps[0].shape[-1]


def stretch(per_step: np.ndarray, length: int) -> np.ndarray:
    """(S,) values per sync step -> (length,): element i takes the step covering it."""
    steps = len(per_step)
    return per_step[np.minimum(np.arange(length) * steps // length, steps - 1)]


def _last_stage(features: dict, stream: str) -> str | None:
    stages = [k for k in features if k.startswith(f"{stream}.stage")]
    return max(stages, key=lambda k: int(k.rsplit("stage", 1)[1])) if stages else None


def _video_maps(video: torch.Tensor, stage: torch.Tensor, grads: torch.Tensor, attention: dict) -> dict:
    """Frames, Grad-CAM (F, H, W) and per-frame attention of one clip (F, 3, H, W)."""
    frames = video.shape[0]
    cam = grad_cam(stage, grads)[:, None]  # (1, 1, T, h, w)
    cam = F.interpolate(cam, size=(frames, *video.shape[-2:]), mode="trilinear", align_corners=False)[:, 0]
    att = attention_received(attention, "audio_video")
    weight = np.ones(frames) if att is None else stretch(att[0].cpu().numpy(), frames)
    return {"frames": video.permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy(),
            "cam": normalise(cam.clamp_min(0))[0].cpu().numpy(), "frame_weight": weight}


def _audio_curve(mel: torch.Tensor, stage: torch.Tensor, grads: torch.Tensor, attention: dict) -> np.ndarray:
    """Attention received by the audio steps, else Grad-CAM averaged over frequency: (T,) for a mel (n_mels, T)."""
    att = attention_received(attention, "video_audio")
    if att is not None:
        return stretch(att[0].cpu().numpy(), mel.shape[-1])
    cam = grad_cam(stage, grads).mean(1, keepdim=True)  # (1, 1, t)
    cam = F.interpolate(cam, size=mel.shape[-1], mode="linear", align_corners=False)[:, 0]
    return normalise(cam.clamp_min(0))[0].cpu().numpy()


def explain(model, sample: dict) -> dict:
    """Run one (transformed) sample through ``model`` with gradients.

    The gradients of the main logit w.r.t. the streams' last stages (``out["features"]``, part of
    the autograd graph) come from ``torch.autograd.grad``: no hooks, parameters' ``.grad`` untouched.
    Returns ``probs`` {output: float}, ``main`` (the output explained), ``has_attention``; for
    video models ``frames`` (F, H, W, 3) in [0, 1], ``cam`` (F, H, W) in [0, 1], ``frame_weight``
    (F,) (attention received; ones without attention), ``video_stage``; for audio models ``mel``
    (n_mels, T), ``mel_curve`` (T,) and ``curve_label``.
    """
    main = type(model).main_output
    device = next(model.parameters()).device
    batch = {}
    for key in ("video", "audio"):
        if key in sample:
            x = sample[key][None].to(device)
            batch[key] = (x.float() / 255.0 if x.dtype == torch.uint8 else x.float()).requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad():
        out = model(batch)
        feats = out["features"]
        keys = [k for k in (_last_stage(feats, "video"), _last_stage(feats, "audio")) if k]
        grads = torch.autograd.grad(out[f"logit_{main}"].sum(), [feats[k] for k in keys], allow_unused=True)
    grads = {k: torch.zeros_like(feats[k]) if g is None else g for k, g in zip(keys, grads)}
    stages = {k: feats[k].detach() for k in keys}
    attention = {k: w.detach() for k, w in out["attention"].items()}
    result = {"main": main, "has_attention": bool(attention),
              "probs": {k[2:]: float(v.detach()) for k, v in out.items() if k.startswith("p_")}}
    if "video" in batch:
        key = keys[0]
        result.update(_video_maps(batch["video"].detach()[0], stages[key], grads[key], attention), video_stage=key)
    if "audio" in batch:
        key, mel = keys[-1], feats["audio.mel"].detach()[0].float()
        label = ("attention received (video→audio cross-attention)" if attention
                 else f"Grad-CAM of logit_{main} ({key}, mean over freq.)")
        audio_cfg = getattr(getattr(model, "cfg", None), "audio", None)
        result.update(mel=mel.cpu().numpy(), mel_curve=_audio_curve(mel, stages[key], grads[key], attention),
                      curve_label=label, frontend=getattr(audio_cfg, "frontend", "logmel"))
    return result


# --- patch scores -------------------------------------------------------------------------------

def strip_frames(num_frames: int, count: int = STRIP_FRAMES) -> np.ndarray:
    """``count`` frame indices spread evenly over a clip of ``num_frames`` (all when fewer)."""
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int))


def patch_scores(cam: np.ndarray, frame_weight: np.ndarray, frames: np.ndarray,
                 grid: int = PATCH_GRID) -> tuple[np.ndarray, int, int]:
    """Patch scores of ``frames`` (indices) of a clip: (len(frames), grid, grid), the patch size
    p = H // grid and the offset (H - grid p) // 2 of the (centred) grid. ``cam`` (F, H, W),
    ``frame_weight`` (F,)."""
    size = cam.shape[-1]
    p = size // grid
    if p < 1:
        raise ValueError(f"A {grid} x {grid} patch grid needs crops of at least {grid} px, but found {size}")
    off = (size - grid * p) // 2
    cells = cam[frames, off:off + grid * p, off:off + grid * p].reshape(len(frames), grid, p, grid, p)
    return cells.mean(axis=(2, 4)) * frame_weight[frames, None, None], p, off


def extreme_patches(scores: np.ndarray, fraction: float = FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the highest and of the lowest ``fraction`` of ``scores`` (at least one
    each), highest first and lowest first; ties keep index order."""
    flat = scores.ravel()
    k = max(1, round(fraction * flat.size))
    return np.argsort(-flat, kind="stable")[:k], np.argsort(flat, kind="stable")[:k]


def _cut(frames: np.ndarray, strip: np.ndarray, flat: np.ndarray, grid: int, p: int, off: int):
    """Patches (k, p, p, 3) and their (frame, row, column) for flat indices into (strip, grid, grid)."""
    f, r, c = np.unravel_index(flat, (len(strip), grid, grid))
    y, x = off + r * p, off + c * p
    return np.stack([frames[strip[i], y[j]:y[j] + p, x[j]:x[j] + p] for j, i in enumerate(f)]), (strip[f], r, c)


# --- choosing samples ---------------------------------------------------------------------------

def pick_samples(dataset, n: int, seed: int = 0) -> list[int]:
    """``n`` positions spread over the dataset's categories: "real" first, then the other
    categories in a seeded order, taking one from each in turn (each category's order seeded)."""
    rng = np.random.default_rng(seed)
    categories = dataset.strings("category")
    names = sorted(set(categories.tolist()))
    fakes = [names[i] for i in rng.permutation(len(names)) if names[i] != "real"]
    queues = [list(rng.permutation(np.flatnonzero(categories == c))) for c in (["real"] if "real" in names else [])
              + fakes]
    picked = []
    while len(picked) < min(n, len(dataset)):
        for q in queues:
            if q and len(picked) < n:
                picked.append(int(q.pop(0)))
    return picked


def source_pairs(dataset) -> dict[int, tuple[int, int]]:
    """{position: (real, fake)} for every sample that has a counterpart with the same clip and
    the same source audio (``audio/source_sample``): real = that source's unshifted real audio,
    fake = a vocoder's re-synthesis of it."""
    g = zarr.open_group(dataset.path, mode="r")
    source, origin, shift = g["audio/source"][:], g["audio/source_sample"][:], g["audio/shift"][:]
    clip, audio = dataset.table["clip"], dataset.table["audio"]
    reals, pairs = {}, {}
    for i in np.flatnonzero(audio >= 0):
        a = int(audio[i])
        if source[a] == "real" and shift[a] == 0:
            reals.setdefault((int(clip[i]), int(origin[a])), int(i))
    for i in np.flatnonzero(audio >= 0):
        a = int(audio[i])
        real = reals.get((int(clip[i]), int(origin[a])))
        if source[a] != "real" and real is not None:
            pairs[int(i)] = (real, int(i))
            pairs.setdefault(real, (real, int(i)))
    return pairs


# --- plotting -----------------------------------------------------------------------------------

def describe(info: dict) -> str:
    """Title line: id, category, labels and the model's probabilities."""
    labels = "/".join(str(int(info[k])) for k in ("video_fake", "audio_fake", "sequence_fake"))
    probs = "  ".join(f"p_{k} {v:.2f}" for k, v in info["probs"].items())
    return f"{info['id']}  [{info['category']}]  labels video/audio/seq {labels}  |  {probs}"


def _tiles(ax, patches: np.ndarray, labels: list[str], cols: int, title: str) -> None:
    """Patches (k, p, p, 3) tiled ``cols`` per row on one axes, each with its label beneath."""
    k, p = len(patches), patches.shape[1]
    rows, gap, room = -(-k // cols), max(1, p // 6), max(4, int(p * 0.55))
    img = np.ones((rows * (p + room), cols * (p + gap) - gap, 3))
    for i, (patch, text) in enumerate(zip(patches, labels)):
        r, c = divmod(i, cols)
        y, x = r * (p + room), c * (p + gap)
        img[y:y + p, x:x + p] = patch
        ax.text(x + p / 2, y + p + room * 0.45, text, ha="center", va="center", fontsize=6)
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)


def _num(x: float) -> str:
    return f"{x:.2f}" if x >= 0.01 or x == 0 else f"{x:.0e}"


def _kind(ex: dict) -> str:
    if ex["has_attention"]:
        return "score = attention received (audio→video) x Grad-CAM"
    return "score = Grad-CAM only (model has no attention)"


def _patch_data(ex: dict) -> dict:
    strip = strip_frames(len(ex["frames"]))
    scores, p, off = patch_scores(ex["cam"], ex["frame_weight"], strip)
    top, bottom = extreme_patches(scores)
    flat = scores.ravel()
    out = {"strip": strip, "p": p, "off": off, "total": flat.size}
    for name, idx in (("top", top), ("bottom", bottom)):
        patches, where = _cut(ex["frames"], strip, idx, PATCH_GRID, p, off)
        out[name] = (patches, [f"f{f} {_num(s)}" for f, s in zip(where[0], flat[idx])], where)
    return out


def plot_patches(info: dict, ex: dict, path: Path) -> Path:
    """Highest and lowest patches of one sample, and the frame holding most top patches with
    their places marked."""
    d = _patch_data(ex)
    k = len(d["top"][0])
    cols = min(8, k)
    rows = -(-k // cols)
    fig = Figure(figsize=(2 * cols * TILE_INCH + 3.6, max(3.0, rows * TILE_INCH * 1.35 + 0.9)), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[cols, cols, 5])
    pct = round(100 * FRACTION)
    for ax, name in zip(axes, ("top", "bottom")):
        _tiles(ax, d[name][0], d[name][1], cols, f"{'highest' if name == 'top' else 'lowest'} {pct}% "
                                                 f"({k} of {d['total']} patches)")
    frame = int(np.bincount(d["top"][2][0]).argmax())
    axes[2].imshow(ex["frames"][frame])
    for name, colour in (("top", "red"), ("bottom", "deepskyblue")):
        for f, r, c in zip(*d[name][2]):
            if f == frame:
                axes[2].add_patch(Rectangle((d["off"] + c * d["p"] - 0.5, d["off"] + r * d["p"] - 0.5), d["p"],
                                            d["p"], fill=False, edgecolor=colour, linewidth=1.5))
    axes[2].set_title(f"frame {frame}: red highest, blue lowest", fontsize=9)
    axes[2].set_axis_off()
    fig.suptitle(f"{describe(info)}\npatches of {len(d['strip'])} frames, {PATCH_GRID}x{PATCH_GRID} grid; "
                 f"{_kind(ex)}", fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path


def plot_summary(items: list[tuple[dict, dict]], path: Path) -> Path:
    """One row per sample: its ``SUMMARY_TILES`` highest and lowest patches."""
    fig = Figure(figsize=(2 * SUMMARY_TILES * TILE_INCH + 0.6, len(items) * 1.2 + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(items), 2))
    for (info, ex), row in zip(items, axes):
        d = _patch_data(ex)
        for ax, name in zip(row, ("top", "bottom")):
            patches, labels, _ = d[name]
            _tiles(ax, patches[:SUMMARY_TILES], labels[:SUMMARY_TILES], SUMMARY_TILES,
                   f"{info['id']} [{info['category']}] p_{ex['main']} {ex['probs'][ex['main']]:.2f}: "
                   f"{'highest' if name == 'top' else 'lowest'}" + ("" if ex["has_attention"] else " (Grad-CAM only)"))
    fig.suptitle(f"Highest (left) and lowest (right) patch scores per sample, {round(100 * FRACTION)}% of each "
                 f"clip's patches shown in its own sheet; scores normalised per clip", fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path


def plot_cam(info: dict, ex: dict, path: Path) -> Path:
    """Frames of the strip above their Grad-CAM overlays."""
    strip = strip_frames(len(ex["frames"]))
    fig = Figure(figsize=(1.55 * len(strip) + 0.3, 3.9))
    axes = fig.subplots(2, len(strip), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.8, wspace=0.05, hspace=0.12)
    for col, f in enumerate(strip):
        axes[0, col].imshow(ex["frames"][f])
        axes[1, col].imshow(0.55 * ex["frames"][f] + 0.45 * colormaps["jet"](ex["cam"][f])[..., :3])
        weight = f"  att {ex['frame_weight'][f]:.2f}" if ex["has_attention"] else ""
        axes[0, col].set_title(f"frame {f}{weight}", fontsize=8)
        for ax in axes[:, col]:
            ax.set_axis_off()
    fig.suptitle(f"{describe(info)}\nGrad-CAM of logit_{ex['main']} w.r.t. {ex['video_stage']} "
                 f"(1 = clip maximum)", fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path


# what the audio front-end's map shows: (colour bar, rows)
MAP_LABELS = {"logmel": ("ln mel power", "mel band"), "lfcc": ("LFCC value", "LFCC, deltas, double deltas"),
              "linear": ("ln power", "FFT bin"), "sinc": ("ln band envelope", "sinc filter")}


def plot_mel_pair(items: list[tuple[dict, dict]], path: Path, hop_s: float) -> Path:
    """Log-mels of a real clip and its fake counterpart, each with its curve over time."""
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    axes = fig.subplots(2, 1)
    lo = min(float(ex["mel_curve"].min()) for _, ex in items)
    hi = max(float(ex["mel_curve"].max()) for _, ex in items)
    if items[0][1]["has_attention"]:  # zoom on the curve (near-uniform attention is a flat line at 0-1.1), 1 in view
        lo, hi = min(lo, 1.0), max(hi, 1.0)
        pad = max(0.02, 0.15 * (hi - lo))
        limits = (max(0.0, lo - pad), hi + pad)
    else:
        limits = (0.0, max(hi, 1e-6) * 1.05)
    for ax, (info, ex) in zip(axes, items):
        mel, curve = ex["mel"], ex["mel_curve"]
        seconds = mel.shape[-1] * hop_s
        im = ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, mel.shape[0]))
        value, row = MAP_LABELS.get(ex.get("frontend", "logmel"), MAP_LABELS["logmel"])
        fig.colorbar(im, ax=ax, label=value, pad=0.06)
        ax.set_ylabel(row)
        ax.set_xlabel("time (s)")
        twin = ax.twinx()
        twin.plot(np.arange(len(curve)) * hop_s, curve, color="cyan", linewidth=2)
        twin.set_ylim(*limits)
        twin.set_ylabel("attention (1 = uniform)" if ex["has_attention"] else "Grad-CAM (1 = clip max.)",
                        color="darkcyan")
        ax.set_title(describe(info), fontsize=9)
    fig.suptitle(f"Same source audio: real (top) and its re-synthesis (bottom); cyan: {items[0][1]['curve_label']}",
                 fontsize=10)
    fig.savefig(path, dpi=DPI)
    return path


# --- driver -------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:60]


def visualize(model, dataset, out_dir, n: int, seed: int = 0) -> list[Path]:
    """Write the PNGs described in the module docstring for ``n`` samples of ``dataset``.

    Args:
        model: a detector (a class of :data:`detector.builder.MODELS`); run in eval mode,
            its mode is restored afterwards.
        dataset: a ShardDataset with the model's modalities and its transform (normally
            ``Augment(train=False)``).
        out_dir: created if missing.
        n: samples to show (see :func:`pick_samples`); mel pairs: up to ``n``, those of the
            picked samples that have a counterpart (:func:`source_pairs`).
        seed: the choice of samples.

    Returns the paths written: per-sample patch sheets and Grad-CAM strips, the summary sheet,
    then the mel pairs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids, categories = dataset.strings("id"), dataset.strings("category")
    cache: dict[int, tuple[dict, dict]] = {}

    def run(i: int) -> tuple[dict, dict]:
        if i not in cache:
            sample = dataset[i]
            info = {"id": str(ids[i]), "category": str(categories[i]),
                    **{k: float(sample[k]) for k in ("video_fake", "audio_fake", "sequence_fake")}}
            ex = explain(model, sample)
            cache[i] = ({**info, "probs": ex["probs"]}, ex)
        return cache[i]

    was_training = model.training
    model.eval()
    written: list[Path] = []
    try:
        picked = pick_samples(dataset, n, seed)
        items = [run(i) for i in picked]
        video_items = [(k, it) for k, it in enumerate(items) if "cam" in it[1]]
        for k, (info, ex) in video_items:
            stem = f"{k:02d}_{_slug(info['id'])}"
            written.append(plot_patches(info, ex, out_dir / f"patches_{stem}.png"))
            written.append(plot_cam(info, ex, out_dir / f"cam_{stem}.png"))
        if video_items:
            written.append(plot_summary([it for _, it in video_items], out_dir / "patches_summary.png"))
        if any("mel" in ex for _, ex in items):
            acfg = model.cfg.audio
            pairs = source_pairs(dataset)
            chosen = list(dict.fromkeys(pairs[i] for i in picked if i in pairs))[:n]
            for k, (real, fake) in enumerate(chosen):
                stem = f"{k:02d}_{_slug(str(ids[real]))}"
                written.append(plot_mel_pair([run(real), run(fake)], out_dir / f"mel_{stem}.png",
                                             acfg.hop_length / acfg.sample_rate))
    finally:
        model.train(was_training)
    return written
