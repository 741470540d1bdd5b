"""Look at what a store holds: counts, failures by reason, and a contact sheet of crops."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import store as st

_LABEL_NAMES = {0: "real", 1: "fake", -1: "none"}
_STATUS_NAMES = {v: k for k, v in st.STATUS.items()}


def inspect_store(store) -> dict:
    """Counts of a store's samples and failures, as a JSON-serialisable dict."""
    attrs = st.store_attrs(store)
    plan = attrs["stages"].get("extract")
    if plan is None:
        raise ValueError(f"{store} has no extracted samples yet (run `avdd-data extract`)")
    root = st.open_root(store)
    m = {k: root[f"meta/{k}"][:] for k in ("status", "has_video", "has_audio", "video_label", "audio_label",
                                           "method", "split", "item")}
    markers = st.valid_markers(store, "extract", "samples", plan["stage_hash"])
    done = st.done_mask(store, "extract", "samples", plan["stage_hash"], plan["n_samples"], plan["shard_size"])
    used = done & (m["status"] <= st.STATUS["partial"])
    labels = Counter(
        f"video={_LABEL_NAMES[int(v)]},audio={_LABEL_NAMES[int(a)]}"
        for v, a in zip(m["video_label"][used], m["audio_label"][used])
    )
    sample_fail, item_fail = Counter(), Counter()
    examples = []
    for mk in markers:
        for f in mk["failures"]:
            (sample_fail if f["sample"] is not None else item_fail)[f["reason"]] += 1
            if len(examples) < 20:
                examples.append({k: f[k] for k in ("id", "clip", "reason")} | {"detail": f["detail"].split("\n")[0]})
    return {
        "store": str(store),
        "format_version": attrs["version"],
        "items": plan["n_items"],
        "shards": {"done": len(markers), "total": plan["n_shards"]},
        "samples": int(used.sum()),
        "by_status": {name: int(((m["status"] == code) & done).sum()) for code, name in _STATUS_NAMES.items()},
        "with_video": int((used & m["has_video"]).sum()),
        "with_audio": int((used & m["has_audio"]).sum()),
        "by_label": dict(labels),
        "by_method": dict(Counter(str(x) or "none" for x in m["method"][used])),
        "by_split": dict(Counter(str(x) or "none" for x in m["split"][used])),
        "failures": {"samples_by_reason": dict(sample_fail), "items_by_reason": dict(item_fail),
                     "examples": examples},
        "config": plan["config"],
        "vocoders": _vocoders(store, attrs),
    }


def _vocoders(store, attrs: dict) -> dict:
    """Per converted vocoder: clips converted and failed, quality figures, checkpoint."""
    from .convert import quality_summary

    out = {}
    for key, plan in sorted(attrs["stages"].items()):
        if not key.startswith("convert:"):
            continue
        name = plan["vocoder"]
        markers = st.valid_markers(store, "convert", name, plan["stage_hash"])
        out[name] = {
            "shards_done": len(markers),
            "converted": sum(m["counts"]["samples"] for m in markers),
            "failed": sum(m["counts"]["failed"] for m in markers),
            "audio_seconds": round(sum(m["counts"]["audio_seconds"] for m in markers), 2),
            "checkpoint_hash": plan["info"]["checkpoint_hash"],
            "quality": quality_summary(store, name),
        }
    return out


