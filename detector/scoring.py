"""The one scoring loop: every output of a model on every sample of a dataset.

Used by validation during training, by ``avdd-eval`` (:mod:`detector.evaluate`) and by
``avdd-detect`` (:mod:`detector.inference`). A mode (see :mod:`detector.builder`) is an output of
the model, or ``two_stream``: fake if either modality head says fake (the larger of ``p_video``
and ``p_audio``); each mode is scored against its label (:data:`LABEL`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from . import metrics as M

LABEL = {"sync": "sequence_fake", "two_stream": "sequence_fake", "video": "video_fake", "audio": "audio_fake"}
OUTPUTS = ("p_video", "p_audio", "p_sync")
HAS = {"video": "has_video", "mouth": "has_video", "audio": "has_audio", "mel": "has_audio"}  # input -> flag


def to_device(batch: dict, device) -> dict:
    """The tensors of ``batch`` on ``device`` (everything else as it is)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class _Corrupted(Dataset):
    """The samples of ``base`` with ``corrupt`` applied to those that have video."""

    def __init__(self, base: Dataset, corrupt):
        self.base, self.corrupt = base, corrupt

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        sample = self.base[i]
        return self.corrupt(sample) if "video" in sample else sample


@torch.inference_mode()
def score(model, ds, device="cpu", batch_size: int = 16, corrupt=None, workers: int = 0,
          amp: bool = False) -> dict[str, np.ndarray]:
    """Every output of ``model`` on every sample of ``ds`` (a :class:`~detector.data.ShardDataset`
    with its transform; ``corrupt``: a :class:`~detector.augment.Corrupt` applied after it), each
    sample scored with what it has: a model with several modalities runs whole on samples with
    all of them, and each stream alone (``model.<modality>``) on samples with only that one.

    Returns ``p_video`` / ``p_audio`` / ``p_sync`` float32 (N,) (NaN where an output does not
    apply) and the labels ``video_fake`` / ``audio_fake`` / ``sequence_fake``.
    """
    device = torch.device(device)
    data = _Corrupted(ds, corrupt) if corrupt is not None else ds
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers)
    mods = type(model).modalities
    model.eval()
    out = {k: np.full(len(ds), np.nan, np.float32) for k in OUTPUTS}
    pos = 0
    for batch in loader:
        n = len(batch["index"])
        b = to_device(batch, device)
        has = {m: batch[HAS[m]].bool().numpy() for m in mods}
        whole = np.logical_and.reduce([has[m] for m in mods])
        rows = slice(pos, pos + n)
        if whole.any():
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                r = model(b)
            for k in OUTPUTS:
                if k in r:
                    out[k][rows][whole] = r[k].float().cpu().numpy()[whole]
        if len(mods) > 1:
            for m in mods:
                alone = has[m] & ~np.logical_or.reduce([has[o] for o in mods if o != m])
                if alone.any():
                    p = torch.sigmoid(getattr(model, m)(b[m])["logit"]).float().cpu().numpy()
                    out[f"p_{m}"][rows][alone] = p[alone]
        pos += n
    for k in ("video_fake", "audio_fake", "sequence_fake"):
        out[k] = ds.labels(k)
    return out


def mode_scores(raw: dict, mode: str) -> np.ndarray:
    """The scores of ``mode`` from the outputs :func:`score` returns."""
    if mode == "two_stream":
        return np.maximum(raw["p_video"], raw["p_audio"])
    return raw[f"p_{mode}"]


def validation_figures(raw: dict, modes) -> dict:
    """Accuracy, AUC and count of each mode on samples it scores (the training log's figures)."""
    out = {}
    for mode in modes:
        s, y = mode_scores(raw, mode), raw[LABEL[mode]]
        m = np.isfinite(s) & (y >= 0)
        out[mode] = {"acc": M.accuracy(s[m], y[m]), "auc": M.auc(s[m], y[m]), "n": int(m.sum())}
    return out
