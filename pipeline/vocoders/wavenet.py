"""WaveNet vocoder (r9y9 wavenet_vocoder) with incremental and naive autoregressive generation.

Mirrors r9y9/wavenet_vocoder so that its checkpoints load with ``--checkpoint``:

- v0.1, the LJSpeech release ``20180510_mixture_lj_checkpoint_step000320000_ema.pth`` (git 2092a64,
  ``wavenet_vocoder/wavenet.py``, ``modules.py``): upsampling ``upsample_conv.{0,2,4,6}`` =
  ConvTranspose2d(1, 1, (3, s), stride (1, s)) + ReLU, skips summed as ``(skips + h) * sqrt(0.5)`` per
  layer ("legacy", a flag since PR #81), 10-component discretized mixture of logistics (``mixture.py``).
- v0.2 (``upsample.py``): ``upsample_net`` = ConvInUpsampleNetwork / UpsampleNetwork, ``cin_pad``
  context frames, skips scaled by sqrt(1 / layers), Logistic or Normal outputs; mu-law categorical in both.

Checkpoints: ``{"state_dict", "optimizer", "global_step", "global_epoch", "global_test_step"}``
(``train.py save_checkpoint``), weight-normed convs (folded at load). No config is stored inside: the
hparams json the release ships beside the .pth (same stem) is read if present, else weight shapes and
the LJ preset (``presets/ljspeech_mixture.json``) give it.

Features (v0.1): r9y9 ``audio.py`` takes the STFT with lws (``lws.lws(1024, 256, mode="speech")``;
Jonathan-LeRoux/lws ``python/lws.pyx``): zero-padding of n_fft - hop on the left, frames at multiples of
hop, window sqrt(hann_sym * 2 hop / n_fft) -- a scaled sine window, not hann. mel.py's centred-hann
"wavenet" convention has the same frames (lws frame m + 1 = centred frame m) but on real speech its
normalised features differ by 0.018 on average (p95 0.035, max 0.24, about 1 dB lower), so
:class:`LwsMelSpec` computes the lws STFT exactly (hann_sym as lws >= 1.1; older lws used a periodic
hann, < 0.01 different).

Generation follows ``incremental_forward``: step t feeds the previous sample (0 at t = 0) and the
upsampled conditioning c[:, t], then samples. ``incremental=True`` keeps the last (k - 1) * dilation
inputs of every layer in a ring buffer (one column per layer per step); ``incremental=False``
recomputes the whole receptive field of every layer for every sample. Both use the same uniform noise
(chunks from one seeded generator), so they give the same samples up to float rounding.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import NeuralVocoder
from .checkpoint import CheckpointError, state_dict_of
from .mel import MelSpec, get_convention


@dataclass
class WaveNetConfig:
    """r9y9 hparams (defaults: ``presets/ljspeech_mixture.json``, the 2018 LJSpeech release)."""

    input_type: str = "raw"  # "raw" | "mulaw" (scalar input) | "mulaw-quantize" (one-hot, categorical output)
    quantize_channels: int = 65536  # 2**16 bins of the discretized mixture (or mu-law classes)
    out_channels: int = 30  # 10 mixtures x (logit, mean, log scale); quantize_channels for mulaw-quantize
    layers: int = 24
    stacks: int = 4  # dilation cycles: dilation = 2 ** (layer % (layers // stacks))
    residual_channels: int = 512
    gate_channels: int = 512  # split in two halves: tanh(a) * sigmoid(b)
    skip_out_channels: int = 256
    kernel_size: int = 3
    dropout: float = 1 - 0.95  # on the residual input, training only
    cin_channels: int = 80  # mel bins (local conditioning)
    upsample_scales: list = field(default_factory=lambda: [4, 4, 4, 4])  # product = hop size
    freq_axis_kernel_size: int = 3
    upsample_net: str = ""  # "": v0.1 upsample_conv; "ConvInUpsampleNetwork" | "UpsampleNetwork" (v0.2)
    upsample_activation: str = "none"  # v0.2 only: torch.nn class name or "none"
    upsample_activation_params: dict = field(default_factory=dict)
    upsample_mode: str = "nearest"  # v0.2 Stretch2d interpolation
    cin_pad: int = 0  # v0.2: extra context frames on each side (edge-padded here)
    cin_bias: bool = True  # conv1x1c has a bias (v0.1); r9y9's current code (v0.2) builds it with bias=False
    legacy: bool = True  # v0.1 skip scaling (skips + h) * sqrt(0.5); v0.2: sum * sqrt(1 / layers)
    output_distribution: str = "Logistic"  # "Logistic" (MoL) | "Normal" (v0.2 Gaussian / mixture)
    log_scale_min: float = -32.23619130191664  # float(np.log(1e-14))
    rescaling: bool = True  # preprocessing: peak-normalise the input audio to rescaling_max
    rescaling_max: float = 0.999

    @classmethod
    def tiny(cls) -> WaveNetConfig:
        """A few thousand parameters, receptive field 7: for CPU tests."""
        return cls(layers=4, stacks=2, residual_channels=8, gate_channels=16, skip_out_channels=8, out_channels=6)

    @property
    def scalar_input(self) -> bool:
        return self.input_type != "mulaw-quantize"

    @property
    def mu(self) -> int:
        """mu of the mu-law: quantize_channels in v0.1, quantize_channels - 1 in v0.2 (evaluate.py)."""
        return self.quantize_channels - (1 if self.upsample_net else 0)

    def dilations(self) -> list[int]:
        per_stack = self.layers // self.stacks
        return [2 ** (i % per_stack) for i in range(self.layers)]

    def receptive_field(self) -> int:
        return (self.kernel_size - 1) * sum(self.dilations()) + 1


@dataclass(frozen=True)
class LwsMelSpec(MelSpec):
    """:class:`MelSpec` with ``padding="lws"``: the STFT of lws (see module docstring). The signal is
    zero-padded by n_fft - hop on the left and to whole frames on the right; (B, N) -> (B, F, T) with
    T = ceil((N + n_fft - hop) / hop) frames (r9y9 ``audio.lws_num_frames``)."""

    def n_frames(self, n_samples: int) -> int:
        if self.padding != "lws":
            return super().n_frames(n_samples)
        return -(-(n_samples + self.n_fft - self.hop_length) // self.hop_length)

    def window(self, device=None, dtype=torch.float32) -> torch.Tensor:
        n = self.win
        hann_sym = 0.5 * (1 - torch.cos(2 * math.pi * torch.arange(1, 2 * n, 2, dtype=torch.float64) / (2 * n)))
        return torch.sqrt(hann_sym * 2 * self.hop_length / n).to(device=device, dtype=dtype)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        if self.padding != "lws":
            return super().magnitude(wav)
        n, hop = wav.shape[1], self.hop_length
        frames = self.n_frames(n)
        left = self.n_fft - hop
        x = F.pad(wav, (left, (frames - 1) * hop + self.n_fft - n - left))
        spec = torch.stft(x, self.n_fft, hop, self.win, self.window(wav.device, wav.dtype), center=False,
                          return_complex=True)
        return spec.abs()


# r9y9 audio.py + LJ preset: 22.05 kHz, lws STFT 1024 / 256, fmin 125, fmax 7600, 20 log10 - 20 dB, [0, 1].
LWS_MEL = LwsMelSpec(**dataclasses.asdict(get_convention("wavenet").replace(padding="lws")))


class Stretch2d(nn.Module):
    """v0.2 ``upsample.Stretch2d``: nearest (or other mode) repeat along time by ``scale``."""

    def __init__(self, scale: int, mode: str = "nearest"):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x):
        return F.interpolate(x, scale_factor=(1, self.scale), mode=self.mode)


class UpsampleNetwork(nn.Module):
    """v0.2 ``upsample.UpsampleNetwork``: per scale, stretch + Conv2d(1, 1, (fk, 2s + 1), no bias)
    [+ activation]; crops ``cin_pad * hop`` samples on each side. (B, C, T) -> (B, C, T * hop)."""

    def __init__(self, scales, activation="none", activation_params=None, mode="nearest", fk=1, cin_pad=0):
        super().__init__()
        self.indent = cin_pad * int(np.prod(scales))
        self.up_layers = nn.ModuleList()
        for s in scales:
            self.up_layers.append(Stretch2d(s, mode))
            conv = nn.Conv2d(1, 1, (fk, 2 * s + 1), padding=((fk - 1) // 2, s), bias=False)
            nn.init.constant_(conv.weight, 1.0 / (fk * (2 * s + 1)))  # release init: a moving average
            self.up_layers.append(conv)
            if activation != "none":
                self.up_layers.append(getattr(nn, activation)(**(activation_params or {})))

    def forward(self, c):
        c = c.unsqueeze(1)
        for f in self.up_layers:
            c = f(c)
        c = c.squeeze(1)
        return c[:, :, self.indent:-self.indent] if self.indent > 0 else c


class ConvInUpsampleNetwork(nn.Module):
    """v0.2 ``upsample.ConvInUpsampleNetwork``: Conv1d(C, C, 2 cin_pad + 1, no bias) then upsampling."""

    def __init__(self, cin_channels, cin_pad, **kw):
        super().__init__()
        self.conv_in = nn.Conv1d(cin_channels, cin_channels, 2 * cin_pad + 1, bias=False)
        self.upsample = UpsampleNetwork(cin_pad=0, **kw)

    def forward(self, c):
        return self.upsample(self.conv_in(c))


class ResidualConv1dGLU(nn.Module):
    """r9y9 ``modules.ResidualConv1dGLU``: causal dilated conv -> + conv1x1c(c) -> tanh * sigmoid ->
    (conv1x1_out + residual) * sqrt(0.5), conv1x1_skip. (B, R, T), (B, cin, T) -> (B, R, T), (B, S, T)."""

    def __init__(self, cfg: WaveNetConfig, dilation: int):
        super().__init__()
        self.dropout, self.pad = cfg.dropout, (cfg.kernel_size - 1) * dilation
        half = cfg.gate_channels // 2
        self.conv = nn.Conv1d(cfg.residual_channels, cfg.gate_channels, cfg.kernel_size, dilation=dilation)
        self.conv1x1c = nn.Conv1d(cfg.cin_channels, cfg.gate_channels, 1, bias=cfg.cin_bias)
        self.conv1x1_out = nn.Conv1d(half, cfg.residual_channels, 1)
        self.conv1x1_skip = nn.Conv1d(half, cfg.skip_out_channels, 1)

    def forward(self, x, c):
        h = self.conv(F.pad(F.dropout(x, self.dropout, self.training), (self.pad, 0))) + self.conv1x1c(c)
        a, b = h.chunk(2, 1)
        g = torch.tanh(a) * torch.sigmoid(b)
        return (self.conv1x1_out(g) + x) * math.sqrt(0.5), self.conv1x1_skip(g)


class WaveNet(nn.Module):
    """r9y9 ``wavenet.WaveNet`` (local conditioning only). :meth:`forward`: x (B, 1, T) scalar or
    (B, Q, T) one-hot, mel (B, cin, T / hop [+ 2 cin_pad]) -> (B, out_channels, T), the distribution
    parameters of the *next* sample (teacher forcing)."""

    def __init__(self, cfg: WaveNetConfig):
        super().__init__()
        if cfg.cin_channels <= 0 or cfg.layers % cfg.stacks:
            raise ValueError(f"WaveNet vocoder needs cin_channels > 0 and stacks dividing layers, found {cfg}")
        self.cfg = cfg
        self.first_conv = nn.Conv1d(1 if cfg.scalar_input else cfg.out_channels, cfg.residual_channels, 1)
        self.conv_layers = nn.ModuleList(ResidualConv1dGLU(cfg, d) for d in cfg.dilations())
        s = cfg.skip_out_channels
        self.last_conv_layers = nn.ModuleList([nn.ReLU(), nn.Conv1d(s, s, 1), nn.ReLU(),
                                               nn.Conv1d(s, cfg.out_channels, 1)])
        fk = cfg.freq_axis_kernel_size
        if not cfg.upsample_net:
            self.upsample_conv = nn.ModuleList()
            for scale in cfg.upsample_scales:
                convt = nn.ConvTranspose2d(1, 1, (fk, scale), stride=(1, scale), padding=((fk - 1) // 2, 0))
                nn.init.constant_(convt.weight, 1.0 / fk)  # release init: averaging, so the ReLUs pass
                nn.init.zeros_(convt.bias)
                self.upsample_conv.extend([convt, nn.ReLU()])
        else:
            kw = {"scales": cfg.upsample_scales, "activation": cfg.upsample_activation, "fk": fk,
                  "activation_params": cfg.upsample_activation_params, "mode": cfg.upsample_mode}
            if cfg.upsample_net == "ConvInUpsampleNetwork":
                self.upsample_net = ConvInUpsampleNetwork(cfg.cin_channels, cfg.cin_pad, **kw)
            elif cfg.upsample_net == "UpsampleNetwork":
                self.upsample_net = UpsampleNetwork(cin_pad=cfg.cin_pad, **kw)
            else:
                raise ValueError(f"Unknown upsample_net {cfg.upsample_net!r}; expected '', "
                                 "'ConvInUpsampleNetwork' or 'UpsampleNetwork'")

    def skip_scales(self) -> list[float]:
        """Weight of each layer's skip output in the sum: the release's iterated (skips + h) * sqrt(0.5)
        (legacy) unrolled, or sqrt(1 / layers)."""
        n = self.cfg.layers
        if not self.cfg.legacy:
            return [math.sqrt(1.0 / n)] * n
        return [math.sqrt(0.5) ** (n - max(i, 1)) for i in range(n)]

    def upsample(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, cin, Tc) -> (B, cin, Tc * hop); v0.2 ``cin_pad`` frames are edge-padded here."""
        if self.cfg.upsample_net:
            p = self.cfg.cin_pad
            return self.upsample_net(F.pad(mel, (p, p), mode="replicate") if p else mel)
        c = mel.unsqueeze(1)
        for f in self.upsample_conv:
            c = f(c)
        return c.squeeze(1)

    def stack(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The dilated stack on upsampled conditioning: (B, Cin, T), (B, cin, T) -> (B, out, T)."""
        x = self.first_conv(x)
        skips = 0
        for f, scale in zip(self.conv_layers, self.skip_scales()):
            x, h = f(x, c)
            skips = skips + scale * h
        x = skips
        for f in self.last_conv_layers:
            x = f(x)
        return x

    def forward(self, x: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        return self.stack(x, self.upsample(mel))


def nll_loss(cfg: WaveNetConfig, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of targets y (B, T) (in [-1, 1], or class indices for
    mulaw-quantize) under y_hat (B, out, T): discretized MoL (PixelCNN++, as ``mixture.py``), Gaussian
    (mixture), or cross-entropy."""
    if cfg.input_type == "mulaw-quantize":
        return F.cross_entropy(y_hat, y.long())
    y_hat = y_hat.transpose(1, 2)
    if cfg.output_distribution == "Normal" and y_hat.shape[-1] == 2:
        return -torch.distributions.Normal(y_hat[..., :1], y_hat[..., 1:].clamp(min=cfg.log_scale_min).exp()
                                           ).log_prob(y.unsqueeze(-1)).mean()
    return mol_nll(y_hat, y, cfg.quantize_channels, cfg.log_scale_min, cfg.output_distribution)


def mol_nll(y_hat: torch.Tensor, y: torch.Tensor, bins: int, log_scale_min: float,
            distribution: str = "Logistic") -> torch.Tensor:
    """Mean negative log-likelihood of y (B, T) in [-1, 1] under a mixture y_hat (B, T, 3 n) laid
    out [logits | means | log scales]: discretized logistics over ``bins`` levels (PixelCNN++; r9y9
    ``mixture.py``, fatchord ``utils/distribution.py``) or, for "Normal", Gaussians."""
    y = y.unsqueeze(-1)
    n = y_hat.shape[-1] // 3
    logit, mean, log_s = y_hat[..., :n], y_hat[..., n:2 * n], y_hat[..., 2 * n:3 * n].clamp(min=log_scale_min)
    if distribution == "Normal":
        lp = torch.distributions.Normal(mean, log_s.exp()).log_prob(y)
    else:
        centred, inv_s, half_bin = y - mean, torch.exp(-log_s), 1.0 / (bins - 1)
        plus, minus, mid = inv_s * (centred + half_bin), inv_s * (centred - half_bin), inv_s * centred
        delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        inner = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)),
                            mid - log_s - 2 * F.softplus(mid) - math.log((bins - 1) / 2))
        lp = torch.where(y < -0.999, plus - F.softplus(plus), torch.where(y > 0.999, -F.softplus(minus), inner))
    return -torch.logsumexp(lp + F.log_softmax(logit, -1), -1).mean()


