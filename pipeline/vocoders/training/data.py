"""Training data: real speech utterances, held-out ones by file, and seeded random segments.

Sources (one of): a folder of audio/video files (searched recursively), a manifest (its rows'
``audio_path`` or ``path``, real audio only), or an extracted store (its ``audio/real`` clips).
Every utterance is decoded to mono at the vocoder's rate. The last ``n_val`` files in a seeded
shuffle of the sorted names are held out for validation (whole files, never segments of a
training file). Segments are drawn by :class:`SegmentSampler` from a NumPy generator whose state
is saved with each resume checkpoint, so a resumed run sees the same segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".raw", ".mp4", ".mkv", ".webm", ".mov", ".avi")


@dataclass
class Utterance:
    name: str  # file path (or store item) it came from
    audio: np.ndarray  # (N,) float32 at the rate it was decoded at


def source_files(audio_dir=None, manifest=None) -> list[tuple[str, Path]]:
    """(name, path) of the audio sources in a folder or a manifest, sorted by name."""
    if audio_dir is not None:
        root = Path(audio_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"Audio folder not found: {root}")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise ValueError(f"{root}: no audio or video files ({', '.join(AUDIO_SUFFIXES)})")
        return [(str(p.relative_to(root)), p) for p in files]
    from ...manifest import manifest_root, read_manifest

    rows = read_manifest(manifest)
    root = manifest_root(manifest)
    out = [(r.id, root / (r.audio_path or r.path)) for r in rows if r.audio_label in (None, "real")
           and r.has_audio is not False]
    if not out:
        raise ValueError(f"{manifest}: no rows with real audio")
    return sorted(out)


def load_files(files: list[tuple[str, Path]], sample_rate: int) -> list[Utterance]:
    """Decode each file (mono, ``sample_rate``); files without audio are skipped."""
    from ...media import read_audio

    out = []
    for name, path in files:
        try:
            audio = read_audio(path, sample_rate=sample_rate)
        except Exception as e:  # noqa: BLE001 - a file without an audio track is no training data
            if "audio" not in str(e).lower() and "stream" not in str(e).lower():
                raise
            continue
        if audio.size and np.abs(audio).max() > 0:
            out.append(Utterance(name, audio.astype(np.float32)))
    return out


def load_store(store, sample_rate: int) -> list[Utterance]:
    """The real audio clips of an extracted store, resampled to ``sample_rate``."""
    import torchaudio.functional as AF

    from ... import store as st

    root = st.open_root(store)
    sr = st.store_attrs(store)["stages"]["extract"]["config"]["sample_rate"]
    has = root["meta/has_audio"][:]
    ids = root["meta/id"][:] if "meta/id" in root else np.arange(len(has)).astype(str)
    out = []
    for i in np.flatnonzero(has):
        x = torch.as_tensor(np.asarray(root["audio/real"][int(i)], dtype=np.float32))
        if sr != sample_rate:
            x = AF.resample(x, sr, sample_rate)
        out.append(Utterance(str(ids[i]), x.numpy()))
    if not out:
        raise ValueError(f"{store}: no real audio extracted")
    return out


def split(names: list[str], n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) names: a seeded shuffle of the sorted names; the last n_val are held out."""
    names = sorted(set(names))
    if len(names) <= n_val:
        raise ValueError(f"Need more than n_val = {n_val} utterances to hold some out, found {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    return sorted(shuffled[: len(names) - n_val]), sorted(shuffled[len(names) - n_val :])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


class SegmentSampler:
    """Random fixed-length segments of the training utterances, length-weighted; utterances
    shorter than a segment are zero-padded at the end. ``state``/``load_state``: the generator.

    A segment whose RMS is more than ``silence_db`` below its utterance's RMS is drawn again (up
    to ``MAX_DRAWS`` times, then kept): corpora with pauses between words (read letters,
    conversational speech) otherwise give batches of near-silence, whose spectral convergence
    ``||S - S'|| / ||S||`` divides by almost nothing and swamps the gradient of the batches that
    hold speech. ``silence_db`` 0 or below turns the check off."""

    MAX_DRAWS = 10

    def __init__(self, utterances: list[Utterance], segment: int, seed: int, silence_db: float):
        if not utterances:
            raise ValueError("No training utterances")
        self.audio = [u.audio for u in utterances]
        self.segment = segment
        lengths = np.array([max(len(a) - segment, 0) + 1 for a in self.audio], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)
        ratio = 10 ** (-silence_db / 20) if silence_db > 0 else 0.0
        self.floor = [ratio * _rms(a) for a in self.audio]

    def _draw(self) -> np.ndarray:
        for _ in range(self.MAX_DRAWS):
            i = int(self.rng.choice(len(self.audio), p=self.p))
            a = self.audio[i]
            start = int(self.rng.integers(0, max(len(a) - self.segment, 0) + 1))
            piece = a[start : start + self.segment]
            if _rms(piece) >= self.floor[i]:
                break
        return piece

    def batch(self, batch_size: int) -> torch.Tensor:
        """(batch_size, segment) float32."""
        out = np.zeros((batch_size, self.segment), np.float32)
        for b in range(batch_size):
            piece = self._draw()
            out[b, : len(piece)] = piece
        return torch.from_numpy(out)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def total_seconds(utterances: list[Utterance], sample_rate: int) -> float:
    return float(sum(len(u.audio) for u in utterances) / sample_rate)
