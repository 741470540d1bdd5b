"""The sync stream: fuses both streams' multi-level features with intra- and inter-modality attention.

1. Each configured level (1-based stage) is pooled to a sequence over time: video features
   (B, C, T, H, W) are averaged over H and W, audio features (B, C, F, T) over frequency.
2. Each sequence is aligned to ``steps`` time steps: adaptive average pooling when it is longer,
   linear interpolation when it is shorter.
3. Levels are **concatenated along channels** (each after its own LayerNorm, which equalises the
   levels' scales) and projected to ``dim``: one token per time step and modality, so attention
   maps read directly as attention over time (summing levels would tie their projections to one
   space and concatenating along time would multiply the tokens by the number of levels).
4. A learned positional embedding (``steps`` x ``dim``), **shared** by both modalities because
   both sit on the same time grid (so cross-attention can match a video step with the audio at
   the same time), plus a learned embedding per modality.
5. ``layers`` rounds of: self-attention within each modality (video->video, audio->audio), then
   cross-attention between them (video queries audio and audio queries video, both from the
   round's self-attended sequences). Each modality and round has its own weights.
6. A final LayerNorm per modality, mean over time per modality, the two summaries concatenated, and an MLP
   head (Linear(2 dim, dim), GELU, dropout, Linear(dim, 1)) gives the sequence-fake logit.

With ``attention=False`` (the "av-noatt" ablation) steps 4-5 are replaced by an MLP applied to
each time step of the channel-concatenated aligned sequences (so the audio and video of the same
moment can still be compared: the ablation removes attention, not the alignment), then the mean
over time and the same head. It returns no attention weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SyncStreamConfig
from ..modules.attention import CrossAttention, SelfAttention

MODALITIES = ("video", "audio")


def align(x: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, C, T) -> (B, C, steps): adaptive average pooling if T >= steps, else linear interpolation."""
    if x.shape[-1] >= steps:
        return F.adaptive_avg_pool1d(x, steps)
    return F.interpolate(x, size=steps, mode="linear", align_corners=False)


def pool_time(x: torch.Tensor, modality: str) -> torch.Tensor:
    """Stage features -> (B, C, T): video (B, C, T, H, W) averaged over H, W; audio (B, C, F, T) over F."""
    return x.mean(dim=(3, 4)) if modality == "video" else x.mean(dim=2)


class LevelFusion(nn.Module):
    """Several levels of one modality -> one aligned token sequence.

    Shapes: {``stage<l>``: features} -> (B, steps, dim).
    """

    def __init__(self, widths: tuple[int, ...], levels: tuple[int, ...], dim: int, steps: int, modality: str):
        super().__init__()
        self.levels, self.steps, self.modality = levels, steps, modality
        self.norms = nn.ModuleList(nn.LayerNorm(widths[level - 1]) for level in levels)
        self.proj = nn.Linear(sum(widths[level - 1] for level in levels), dim)

    def forward(self, features: dict) -> torch.Tensor:
        parts = []
        for level, norm in zip(self.levels, self.norms):
            seq = align(pool_time(features[f"stage{level}"], self.modality), self.steps)  # (B, C, steps)
            parts.append(norm(seq.transpose(1, 2)))
        return self.proj(torch.cat(parts, dim=-1))


class SyncStream(nn.Module):
    """Sequence-level fake/real from both streams' features.

    Args:
        cfg: levels, width, heads, rounds, steps, dropout, attention switch.
        video_widths, audio_widths: channels of each stage of the two streams.

    Forward: video_features {``stage<i>``: (B, C_i, T_i, H_i, W_i)}, audio_features
    {``stage<i>``: (B, C_i, F_i, T_i)} -> dict with ``logit`` (B,), ``video`` and ``audio`` the
    fused sequences (B, steps, dim), and ``attention``: {``layer<r>.<name>``: (B, heads, steps,
    steps)} for names ``video_self``, ``audio_self``, ``video_audio`` (video queries audio) and
    ``audio_video`` (audio queries video); empty without attention.
    """

    def __init__(self, cfg: SyncStreamConfig, video_widths: tuple[int, ...], audio_widths: tuple[int, ...]):
        super().__init__()
        n = min(len(video_widths), len(audio_widths))
        if not cfg.levels or any(not 1 <= level <= n for level in cfg.levels):
            raise ValueError(f"Sync stream levels must be stages 1..{n} of both streams, but found {cfg.levels}")
        if cfg.steps < 1 or cfg.dim % cfg.heads:
            raise ValueError(f"Sync stream needs steps >= 1 and dim a multiple of heads, but found steps={cfg.steps}, "
                             f"dim={cfg.dim}, heads={cfg.heads}")
        self.attention = cfg.attention
        widths = {"video": video_widths, "audio": audio_widths}
        self.fuse = nn.ModuleDict({m: LevelFusion(widths[m], cfg.levels, cfg.dim, cfg.steps, m) for m in MODALITIES})
        d = cfg.dim
        if cfg.attention:
            self.pos_emb = nn.Parameter(torch.zeros(1, cfg.steps, d))
            self.modality_emb = nn.Parameter(torch.zeros(2, 1, 1, d))
            self.drop = nn.Dropout(cfg.dropout)
            self.self_attn = nn.ModuleList(
                nn.ModuleDict({m: SelfAttention(d, cfg.heads, cfg.dropout) for m in MODALITIES})
                for _ in range(cfg.layers))
            self.cross_attn = nn.ModuleList(
                nn.ModuleDict({m: CrossAttention(d, cfg.heads, cfg.dropout) for m in MODALITIES})
                for _ in range(cfg.layers))
            self.norm = nn.ModuleDict({m: nn.LayerNorm(d) for m in MODALITIES})
        else:
            self.mix = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, 2 * d), nn.GELU(), nn.Dropout(cfg.dropout))
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(d, 1))
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        if self.attention:
            nn.init.trunc_normal_(self.pos_emb, std=0.02)
            nn.init.trunc_normal_(self.modality_emb, std=0.02)

    def forward(self, video_features: dict, audio_features: dict) -> dict:
        v = self.fuse["video"](video_features)
        a = self.fuse["audio"](audio_features)
        attention = {}
        if self.attention:
            v = self.drop(v + self.pos_emb + self.modality_emb[0])
            a = self.drop(a + self.pos_emb + self.modality_emb[1])
            for r, (sa, ca) in enumerate(zip(self.self_attn, self.cross_attn)):
                v, attention[f"layer{r}.video_self"] = sa["video"](v)
                a, attention[f"layer{r}.audio_self"] = sa["audio"](a)
                v_next, attention[f"layer{r}.video_audio"] = ca["video"](v, a)  # both read the round's inputs
                a, attention[f"layer{r}.audio_video"] = ca["audio"](a, v)
                v = v_next
            v, a = self.norm["video"](v), self.norm["audio"](a)
            pooled = torch.cat([v.mean(1), a.mean(1)], dim=-1)
        else:
            pooled = self.mix(torch.cat([v, a], dim=-1)).mean(1)
        logit = self.head(pooled).squeeze(-1)
        return {"logit": logit, "video": v, "audio": a, "attention": attention}