def _mulaw_inverse(y: torch.Tensor, mu: int) -> torch.Tensor:
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


class _Incremental:
    """Cached single-step inference (the release's ``incremental_forward``, whose ``conv.Conv1d`` keeps
    each dilated conv's last inputs). One ring ``(B, layers, 2 S, R)``, S = the largest (k - 1) *
    dilation, holds every layer's recent inputs twice (slots p and p + S, p = t mod S), so the taps
    t - (k - 1) d, ..., t of any layer are one strided view. To keep a step to ~8 tensor ops per layer,
    the biases are folded out of the stream: the ring stores v = h - B_l (B_l constant; its share of the
    dilated conv moves into the conditioning bias, and the ring starts at -B_l, i.e. h = 0 before t = 0),
    the conditioning projections of all layers are computed per chunk, and the skip scales and
    sqrt(0.5) are folded into the 1x1 weights (``addmm`` with beta does the residual update)."""

    def __init__(self, net: WaveNet, batch: int, dtype):
        cfg, dev, r, k = net.cfg, net.first_conv.weight.device, net.cfg.residual_channels, net.cfg.kernel_size
        f64 = lambda t: t.detach().double()
        span = max(1, (k - 1) * max(cfg.dilations()))
        self.ring = torch.empty(batch, cfg.layers, 2 * span, r, device=dev, dtype=dtype)
        bias = f64(net.first_conv.bias)  # B_0
        self.first_w = f64(net.first_conv.weight[:, :, 0]).t().to(dtype)
        conv_w, cond_w, cond_b, out_w, skip_w, skip_b = [], [], [], [], [], 0
        for i, (f, a) in enumerate(zip(net.conv_layers, net.skip_scales())):
            w = f64(f.conv.weight)  # (gate, R, k) -> (k * R, gate), oldest tap first
            self.ring[:, i] = -bias.to(dtype)
            conv_w.append(w.permute(2, 1, 0).reshape(-1, cfg.gate_channels))
            cond_w.append(f64(f.conv1x1c.weight))
            cin_b = f64(f.conv1x1c.bias) if f.conv1x1c.bias is not None else 0
            cond_b.append(cin_b + f64(f.conv.bias) + w.sum(2) @ bias)
            out_w.append(math.sqrt(0.5) * f64(f.conv1x1_out.weight[:, :, 0]).t())
            bias = math.sqrt(0.5) * (bias + f64(f.conv1x1_out.bias))
            skip_w.append(a * f64(f.conv1x1_skip.weight[:, :, 0]).t())
            skip_b = skip_b + a * f64(f.conv1x1_skip.bias)
        to = lambda ts: [t.to(dtype).contiguous() for t in ts]
        self.conv_w, self.out_w, self.skip_w = to(conv_w), to(out_w), to(skip_w)
        self.cond_w, self.cond_b = torch.cat(cond_w).to(dtype), torch.cat(cond_b).to(dtype)
        self.skip_b = skip_b.to(dtype).expand(batch, -1).contiguous()
        last1, last2 = net.last_conv_layers[1], net.last_conv_layers[3]
        self.last = to([f64(last1.weight[:, :, 0]).t(), f64(last1.bias), f64(last2.weight[:, :, 0]).t(),
                        f64(last2.bias)])
        # views per ring position p: each layer's taps (B, k, R), its input slot, the wrap copy
        self.taps = [[self.ring[:, i, p + span - (k - 1) * d:p + span + 1:d] for i, d in enumerate(cfg.dilations())]
                     for p in range(span)]
        self.slots = [self.ring[:, :, p + span].unbind(1) for p in range(span)]
        self.wrap = [(self.ring[:, :, p], self.ring[:, :, p + span]) for p in range(span)]
        self.span, self.gate, self.layers = span, cfg.gate_channels, cfg.layers

    def conditioning(self, c: torch.Tensor) -> list:
        """(B, cin, n) -> n tuples of ``layers`` (B, gate) tensors: conv1x1c(c) + folded biases."""
        z = F.conv1d(c, self.cond_w, self.cond_b)
        z = z.view(z.shape[0], self.layers, self.gate, -1).permute(3, 1, 0, 2).contiguous()
        return [zt.unbind(0) for zt in z.unbind(0)]

    def step(self, x: torch.Tensor, cond, t: int) -> torch.Tensor:
        """x (B, Cin) input at time t, cond (``layers`` x (B, gate)) -> (B, out) distribution parameters."""
        p = t % self.span
        taps, slots = self.taps[p], self.slots[p]
        torch.mm(x, self.first_w, out=slots[0])
        skips = None
        for i in range(self.layers):
            a, b = torch.addmm(cond[i], taps[i].reshape(x.shape[0], -1), self.conv_w[i]).chunk(2, 1)
            g = torch.tanh(a) * torch.sigmoid(b)
            if i + 1 < self.layers:
                torch.addmm(slots[i], g, self.out_w[i], beta=math.sqrt(0.5), out=slots[i + 1])
            skips = torch.addmm(self.skip_b, g, self.skip_w[i]) if skips is None else skips.addmm_(g, self.skip_w[i])
        self.wrap[p][0].copy_(self.wrap[p][1])
        y = torch.addmm(self.last[1], torch.relu(skips), self.last[0])
        return torch.addmm(self.last[3], torch.relu(y), self.last[2])


