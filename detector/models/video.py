"""The video stream: an R(2+1)D ResNet (Tran et al. 2018) over face crops.

Layout of R(2+1)D-18 with the base config: a (2+1)D stem (7 x 7 spatial conv with stride 2, then
a 3-frame temporal conv; no max-pool), 4 stages of basic (2+1)D residual blocks with spatial
strides 1, 2, 2, 2 and the config's temporal strides (default 1, 1, 2, 2: time is kept in the
early stages for the sync stream, where R(2+1)D-18 halves it in stages 2-4), global average
pooling and a linear head. For 112 x 112 crops of 32 frames the stage outputs are
(64, 32, 56, 56), (128, 32, 28, 28), (256, 16, 14, 14), (512, 8, 7, 7).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import VideoStreamConfig
from ..modules.conv import Conv2Plus1d, ResBlock2Plus1d, finish_stream

# Inputs are normalised per RGB channel with the ImageNet statistics (torchvision's
# ``IMAGENET1K`` transforms): the network is trained from scratch, any fixed centring works, and
# these are the constants other face-forensics detectors use.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPATIAL_STRIDES = (1, 2, 2, 2)  # per stage, after the stem's stride 2 (R(2+1)D-18)


def check_video(video: torch.Tensor) -> torch.Tensor:
    """(B, F, 3, H, W) float in [0, 1] (uint8 in [0, 255] is converted) -> float tensor."""
    if video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"Expected video of shape (B, F, 3, H, W), but found {tuple(video.shape)}")
    if video.dtype == torch.uint8:
        video = video.float() / 255.0
    return video


class VideoStream(nn.Module):
    """(2+1)D ResNet over face crops.

    Args:
        cfg: widths, blocks and temporal strides of the stages, stem width, dropout before the head.

    Forward: video (B, F, 3, H, W) float in [0, 1] -> dict with
        ``features``: ``stage1`` ... ``stageN``, each (B, C_i, T_i, H_i, W_i), where
        T_i = F / prod(temporal_strides[:i]) and H_i = H / (2 * prod(SPATIAL_STRIDES[:i])) (rounded up);
        ``logit``: (B,) the video-fake logit.
    """

    def __init__(self, cfg: VideoStreamConfig):
        super().__init__()
        n = len(cfg.widths)
        if not (len(cfg.blocks) == len(cfg.temporal_strides) == n <= len(SPATIAL_STRIDES)):
            raise ValueError(f"Video stream: widths, blocks and temporal_strides need one entry per stage (at most "
                             f"{len(SPATIAL_STRIDES)}), but found {cfg.widths}, {cfg.blocks}, {cfg.temporal_strides}")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1), persistent=False)
        self.stem = Conv2Plus1d(3, cfg.stem_width, spatial_kernel=7, temporal_kernel=3, stride=2)
        stages, c = [], cfg.stem_width
        for width, blocks, s, ts in zip(cfg.widths, cfg.blocks, SPATIAL_STRIDES, cfg.temporal_strides):
            layers = [ResBlock2Plus1d(c, width, stride=s, temporal_stride=ts)]
            layers += [ResBlock2Plus1d(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            c = width
        finish_stream(self, stages, cfg.widths, cfg.dropout)

    def forward(self, video: torch.Tensor) -> dict:
        x = check_video(video).permute(0, 2, 1, 3, 4)  # (B, 3, F, H, W)
        x = self.stem((x - self.mean) / self.std)
        features = {}
        for i, stage in enumerate(self.stages, 1):
            x = stage(x)
            features[f"stage{i}"] = x
        logit = self.head(self.dropout(x.mean(dim=(2, 3, 4)))).squeeze(-1)
        return {"features": features, "logit": logit}
