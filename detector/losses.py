"""The detector's training loss: BCE-with-logits on each output the model has.

| output | label | counted on samples with |
|---|---|---|
| ``logit_video`` | ``video_fake`` | ``has_video`` = 1 |
| ``logit_audio`` | ``audio_fake`` | ``has_audio`` = 1 |
| ``logit_sync`` | ``sequence_fake`` | all |

A masked part is the mean over the samples it counts (0, still differentiable, when none do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PARTS = {"video": ("video_fake", "has_video"), "audio": ("audio_fake", "has_audio"), "sync": ("sequence_fake", None)}


def _mask(batch: dict, key: str | None, like: torch.Tensor) -> torch.Tensor:
    if key is None or key not in batch:
        return torch.ones_like(like)
    return torch.as_tensor(batch[key], device=like.device).to(like.dtype).reshape(like.shape)


def compute_loss(outputs: dict, batch: dict, weights: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the BCE parts of ``outputs`` against ``batch``'s labels.

    Args:
        outputs: a model's output dict; each present ``logit_video``/``logit_audio``/``logit_sync``
            (B,) gives a part.
        batch: ``video_fake``, ``audio_fake``, ``sequence_fake`` float (B,) labels for the parts
            present; optional ``has_video`` / ``has_audio`` (B,) 0/1 masks (absent: all 1).
        weights: part name -> weight (``ModelConfig.loss_weights``); missing names weigh 1.

    Returns:
        (total, parts): the scalar loss to back-propagate, and part name -> unweighted float value.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(PARTS))
    if unknown:
        raise ValueError(f"Unknown loss weight(s) {unknown}; the parts are {sorted(PARTS)}")
    total, parts = None, {}
    for name, (label_key, mask_key) in PARTS.items():
        logit = outputs.get(f"logit_{name}")
        if logit is None:
            continue
        if label_key not in batch:
            raise ValueError(f"The model outputs logit_{name} but the batch has no {label_key!r} labels")
        target = torch.as_tensor(batch[label_key], device=logit.device).to(logit.dtype).reshape(logit.shape)
        mask = _mask(batch, mask_key, logit)
        per_sample = F.binary_cross_entropy_with_logits(logit.float(), target.float(), reduction="none")
        loss = (per_sample * mask).sum() / mask.sum().clamp(min=1.0)
        parts[name] = float(loss.detach())
        term = weights.get(name, 1.0) * loss
        total = term if total is None else total + term
    if total is None:
        raise ValueError(f"No logits in the outputs: expected any of {[f'logit_{n}' for n in PARTS]}")
    return total, parts