def format_report(info: dict) -> str:
    """The summary of :func:`inspect_store` as aligned text."""
    lines = [f"store {info['store']}  (format v{info['format_version']})",
             f"items {info['items']}   shards done {info['shards']['done']}/{info['shards']['total']}",
             f"samples {info['samples']}   with video {info['with_video']}   with audio {info['with_audio']}"]
    for title in ("by_status", "by_label", "by_method", "by_split"):
        lines.append(f"{title.replace('_', ' ')}:")
        lines += [f"  {k:<28} {v:>8}" for k, v in sorted(info[title].items())]
    f = info["failures"]
    lines.append("failures (samples) by reason:")
    lines += [f"  {k:<28} {v:>8}" for k, v in sorted(f["samples_by_reason"].items())] or ["  none"]
    lines.append("failures (whole items) by reason:")
    lines += [f"  {k:<28} {v:>8}" for k, v in sorted(f["items_by_reason"].items())] or ["  none"]
    for e in f["examples"][:10]:
        clip = "" if e["clip"] is None else f" clip {e['clip']}"
        lines.append(f"  - {e['id']}{clip}: {e['reason']} {e['detail']}".rstrip())
    if info["vocoders"]:
        lines.append("converted audio (quality against the real clip, mean over clips):")
        lines.append(f"  {'vocoder':<18} {'clips':>6} {'failed':>6} {'MCD dB':>8} {'LSD dB':>8} {'env corr':>9}  checkpoint")
        for name, v in info["vocoders"].items():
            q = {k: (f"{x['mean']:.3f}" if x["mean"] is not None else "-") for k, x in v["quality"].items()}
            lines.append(f"  {name:<18} {v['converted']:>6} {v['failed']:>6} {q['mcd']:>8} {q['lsd']:>8} "
                         f"{q['env_corr']:>9}  {v['checkpoint_hash'] or '-'}")
    return "\n".join(lines)


def contact_sheet(store, out_png, max_rows: int = 12, frames: int = 8) -> int:
    """Write a PNG with one row per sample: ``frames`` face crops spread over the clip, the
    mouth crops of the same frames, a caption and the clip's waveform. Picks the first clip
    of each item first, then later clips. Returns the number of rows drawn."""
    root = st.open_root(store)
    status, has_video = root["meta/status"][:], root["meta/has_video"][:]
    clip, ids = root["meta/clip"][:], root["meta/id"][:]
    order = [i for i in np.lexsort((np.arange(len(clip)), clip)) if has_video[i] and status[i] <= 1][:max_rows]
    if not order:
        raise ValueError(f"{store} has no samples with face crops to show")
    fps = st.store_attrs(store)["stages"]["extract"]["config"]["fps"]
    face, mouth, audio = root["video/face"], root["video/mouth"], root["audio/real"]
    S = face.shape[2]
    caption_w, wave_h = 220, 28
    sheet = Image.new("RGB", (caption_w + 2 * frames * S, len(order) * (S + wave_h)), "white")
    draw = ImageDraw.Draw(sheet)
    meta = {k: root[f"meta/{k}"][:] for k in ("start_frame", "video_label", "audio_label", "has_audio", "method")}
    for r, i in enumerate(order):
        y = r * (S + wave_h)
        f, mo = face[i], mouth[i]
        picks = np.linspace(0, len(f) - 1, frames).round().astype(int)
        for k, t in enumerate(picks):
            sheet.paste(Image.fromarray(f[t]), (caption_w + k * S, y))
            sheet.paste(Image.fromarray(mo[t]).resize((S, S), Image.BILINEAR), (caption_w + (frames + k) * S, y))
        text = (f"{ids[i]}\nclip {clip[i]} @ {meta['start_frame'][i] / fps:.2f} s\n"
                f"video {_LABEL_NAMES[int(meta['video_label'][i])]} / audio {_LABEL_NAMES[int(meta['audio_label'][i])]}\n"
                f"method {meta['method'][i] or '-'}\naudio: {'yes' if meta['has_audio'][i] else 'none'}")
        draw.multiline_text((6, y + 6), _wrap(text, 34), fill="black")
        _waveform(draw, audio[i] if meta["has_audio"][i] else None, caption_w, y + S, sheet.width - caption_w, wave_h)
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return len(order)


def _wrap(text: str, width: int) -> str:
    out = []
    for line in text.split("\n"):
        while len(line) > width:
            out.append(line[:width])
            line = "  " + line[width:]
        out.append(line)
    return "\n".join(out)


def _waveform(draw: ImageDraw.ImageDraw, audio, x0: int, y0: int, w: int, h: int) -> None:
    mid = y0 + h // 2
    if audio is None:
        draw.text((x0 + 6, y0 + 8), "no audio", fill="gray")
        return
    env = np.abs(np.asarray(audio)[: len(audio) // w * w]).reshape(w, -1).max(axis=1)
    env = env / max(float(env.max()), 1e-6)
    for x, v in enumerate(env):
        draw.line((x0 + x, mid - v * (h // 2 - 2), x0 + x, mid + v * (h // 2 - 2)), fill=(40, 90, 200))
