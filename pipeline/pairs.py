"""Which audio-visual samples a store yields for training: pair types, labels, splits,
held-out categories and class balance. Pure planning on the store's metadata; no media is read.

Pair types (``--pairs``):

- ``own``      a clip's video with its own audio, labels from the manifest: real video + real
               audio, fake video + its own (real) audio, FakeAVCeleb's four categories, and
               audio-only items (real speech, ASVspoof / In-the-Wild spoofs);
- ``vocoded``  a clip's video (if any) with a vocoder's re-synthesis of its real audio: real or
               fake video + converted audio (one sample per vocoder, or one random vocoder per
               clip with ``vocoder_mode="random"``);
- ``shifted``  real video with its own real audio shifted by a few frames (out of sync);
- ``swapped``  real video with real audio from another clip (same item, else same identity,
               else any clip of the split): out of sync.

Labels: ``video_fake``, ``audio_fake``, and ``sequence_fake`` = either of them, or an
out-of-sync pair. A modality whose label the manifest does not give is left out of the sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAIRS = ("own", "vocoded", "shifted", "swapped")
SPLIT_NAMES = ("train", "val", "test", "holdout")


@dataclass(frozen=True)
class PairConfig:
    pairs: tuple[str, ...] = ("own", "vocoded")
    vocoders: tuple[str, ...] | None = None  # None: every vocoder the store was converted with
    vocoder_mode: str = "each"  # "each": one sample per vocoder; "random": one random vocoder per clip
    shift_frames: tuple[int, int] = (4, 16)  # |offset| of shifted pairs, in video frames (inclusive)
    holdout_category: str | None = None  # a method or vocoder moved to the "holdout" split
    balance: str = "none"  # "none", "label" (sequence_fake 50/50 per split), "category" (equal per category)
    unpaired: bool = False  # ablation: audio permuted across the samples of each split (labels travel)
    keep_unlabelled: bool = False  # inference: keep samples whose labels are unknown (labels -1, own pairs)
    seed: int = 0

    def __post_init__(self):
        bad = sorted(set(self.pairs) - set(PAIRS))
        if bad or not self.pairs:
            raise ValueError(f"Unknown pair type(s) {bad}; choose from {', '.join(PAIRS)}")
        if self.vocoder_mode not in ("each", "random"):
            raise ValueError(f"vocoder_mode must be 'each' or 'random', not {self.vocoder_mode!r}")
        if self.balance not in ("none", "label", "category"):
            raise ValueError(f"balance must be 'none', 'label' or 'category', not {self.balance!r}")
        lo, hi = self.shift_frames
        if not 0 < lo <= hi:
            raise ValueError(f"shift_frames must be 0 < min <= max, not {self.shift_frames}")


@dataclass
class Samples:
    """One row per training sample (parallel lists)."""

    clip: list[int] = field(default_factory=list)  # store sample of the video part, -1: none
    audio: list[tuple] = field(default_factory=list)  # (source, store sample, shift samples) or None
    video_fake: list[int] = field(default_factory=list)
    audio_fake: list[int] = field(default_factory=list)
    sequence_fake: list[int] = field(default_factory=list)
    pair: list[str] = field(default_factory=list)
    method: list[str] = field(default_factory=list)
    vocoder: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    sync_offset: list[int] = field(default_factory=list)  # frames; 0 in sync
    split: list[str] = field(default_factory=list)
    item: list[int] = field(default_factory=list)

    def add(self, **kw) -> None:
        for k, v in kw.items():
            getattr(self, k).append(v)

    def __len__(self) -> int:
        return len(self.pair)

    def take(self, keep: np.ndarray) -> "Samples":
        out = Samples()
        for name in self.__dataclass_fields__:
            setattr(out, name, [getattr(self, name)[i] for i in keep])
        return out


@dataclass
class StoreView:
    """The store metadata planning needs (arrays over the store's samples)."""

    usable: np.ndarray  # bool: extracted (status ok or partial, shard done)
    has_video: np.ndarray
    has_audio: np.ndarray
    video_label: np.ndarray  # int8 0 real, 1 fake, -1 unknown
    audio_label: np.ndarray
    method: np.ndarray  # str
    item: np.ndarray  # int
    identity: np.ndarray  # str
    item_split: np.ndarray  # str per item
    converted: dict[str, np.ndarray]  # vocoder -> bool per sample (conversion present and not failed)
    samples_per_frame: int  # audio samples per video frame


def _category(vf: int, af: int, pair: str, method: str, vocoder: str) -> str:
    if pair in ("shifted", "swapped"):
        return pair
    parts = []
    if vf:
        parts.append(f"video:{method or 'unknown'}")
    if af:
        parts.append(f"vocoder:{vocoder}" if vocoder else f"audio:{method or 'unknown'}")
    return "+".join(parts) or "real"


def plan_samples(view: StoreView, cfg: PairConfig) -> tuple[Samples, dict]:
    """Enumerate, hold out and balance the samples; returns them and a report of what was left out."""
    rng = np.random.default_rng(cfg.seed)
    vocoders = list(view.converted) if cfg.vocoders is None else list(cfg.vocoders)
    missing = sorted(set(vocoders) - set(view.converted))
    if missing:
        raise ValueError(f"The store has no conversion with {missing}; converted: {sorted(view.converted) or 'none'}")
    out, skipped = Samples(), {"unlabelled": 0, "not_extracted": int((~view.usable).sum())}
    split_of = lambda s: str(view.item_split[view.item[s]])  # noqa: E731
    by_split: dict[str, list[int]] = {}
    for s in np.flatnonzero(view.usable & view.has_audio & (view.audio_label == 0)):
        by_split.setdefault(split_of(s), []).append(int(s))
    for s in np.flatnonzero(view.usable):
        hv = bool(view.has_video[s] and view.video_label[s] >= 0)
        ha = bool(view.has_audio[s] and view.audio_label[s] >= 0)
        if cfg.keep_unlabelled and (view.video_label[s] < 0 and view.has_video[s]
                                    or view.audio_label[s] < 0 and view.has_audio[s]):
            _add_unlabelled(out, view, int(s), split_of(s))
            continue
        if not (hv or ha):
            skipped["unlabelled"] += 1
            continue
        vf = int(view.video_label[s] == 1) if hv else 0
        common = dict(method=str(view.method[s]) if (vf or (ha and view.audio_label[s] == 1)) else "",
                      split=split_of(s), item=int(view.item[s]))
        real_av = hv and ha and vf == 0 and view.audio_label[s] == 0
        if "own" in cfg.pairs:
            af = int(view.audio_label[s] == 1) if ha else 0
            _add(out, s if hv else -1, ("real", int(s), 0) if ha else None, vf, af, "own", "", 0, **common)
        if "vocoded" in cfg.pairs and ha and view.audio_label[s] == 0:
            usable = [v for v in vocoders if view.converted[v][s]]
            if cfg.vocoder_mode == "random" and usable:
                usable = [usable[rng.integers(len(usable))]]
            for v in usable:
                _add(out, s if hv else -1, (v, int(s), 0), vf, 1, "vocoded", v, 0,
                     **{**common, "method": common["method"] if vf else ""})
        if "shifted" in cfg.pairs and real_av:
            lo, hi = cfg.shift_frames
            k = int(rng.integers(lo, hi + 1)) * int(rng.choice([-1, 1]))
            _add(out, s, ("real", int(s), k * view.samples_per_frame), 0, 0, "shifted", "", k, **common)
        if "swapped" in cfg.pairs and real_av:
            partner = _partner(view, s, by_split.get(common["split"], []), rng)
            if partner is not None:
                _add(out, s, ("real", partner, 0), 0, 0, "swapped", "", 0, **common)
    if cfg.unpaired:
        _unpair(out, rng)
    report = {"skipped": skipped}
    if cfg.holdout_category:
        report["holdout"] = _hold_out(out, cfg.holdout_category)
    if cfg.balance != "none":
        out, report["balance"] = _balance(out, cfg.balance, rng)
    return out, report


def _add(out: Samples, clip, audio, vf, af, pair, vocoder, offset, method, split, item) -> None:
    seq = int(vf or af or pair in ("shifted", "swapped"))
    out.add(clip=clip, audio=audio, video_fake=vf, audio_fake=af, sequence_fake=seq, pair=pair, method=method,
            vocoder=vocoder, category=_category(vf, af, pair, method, vocoder), sync_offset=offset, split=split,
            item=item)


def _add_unlabelled(out: Samples, view: StoreView, s: int, split: str) -> None:
    """A sample to score, not to train on: what it has, labels -1 where unknown."""
    vl = int(view.video_label[s]) if view.has_video[s] else 0
    al = int(view.audio_label[s]) if view.has_audio[s] else 0
    seq = -1 if -1 in (vl, al) else int(vl == 1 or al == 1)
    out.add(clip=s if view.has_video[s] else -1, audio=("real", s, 0) if view.has_audio[s] else None,
            video_fake=vl, audio_fake=al, sequence_fake=seq, pair="own", method=str(view.method[s]), vocoder="",
            category="unlabelled", sync_offset=0, split=split, item=int(view.item[s]))


def _partner(view: StoreView, s: int, pool: list[int], rng) -> int | None:
    """Real audio of another clip: of the same item, else of the same identity, else any."""
    same_item = [p for p in pool if view.item[p] == view.item[s] and p != s]
    if same_item:
        return int(rng.choice(same_item))
    ident = view.identity[s]
    same_id = [p for p in pool if ident and view.identity[p] == ident and view.item[p] != view.item[s]]
    others = same_id or [p for p in pool if view.item[p] != view.item[s]]
    return int(rng.choice(others)) if others else None


def _unpair(out: Samples, rng) -> None:
    """The unpaired ablation: within each split, the audio of the samples that have both
    modalities is permuted (each audio keeps its own label and vocoder); the sequence label and
    category follow."""
    split_arr = np.array(out.split)
    both = np.array([c >= 0 and a is not None for c, a in zip(out.clip, out.audio)])
    for split in sorted(set(out.split)):
        idx = np.flatnonzero((split_arr == split) & both)
        perm = rng.permutation(idx)
        moved = [(out.audio[j], out.audio_fake[j], out.vocoder[j]) for j in perm]
        for i, (audio, af, voc) in zip(idx, moved):
            out.audio[i], out.audio_fake[i], out.vocoder[i] = audio, af, voc
            out.sequence_fake[i] = int(out.video_fake[i] or af)
            out.pair[i] = "unpaired"
            out.category[i] = _category(out.video_fake[i], af, "own", out.method[i], voc)


def _hold_out(out: Samples, name: str) -> dict:
    known = sorted({m for m in out.method if m} | {v for v in out.vocoder if v})
    if name not in known:
        raise ValueError(f"Unknown category {name!r} to hold out; the samples have: {', '.join(known) or 'none'}")
    moved = 0
    for i in range(len(out)):
        if (out.method[i] == name and (out.video_fake[i] or out.audio_fake[i])) or out.vocoder[i] == name:
            out.split[i] = "holdout"
            moved += 1
    return {"category": name, "moved": moved}


def _balance(out: Samples, how: str, rng) -> tuple[Samples, dict]:
    """Downsample (seeded) within each split: the majority label, or every category to the
    smallest one. The holdout split is left as it is."""
    keep = []
    split_arr = np.array(out.split)
    key = np.array(out.sequence_fake) if how == "label" else np.array(out.category)
    dropped = 0
    for split in sorted(set(out.split)):
        idx = np.flatnonzero(split_arr == split)
        if split == "holdout":
            keep += list(idx)
            continue
        groups = [idx[key[idx] == k] for k in sorted(set(key[idx].tolist()))]
        n = min(len(g) for g in groups)
        for g in groups:
            chosen = np.sort(rng.choice(g, size=n, replace=False)) if len(g) > n else g
            keep += list(chosen)
            dropped += len(g) - len(chosen)
    return out.take(np.sort(np.array(keep, dtype=int))), {"by": how, "dropped": dropped}
