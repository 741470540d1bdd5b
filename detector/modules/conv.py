"""Convolution blocks of the two streams: (2+1)D blocks for video, 2D residual blocks for audio.

Video tensors are (B, C, T, H, W); spectrogram tensors are (B, C, F, T) (frequency, time).

A (2+1)D convolution (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action
Recognition") factorises a t x k x k 3D convolution into a 1 x k x k spatial convolution to ``mid``
channels, BatchNorm and ReLU, then a t x 1 x 1 temporal convolution. ``mid`` defaults to the
paper's choice, the width that gives the pair as many parameters as the 3D convolution it
replaces: ``mid = floor(t k^2 N_in N_out / (k^2 N_in + t N_out))``.
"""

from __future__ import annotations

import torch
from torch import nn


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else tuple(x)


def factorised_width(in_ch: int, out_ch: int, spatial_kernel: int = 3, temporal_kernel: int = 3) -> int:
    """Tran et al.'s mid width: the (2+1)D pair has the parameters of the full 3D convolution."""
    k2 = spatial_kernel * spatial_kernel
    return max(1, (temporal_kernel * k2 * in_ch * out_ch) // (k2 * in_ch + temporal_kernel * out_ch))


class Conv2Plus1d(nn.Module):
    """(2+1)D convolution: spatial k x k conv -> BN -> ReLU -> temporal t conv -> BN [-> ReLU].

    Args:
        in_ch, out_ch: channels in and out.
        spatial_kernel, temporal_kernel: k and t (odd; "same" padding).
        stride: spatial stride (applied by the spatial conv).
        temporal_stride: temporal stride (applied by the temporal conv).
        mid: channels between the two convs; default :func:`factorised_width`.
        act: end with ReLU (False for the last conv of a residual branch).

    Shapes: (B, in_ch, T, H, W) -> (B, out_ch, ceil(T / temporal_stride), ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_ch: int, out_ch: int, spatial_kernel: int = 3, temporal_kernel: int = 3,
                 stride: int = 1, temporal_stride: int = 1, mid: int | None = None, act: bool = True):
        super().__init__()
        mid = mid or factorised_width(in_ch, out_ch, spatial_kernel, temporal_kernel)
        self.spatial = nn.Conv3d(in_ch, mid, (1, spatial_kernel, spatial_kernel), stride=(1, stride, stride),
                                 padding=(0, spatial_kernel // 2, spatial_kernel // 2), bias=False)
        self.bn_mid = nn.BatchNorm3d(mid)
        self.temporal = nn.Conv3d(mid, out_ch, (temporal_kernel, 1, 1), stride=(temporal_stride, 1, 1),
                                  padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.bn = nn.BatchNorm3d(out_ch)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_mid(self.spatial(x)))
        x = self.bn(self.temporal(x))
        return torch.relu(x) if self.act else x


class ResBlock2Plus1d(nn.Module):
    """Basic residual block of R(2+1)D: two 3 x 3 x 3 (2+1)D convs and a shortcut.

    The first conv carries the strides; the shortcut is a strided 1 x 1 x 1 conv + BN when the
    shape changes, else the identity.

    Shapes: (B, in_ch, T, H, W) -> (B, out_ch, ceil(T / temporal_stride), ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, temporal_stride: int = 1):
        super().__init__()
        self.conv1 = Conv2Plus1d(in_ch, out_ch, stride=stride, temporal_stride=temporal_stride)
        self.conv2 = Conv2Plus1d(out_ch, out_ch, act=False)
        self.shortcut = nn.Identity()
        if in_ch != out_ch or stride != 1 or temporal_stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_ch, out_ch, 1, stride=(temporal_stride, stride, stride), bias=False),
                nn.BatchNorm3d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResBlock2d(nn.Module):
    """Basic 2D residual block (ResNet-18 style): 3 x 3 conv-BN-ReLU, 3 x 3 conv-BN, shortcut, ReLU.

    Args:
        stride: int or (frequency, time) stride of the first conv and the shortcut.

    Shapes: (B, in_ch, F, T) -> (B, out_ch, ceil(F / stride_f), ceil(T / stride_t)).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int | tuple[int, int] = 1):
        super().__init__()
        stride = _pair(stride)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if in_ch != out_ch or stride != (1, 1):
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def init_conv_weights(module: nn.Module) -> None:
    """He (fan-out) init of every conv, BN to identity; linear layers keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def finish_stream(stream: nn.Module, stages: list[nn.Module], widths, dropout: float) -> None:
    """The tail every stream shares: its ``stages`` (a ModuleList), ``widths``, dropout and a
    linear head on the last stage's pooled features; then :func:`init_conv_weights`."""
    stream.stages = nn.ModuleList(stages)
    stream.widths = tuple(widths)
    stream.dropout = nn.Dropout(dropout)
    stream.head = nn.Linear(stream.widths[-1], 1)
    init_conv_weights(stream)