def _sample(cfg: WaveNetConfig, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One draw per row from parameters y (B, C) with uniforms u (B, K) in (0, 1): Gumbel-max for the
    class / mixture component, then the logistic (inverse CDF) or Gaussian (erfinv) sample, clipped to
    [-1, 1] (``mixture.sample_from_discretized_mix_logistic`` / ``sample_from_mix_gaussian``)."""
    if cfg.input_type == "mulaw-quantize":
        return (y - torch.log(-torch.log(u))).argmax(1)
    c = y.shape[1]
    if cfg.output_distribution == "Normal" and c == 2:
        mean, log_s = y[:, 0], y[:, 1]
    else:
        n = c // 3
        k = (y[:, :n] - torch.log(-torch.log(u[:, :n]))).argmax(1, keepdim=True)
        mean, log_s = y[:, n:2 * n].gather(1, k)[:, 0], y[:, 2 * n:3 * n].gather(1, k)[:, 0]
    v = u[:, -1]
    if cfg.output_distribution == "Normal":
        x = mean + log_s.exp() * math.sqrt(2) * torch.erfinv(2 * v - 1)
    else:
        x = mean + log_s.clamp(min=cfg.log_scale_min).exp() * (torch.log(v) - torch.log1p(-v))
    return x.clamp(-1.0, 1.0)


class WaveNetVocoder(NeuralVocoder):
    """r9y9 WaveNet vocoder: mel (B, 80, T) in :data:`LWS_MEL` -> waveform (B, T * 256) at 22.05 kHz."""

    name = "wavenet"
    config_class = WaveNetConfig
    default_mel = LWS_MEL
    chunk = 256  # steps per noise / conditioning chunk (same in both modes, so the draws match)

    def __init__(self, config=None, mel: MelSpec | None = None, device: str = "cpu"):
        if mel is not None and mel.padding == "lws" and not isinstance(mel, LwsMelSpec):
            mel = LwsMelSpec(**dataclasses.asdict(mel))  # e.g. rebuilt as a plain MelSpec from a saved file
        super().__init__(config, mel, device)
        cfg = self.config
        if int(np.prod(cfg.upsample_scales)) != self.mel.hop_length or cfg.cin_channels != self.mel.n_mels:
            raise ValueError(f"WaveNet upsample_scales {cfg.upsample_scales} / cin_channels {cfg.cin_channels} "
                             f"do not fit the mel hop {self.mel.hop_length} / n_mels {self.mel.n_mels}")

    def build(self, config: WaveNetConfig) -> WaveNet:
        return WaveNet(config)

    def apply_precision(self) -> None:
        """Weights stay float32; :meth:`generate` casts them per call (the incremental path folds
        them in float64 first)."""

    @property
    def lead_samples(self) -> int:
        """Samples generated for the lws left padding, before the input's first sample."""
        return self.mel.n_fft - self.mel.hop_length if self.mel.padding == "lws" else 0

    @torch.inference_mode()
    def generate(self, mel: torch.Tensor, incremental: bool = True, seed: int | None = None) -> torch.Tensor:
        """(B, n_mels, T) -> (B, T * hop) float32 waveform, sampled autoregressively; ``incremental``
        selects cached (fast) or naive (full receptive field per sample) inference, ``seed`` the noise
        (default: drawn from torch's global RNG). float16 with :meth:`use_half` (CUDA)."""
        cfg, net, dev = self.config, self.model, self.device
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        gen = torch.Generator(device=dev).manual_seed(seed)
        dtype = torch.float16 if self.half else next(net.parameters()).dtype
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            c = net.upsample(mel.to(dev, next(net.parameters()).dtype)).to(dtype)
        batch, steps = c.shape[0], c.shape[2]
        mix = cfg.out_channels // 3 if cfg.out_channels > 2 else 0
        n_noise = cfg.quantize_channels if cfg.input_type == "mulaw-quantize" else mix + 1
        # inputs: the sample values (scalar) or mu-law classes (one-hot); the first is silence
        kind = torch.float32 if cfg.scalar_input else torch.long
        out = torch.zeros(batch, steps + 1, device=dev, dtype=kind)  # out[:, t + 1] = sample t
        out[:, 0] = 0 if cfg.scalar_input else cfg.mu // 2  # synthesis.py wavegen initial value
        as_input = ((lambda v: v.to(dtype).unsqueeze(-2)) if cfg.scalar_input else
                    (lambda v: F.one_hot(v, cfg.out_channels).to(dtype).transpose(-1, -2)))
        inc = _Incremental(net, batch, dtype) if incremental else None
        chunk = max(1, min(self.chunk, 2**24 // (batch * n_noise)))  # bounds the noise of 2**16 classes
        for t0 in range(0, steps, chunk):
            n = min(chunk, steps - t0)
            noise = (torch.rand(n, batch, n_noise, generator=gen, device=dev) * (1 - 2e-5) + 1e-5).unbind(0)
            cond = inc.conditioning(c[:, :, t0:t0 + n]) if incremental else None
            for i in range(n):
                t = t0 + i
                if incremental:
                    y = inc.step(as_input(out[:, t:t + 1])[..., 0], cond[i], t)
                else:  # the whole receptive field, every layer, for this one sample
                    s = max(0, t + 1 - cfg.receptive_field())
                    with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
                        y = net.stack(as_input(out[:, s:t + 1]), c[:, :, s:t + 1])[:, :, -1]
                out[:, t + 1] = _sample(cfg, y.float(), noise[i])
        out = out[:, 1:]
        if cfg.input_type == "mulaw-quantize":
            return _mulaw_inverse(2 * out.float() / cfg.mu - 1, cfg.mu)
        return _mulaw_inverse(out, cfg.mu) if cfg.input_type == "mulaw" else out

    @torch.inference_mode()
    def copy_synthesize(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """As :meth:`Vocoder.copy_synthesize`, plus the release's preprocessing: peak-normalise to
        ``rescaling_max`` (gain undone on the output) and drop the lws left-padding samples."""
        import torchaudio.functional as AF

        x = torch.as_tensor(np.atleast_2d(audio), dtype=torch.float32, device=self.device)
        length = x.shape[1]
        if sample_rate != self.sample_rate:
            x = AF.resample(x, sample_rate, self.sample_rate)
        gain = torch.ones(x.shape[0], 1, device=self.device)
        if self.config.rescaling:
            gain = self.config.rescaling_max / x.abs().amax(1, keepdim=True).clamp(min=1e-6)
        n, lead = x.shape[1], self.lead_samples
        y = self.generate(self.features(x * gain)).float()[:, lead:lead + n] / gain
        if sample_rate != self.sample_rate:
            y = AF.resample(y, self.sample_rate, sample_rate)
        y = F.pad(y, (0, max(0, length - y.shape[1])))
        return y[:, :length].cpu().numpy().astype(np.float32)

    @classmethod
    def config_from_checkpoint(cls, ckpt, path: Path):
        """Config and mel of a release checkpoint: its hparams json (``<stem>.json`` beside it) where
        present, the shapes of its weights, and the LJ preset for what neither records (stacks)."""
        json_path = Path(path).with_suffix(".json")
        hp = json.loads(json_path.read_text()) if json_path.is_file() else {}
        config = _config_from(hp, state_dict_of(ckpt))
        return config, _mel_from(hp, config)


def _weight(sd: dict, name: str) -> torch.Tensor | None:
    return sd.get(f"{name}.weight", sd.get(f"{name}.weight_v"))


def _config_from(hp: dict, sd: dict) -> WaveNetConfig:
    """Fill a :class:`WaveNetConfig` from release hparams (``hp``) and weight shapes (``sd``)."""
    up = hp.get("upsample_params", {})
    layers = len({k.split(".")[1] for k in sd if k.startswith("conv_layers.")})
    conv, skip, last = (_weight(sd, n) for n in ("conv_layers.0.conv", "conv_layers.0.conv1x1_skip",
                                                 "last_conv_layers.3"))
    cin, first = _weight(sd, "conv_layers.0.conv1x1c"), _weight(sd, "first_conv")
    if any(w is None for w in (conv, skip, last, cin, first)):
        raise CheckpointError(f"Not an r9y9 WaveNet vocoder state_dict (keys e.g. {sorted(sd)[:6]})")
    kw = {"layers": layers, "gate_channels": conv.shape[0], "residual_channels": conv.shape[1],
          "kernel_size": conv.shape[2], "skip_out_channels": skip.shape[0], "out_channels": last.shape[0],
          "cin_channels": cin.shape[1], "cin_bias": "conv_layers.0.conv1x1c.bias" in sd}
    if first.shape[1] > 1:
        kw.update(input_type="mulaw-quantize", quantize_channels=last.shape[0])
    ups = sorted((k for k in sd if k.startswith("upsample_net.") and k.endswith((".weight_v", ".weight"))
                  and "conv_in" not in k), key=lambda k: int(k.split(".")[-2]))
    if ups:  # v0.2: Conv2d(1, 1, (fk, 2 s + 1)) after each stretch
        conv_in = sd.get("upsample_net.conv_in.weight")
        idx = [int(k.split(".")[-2]) for k in ups]
        if len(idx) > 1 and idx[1] - idx[0] > 2 and up.get("upsample_activation", "none") == "none":
            raise CheckpointError("This v0.2 checkpoint has upsampling activations: put its hparams json "
                                  "(same name, .json) beside it so their type is known")
        kw.update(upsample_net="ConvInUpsampleNetwork" if conv_in is not None else "UpsampleNetwork",
                  upsample_scales=[(sd[k].shape[3] - 1) // 2 for k in ups], freq_axis_kernel_size=sd[ups[0]].shape[2],
                  cin_pad=(conv_in.shape[2] - 1) // 2 if conv_in is not None else hp.get("cin_pad", 0),
                  upsample_activation=up.get("upsample_activation", "none"), legacy=False,
                  upsample_activation_params=up.get("upsample_activation_params", {}),
                  upsample_mode=up.get("mode", "nearest"), rescaling=False,
                  output_distribution=hp.get("output_distribution", "Normal" if last.shape[0] == 2 else "Logistic"))
    else:  # v0.1: ConvTranspose2d(1, 1, (fk, s)) at upsample_conv.0, .2, ...
        idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith("upsample_conv.")})
        convt = [_weight(sd, f"upsample_conv.{i}") for i in idx]
        if not convt:
            raise CheckpointError("WaveNet checkpoint without upsampling layers (upsample_conditional_features "
                                  "= false) cannot be used as a mel vocoder here")
        kw.update(upsample_scales=[w.shape[3] for w in convt], freq_axis_kernel_size=convt[0].shape[2],
                  legacy=hp.get("legacy", True))
    kw.update({k: hp[k] for k in ("stacks", "dropout", "log_scale_min", "rescaling", "rescaling_max") if k in hp})
    if "input_type" not in kw:  # else the one-hot first_conv already said mulaw-quantize
        kw.update({k: hp[k] for k in ("input_type", "quantize_channels") if k in hp})
    return WaveNetConfig(**kw)


def _mel_from(hp: dict, cfg: WaveNetConfig) -> MelSpec:
    """The release's features: v0.1 lws + dB normalisation (:data:`LWS_MEL`), v0.2 librosa-style
    centred hann + log10 (its recipes' mean-var normalisation is not stored with the model)."""
    g = {k: hp[h] for k, h in (("sample_rate", "sample_rate"), ("n_fft", "fft_size"), ("hop_length", "hop_size"),
                               ("n_mels", "num_mels"), ("fmin", "fmin"), ("fmax", "fmax"),
                               ("min_db", "min_level_db"), ("ref_db", "ref_level_db")) if hp.get(h) is not None}
    if cfg.upsample_net:
        win = hp.get("win_length", -1)
        g = {"fmin": 125.0, **{k: v for k, v in g.items() if "db" not in k}}
        return get_convention("parallel_wavegan").replace(win_length=win if win and win > 0 else None, **g)
    return LWS_MEL.replace(**g)


VOCODER = WaveNetVocoder
