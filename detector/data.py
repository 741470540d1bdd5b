"""Reading training shards (format ``avdd-shards``, see docs/shards-format.md).

This is the detector's only contact with the data pipeline: it reads the on-disk format and
never imports ``pipeline``. :class:`ShardDataset` is a map-style torch ``Dataset`` that opens the
zarr store once per process (each DataLoader worker opens its own) and returns dict samples.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

FORMAT = "avdd-shards"
SUPPORTED_VERSIONS = (1,)
MODALITIES = ("video", "mouth", "audio", "mel")


def shard_info(path) -> dict:
    """The shards' attributes (format, version, splits, pairs, config, summary)."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"Not a shards store (no zarr.json): {path}")
    attrs = dict(zarr.open_group(str(path), mode="r").attrs).get(FORMAT)
    if attrs is None:
        raise ValueError(f"{path} is a zarr store but not avdd shards (no '{FORMAT}' attributes)")
    if attrs.get("version") not in SUPPORTED_VERSIONS:
        raise ValueError(f"{path} has shards format version {attrs.get('version')}; this detector reads "
                         f"{SUPPORTED_VERSIONS}: rebuild the shards or upgrade avdd")
    return attrs


class ShardDataset(Dataset):
    """Samples of one or more splits of a shards store.

    Args:
        path: the shards store (``SHARDS.zarr``).
        split: "train", "val", "test", "holdout", a list of them, or None for all.
        modalities: any of "video" (face crops), "mouth", "audio" (waveform), "mel" (the cached
            log-mel; an error if the shards were built without it).
        require: modalities a sample must have to be included (e.g. ``("audio",)`` for an audio
            model on shards that also hold video-only samples). Default: none.
        pairs: pair types to include (e.g. ``("own", "vocoded")``); None: all.
        transform: a callable applied to every sample dict (e.g. :class:`detector.augment.Augment`);
            None: samples as stored.

    A sample is a dict: ``video`` uint8 (F, 3, S, S), ``mouth`` uint8 (F, 3, M, M), ``audio``
    float32 (L,), ``mel`` float32 (n_mels, T) for the modalities asked for (zeros when the sample
    lacks one, with ``has_video`` / ``has_audio`` 0); float32 labels ``video_fake``,
    ``audio_fake``, ``sequence_fake``; ints ``pair``, ``split``, ``sync_offset`` (frames) and
    ``index`` (row in the shards). The per-sample strings (method, vocoder, category, identity,
    group, id) stay out of the batches: :meth:`strings` returns them for the dataset's samples
    (``strings("category")[k]`` belongs to sample ``k``), e.g. for per-category metrics.
    """

    def __init__(self, path, split: str | list[str] | None = "train",
                 modalities: tuple[str, ...] = ("video", "audio"), require: tuple[str, ...] = (),
                 pairs: tuple[str, ...] | None = None, transform=None):
        self.path = str(Path(path).resolve())
        self.info = shard_info(path)
        bad = sorted(set(modalities) - set(MODALITIES))
        if bad:
            raise ValueError(f"Unknown modalities {bad}; choose from {MODALITIES}")
        if "mel" in modalities and not self.info.get("mel"):
            raise ValueError(f"{path} was built without cached mels (build-shards --cache-mel): ask for 'audio' and "
                             "compute the mel in the model")
        self.modalities = tuple(modalities)
        g = zarr.open_group(self.path, mode="r")
        names = self.info["splits"]
        wanted = names if split is None else ([split] if isinstance(split, str) else list(split))
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise ValueError(f"Unknown split(s) {unknown}; the shards have {names}")
        s = {k: g[f"samples/{k}"][:] for k in ("clip", "audio", "video_fake", "audio_fake", "sequence_fake",
                                               "pair", "split", "sync_offset")}
        keep = np.isin(s["split"], [names.index(w) for w in wanted])
        if "video" in require or "mouth" in require:
            keep &= s["clip"] >= 0
        if "audio" in require or "mel" in require:
            keep &= s["audio"] >= 0
        if pairs is not None:
            unknown_pairs = sorted(set(pairs) - set(self.info["pairs"]))
            if unknown_pairs:
                raise ValueError(f"Unknown pair type(s) {unknown_pairs}; the shards have {self.info['pairs']}")
            keep &= np.isin(s["pair"], [self.info["pairs"].index(p) for p in pairs])
        self.index = np.flatnonzero(keep)
        self.table = {k: v[self.index] for k, v in s.items()}
        self.transform = transform
        self._root, self._pid = None, None
        self._shapes = {"video": g["clips/face"].shape[1:], "mouth": g["clips/mouth"].shape[1:],
                        "audio": g["audio/wave"].shape[1:],
                        "mel": g["audio/mel"].shape[1:] if "mel" in g["audio"] else None}

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, keep: np.ndarray, transform=None) -> "ShardDataset":
        """The samples where the bool mask ``keep`` (one entry per sample) is true, with
        ``transform`` (None: this dataset's)."""
        import copy

        keep = np.asarray(keep, bool)
        if keep.shape != (len(self),):
            raise ValueError(f"subset: expected a mask of {len(self)} samples, found shape {keep.shape}")
        out = copy.copy(self)
        out.index = self.index[keep]
        out.table = {k: v[keep] for k, v in self.table.items()}
        out.transform = self.transform if transform is None else transform
        out._root, out._pid = None, None
        return out

    def labels(self, key: str = "sequence_fake") -> np.ndarray:
        """A label of every sample (without reading any media)."""
        return self.table[key].astype(np.float32)

    def strings(self, key: str) -> np.ndarray:
        """``method``, ``vocoder``, ``category``, ``id``, ``identity`` or ``group`` of every sample."""
        return zarr.open_group(self.path, mode="r")[f"samples/{key}"][:][self.index]

    def _arrays(self) -> dict:
        if self._root is None or self._pid != os.getpid():  # opened once per (worker) process
            root = zarr.open_group(self.path, mode="r")
            self._root = {"video": root["clips/face"], "mouth": root["clips/mouth"], "audio": root["audio/wave"],
                          "mel": root["audio/mel"] if self._shapes["mel"] else None}
            self._pid = os.getpid()
        return self._root

    def __getitem__(self, i: int) -> dict:
        arrays = self._arrays()
        t = {k: v[i] for k, v in self.table.items()}
        out = {"index": int(self.index[i]), "pair": int(t["pair"]), "split": int(t["split"]),
               "sync_offset": int(t["sync_offset"]), "has_video": int(t["clip"] >= 0),
               "has_audio": int(t["audio"] >= 0)}
        for k in ("video_fake", "audio_fake", "sequence_fake"):
            out[k] = torch.tensor(float(t[k]))
        for m in self.modalities:
            src = t["clip"] if m in ("video", "mouth") else t["audio"]
            if src >= 0:
                data = np.asarray(arrays[m][int(src)])
            else:
                data = np.zeros(self._shapes[m], np.uint8 if m in ("video", "mouth") else np.float32)
            tensor = torch.from_numpy(np.ascontiguousarray(data))
            if m in ("video", "mouth"):
                tensor = tensor.permute(0, 3, 1, 2)  # (F, S, S, 3) -> (F, 3, S, S)
            elif m == "mel":
                tensor = tensor.float()
            out[m] = tensor
        return self.transform(out) if self.transform is not None else out
