"""Parallel WaveGAN (Yamamoto et al., ICASSP 2020): a non-autoregressive WaveNet that turns
Gaussian noise into speech, conditioned on the upsampled mel spectrogram.

Mirrors kan-bayashi ``ParallelWaveGAN`` (facts from its code, cited by file):

- ``parallel_wavegan/models/parallel_wavegan.py`` ``ParallelWaveGANGenerator``: ``first_conv``
  (1x1, noise -> residual channels), ``upsample_net``, ``conv_layers`` (``layers`` WaveNet
  residual blocks, dilation ``2 ** (i % (layers // stacks))``), ``last_conv_layers`` =
  ``[ReLU, 1x1, ReLU, 1x1]``; the skip outputs are summed and scaled by ``sqrt(1 / layers)``.
  ``apply_weight_norm`` wraps every Conv1d *and Conv2d* (the upsampling convs too).
- ``parallel_wavegan/layers/upsample.py``: ``ConvInUpsampleNetwork`` = ``conv_in`` (kernel
  ``2 * aux_context_window + 1``, no padding, no bias) + ``upsample`` (``UpsampleNetwork``:
  ``up_layers`` = per scale s ``[Stretch2d(s) (nearest), Conv2d(1, 1, (1, 2s + 1), padding
  (0, s), bias=False) (, activation)]``, Conv2d initialised to ``1 / kernel size``).
- ``parallel_wavegan/layers/residual_block.py`` ``WaveNetResidualBlock``: ``conv`` (dilated,
  -> gate channels), ``conv1x1_aux`` (mel -> gate channels, no bias), gated ``tanh * sigmoid``,
  ``conv1x1_skip`` and ``conv1x1_out``; residual output ``(out + x) * sqrt(0.5)``.
- Inference (``ParallelWaveGANGenerator.inference``): noise ``randn(1, 1, T * hop)``; the
  (normalised) mel is padded by ``ReplicationPad1d(aux_context_window)`` on both sides, so the
  output has exactly ``T * hop`` samples.
- Defaults: ``egs/ljspeech/voc1/conf/parallel_wavegan.v1.yaml`` ``generator_params``. Features
  (``bin/preprocess.py`` ``logmelfilterbank``): librosa STFT (centred, reflect padding, hann),
  ``log10(max(1e-10, mel))`` (convention ``"parallel_wavegan"`` in :mod:`.mel`), then
  z-normalised with the training set's statistics (``bin/compute_statistics.py`` writes
  ``stats.h5`` with ``mean`` and ``scale``, or ``stats.npy`` = ``[mean, scale]``;
  ``bin/normalize.py`` applies them).
- Checkpoints (``bin/train.py`` ``save_checkpoint``): ``checkpoint-XXXsteps.pkl`` =
  ``{"model": {"generator", "discriminator"}, "optimizer": {...}, "scheduler": {...},
  "steps", "epochs"}``, with ``config.yml`` (and the stats) beside it, as in the released
  ``ljspeech_parallel_wavegan.v1`` archive. They load with ``weights_only=True``: the optimizer
  and scheduler states are plain tensors and numbers (see :mod:`._gan_blocks`).

Shapes: features ``(B, aux_channels, T)`` -> waveform ``(B, T * prod(upsample_scales))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._gan_blocks import load_yaml
from .base import NeuralVocoder
from .checkpoint import (
    CheckpointError,
    state_dict_of,
    strip_prefix,
)
from .mel import MelSpec, get_convention

UPSAMPLE_NETS = ("ConvInUpsampleNetwork", "UpsampleNetwork")
# ParallelWaveGANGenerator.__init__ arguments that map one to one onto the config.
RELEASE_GENERATOR_PARAMS = ("in_channels", "out_channels", "kernel_size", "layers", "stacks", "residual_channels",
                            "gate_channels", "skip_channels", "aux_channels", "aux_context_window", "dropout", "bias",
                            "use_causal_conv", "upsample_net")
# Buffers that ParallelWaveGANGenerator.register_stats adds (from stats.h5 / stats.npy).
STATS_BUFFERS = ("mean", "scale")
# Parameter-free torch.nn activations accepted for upsample_params.nonlinear_activation.
ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid", "GELU", "SiLU")


@dataclass
class ParallelWaveGANConfig:
    """``generator_params`` of ``parallel_wavegan.v1.yaml`` (defaults and comments from it),
    plus the feature statistics and the noise seed."""

    in_channels: int = 1  # Number of input channels (noise).
    out_channels: int = 1  # Number of output channels (> 1 is multi-band with PQMF: not supported).
    kernel_size: int = 3  # Kernel size of dilated convolution.
    layers: int = 30  # Number of residual block layers.
    stacks: int = 3  # Number of stacks i.e., dilation cycles.
    residual_channels: int = 64  # Number of channels in residual conv.
    gate_channels: int = 128  # Number of channels in gated conv.
    skip_channels: int = 64  # Number of channels in skip conv.
    aux_channels: int = 80  # Number of channels for auxiliary feature conv (= num_mels).
    aux_context_window: int = 2  # Context window size for auxiliary feature (2 previous, 2 future frames).
    dropout: float = 0.0  # Dropout rate (training only).
    bias: bool = True  # Whether to use bias parameter in conv layers.
    use_causal_conv: bool = False  # Whether to use causal structure.
    upsample_net: str = "ConvInUpsampleNetwork"  # Upsampling network architecture.
    upsample_scales: tuple[int, ...] = (4, 4, 4, 4)  # Product must be the hop size.
    upsample_activation: str | None = None  # upsample_params.nonlinear_activation
    upsample_activation_params: dict = field(default_factory=dict)  # upsample_params.nonlinear_activation_params
    interpolate_mode: str = "nearest"  # upsample_params.interpolate_mode
    freq_axis_kernel_size: int = 1  # upsample_params.freq_axis_kernel_size
    # Feature z-normalisation (stats.h5 "mean"/"scale" beside the checkpoint); None: identity.
    stats_mean: tuple[float, ...] | None = None
    stats_scale: tuple[float, ...] | None = None
    # Seed of the input noise for each generate() call (reproducible conversions); None: torch's global RNG.
    noise_seed: int | None = 0

    def __post_init__(self):
        self.upsample_scales = tuple(int(s) for s in self.upsample_scales)
        if self.stats_mean is not None:
            self.stats_mean = tuple(float(v) for v in self.stats_mean)
            self.stats_scale = tuple(float(v) for v in self.stats_scale)
        problems = []
        if self.layers % self.stacks:
            problems.append(f"layers ({self.layers}) must be a multiple of stacks ({self.stacks})")
        if self.out_channels != 1:
            problems.append(f"out_channels={self.out_channels} (multi-band PQMF synthesis) is not supported")
        if self.upsample_net not in UPSAMPLE_NETS:
            problems.append(f"upsample_net {self.upsample_net!r} is not supported (supported: {', '.join(UPSAMPLE_NETS)})")
        if self.upsample_net == "UpsampleNetwork" and self.aux_context_window:
            problems.append("UpsampleNetwork has no context convolution: aux_context_window must be 0")
        if self.upsample_activation is not None and self.upsample_activation not in ACTIVATIONS:
            problems.append(f"upsample activation {self.upsample_activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if (self.stats_mean is None) != (self.stats_scale is None) or (
                self.stats_mean is not None and len(self.stats_mean) != len(self.stats_scale)):
            problems.append("stats_mean and stats_scale must be given together, with equal lengths")
        if problems:
            raise ValueError("Invalid Parallel WaveGAN config: " + "; ".join(problems))

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_scales)

    @classmethod
    def from_generator_params(cls, params: dict, **extra) -> ParallelWaveGANConfig:
        """From a release ``config.yml`` ``generator_params`` dict (unknown keys are an error)."""
        params = dict(params)
        params.pop("use_weight_norm", None)  # weight norm is folded into plain weights at load time
        if not params.pop("upsample_conditional_features", True):
            raise CheckpointError("generator_params.upsample_conditional_features = false is not supported")
        up = dict(params.pop("upsample_params", None) or {})
        # ParallelWaveGANGenerator.__init__ adds these three to the upsample_params dict it is given,
        # so a config.yml written after building the model carries them: they must agree.
        for key in ("aux_channels", "aux_context_window", "use_causal_conv"):
            if key in up:
                value = up.pop(key)
                default = getattr(cls, "__dataclass_fields__")[key].default
                if value != params.get(key, default):
                    raise CheckpointError(f"config.yml generator_params.upsample_params.{key} = {value!r} differs "
                                          f"from generator_params.{key} = {params.get(key, default)!r}")
        mapped = {"upsample_scales": "upsample_scales", "nonlinear_activation": "upsample_activation",
                  "nonlinear_activation_params": "upsample_activation_params",
                  "interpolate_mode": "interpolate_mode", "freq_axis_kernel_size": "freq_axis_kernel_size"}
        unknown_up = sorted(set(up) - set(mapped))
        unknown = sorted(set(params) - set(RELEASE_GENERATOR_PARAMS))
        if unknown or unknown_up:
            raise CheckpointError(f"Unsupported Parallel WaveGAN generator_params: {unknown + unknown_up}")
        params.update({mapped[k]: v for k, v in up.items()})
        if params.get("upsample_activation_params") is None:
            params.pop("upsample_activation_params", None)
        return cls(**params, **extra)

    @classmethod
    def tiny(cls) -> ParallelWaveGANConfig:
        """Hop 256 (as v1), 4 layers of 8 channels: for CPU tests in milliseconds."""
        return cls(layers=4, stacks=2, residual_channels=8, gate_channels=16, skip_channels=8)


class WaveNetResidualBlock(nn.Module):
    """(B, residual, L), (B, aux, L) -> residual output (B, residual, L), skip (B, skip, L)."""

    def __init__(self, kernel_size=3, residual_channels=64, gate_channels=128, skip_channels=64,
                 aux_channels=80, dropout=0.0, dilation=1, bias=True, use_causal_conv=False):
        super().__init__()
        self.dropout = dropout
        self.use_causal_conv = use_causal_conv
        padding = (kernel_size - 1) * dilation if use_causal_conv else (kernel_size - 1) // 2 * dilation
        self.conv = nn.Conv1d(residual_channels, gate_channels, kernel_size, padding=padding, dilation=dilation,
                              bias=bias)
        self.conv1x1_aux = nn.Conv1d(aux_channels, gate_channels, 1, bias=False) if aux_channels > 0 else None
        self.conv1x1_out = nn.Conv1d(gate_channels // 2, residual_channels, 1, bias=bias)
        self.conv1x1_skip = nn.Conv1d(gate_channels // 2, skip_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None):
        h = self.conv(F.dropout(x, p=self.dropout, training=self.training))
        if self.use_causal_conv:
            h = h[:, :, : x.shape[-1]]
        if c is not None:
            h = h + self.conv1x1_aux(c)
        a, b = h.chunk(2, dim=1)
        h = torch.tanh(a) * torch.sigmoid(b)
        return (self.conv1x1_out(h) + x) * math.sqrt(0.5), self.conv1x1_skip(h)


class Stretch2d(nn.Module):
    """(B, 1, C, T) -> (B, 1, C * y_scale, T * x_scale) by interpolation."""

    def __init__(self, x_scale: int, y_scale: int = 1, mode: str = "nearest"):
        super().__init__()
        self.x_scale, self.y_scale, self.mode = x_scale, y_scale, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=(self.y_scale, self.x_scale), mode=self.mode)


class UpsampleNetwork(nn.Module):
    """(B, C, T) -> (B, C, T * prod(upsample_scales))."""

    def __init__(self, upsample_scales, activation=None, activation_params=None, interpolate_mode="nearest",
                 freq_axis_kernel_size=1, use_causal_conv=False):
        super().__init__()
        self.use_causal_conv = use_causal_conv
        self.up_layers = nn.ModuleList()
        freq_pad = (freq_axis_kernel_size - 1) // 2
        for scale in upsample_scales:
            conv = nn.Conv2d(1, 1, kernel_size=(freq_axis_kernel_size, 2 * scale + 1),
                             padding=(freq_pad, 2 * scale if use_causal_conv else scale), bias=False)
            nn.init.constant_(conv.weight, 1.0 / conv.weight.numel())  # the release's Conv2d init
            self.up_layers += [Stretch2d(scale, 1, interpolate_mode), conv]
            if activation is not None:
                self.up_layers += [getattr(nn, activation)(**(activation_params or {}))]

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        c = c.unsqueeze(1)
        for f in self.up_layers:
            length = c.shape[-1]
            c = f(c)
            if self.use_causal_conv and isinstance(f, nn.Conv2d):
                c = c[..., :length]
        return c.squeeze(1)


class ConvInUpsampleNetwork(nn.Module):
    """(B, aux, T + 2 * aux_context_window) -> (B, aux, T * prod(upsample_scales))."""

    def __init__(self, upsample_scales, activation=None, activation_params=None, interpolate_mode="nearest",
                 freq_axis_kernel_size=1, aux_channels=80, aux_context_window=0, use_causal_conv=False):
        super().__init__()
        self.aux_context_window = aux_context_window
        self.use_causal_conv = use_causal_conv and aux_context_window > 0
        kernel = aux_context_window + 1 if use_causal_conv else 2 * aux_context_window + 1
        self.conv_in = nn.Conv1d(aux_channels, aux_channels, kernel_size=kernel, bias=False)
        self.upsample = UpsampleNetwork(upsample_scales, activation, activation_params, interpolate_mode,
                                        freq_axis_kernel_size, use_causal_conv)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        c = self.conv_in(c)
        if self.use_causal_conv:
            c = c[:, :, : -self.aux_context_window]
        return self.upsample(c)


class ParallelWaveGANGenerator(nn.Module):
    """noise (B, in_channels, T * hop), padded features (B, aux, T + 2 * aux_context_window)
    -> waveform (B, out_channels, T * hop). Plain weights; module paths as the release's."""

    def __init__(self, config: ParallelWaveGANConfig):
        super().__init__()
        cfg = config
        self.first_conv = nn.Conv1d(cfg.in_channels, cfg.residual_channels, 1, bias=True)
        up = {"upsample_scales": cfg.upsample_scales, "activation": cfg.upsample_activation,
              "activation_params": cfg.upsample_activation_params, "interpolate_mode": cfg.interpolate_mode,
              "freq_axis_kernel_size": cfg.freq_axis_kernel_size, "use_causal_conv": cfg.use_causal_conv}
        if cfg.upsample_net == "ConvInUpsampleNetwork":
            self.upsample_net = ConvInUpsampleNetwork(**up, aux_channels=cfg.aux_channels,
                                                      aux_context_window=cfg.aux_context_window)
        else:
            self.upsample_net = UpsampleNetwork(**up)
        per_stack = cfg.layers // cfg.stacks
        self.conv_layers = nn.ModuleList(
            WaveNetResidualBlock(cfg.kernel_size, cfg.residual_channels, cfg.gate_channels, cfg.skip_channels,
                                 cfg.aux_channels, cfg.dropout, 2 ** (i % per_stack), cfg.bias, cfg.use_causal_conv)
            for i in range(cfg.layers))
        self.last_conv_layers = nn.ModuleList([
            nn.ReLU(), nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1, bias=True),
            nn.ReLU(), nn.Conv1d(cfg.skip_channels, cfg.out_channels, 1, bias=True),
        ])

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = self.upsample_net(c)
        if c.shape[-1] != z.shape[-1]:
            raise ValueError(f"Upsampled features have {c.shape[-1]} samples but the noise has {z.shape[-1]}")
        x = self.first_conv(z)
        skips = None
        for layer in self.conv_layers:
            x, s = layer(x, c)
            skips = s if skips is None else skips + s
        x = skips * math.sqrt(1.0 / len(self.conv_layers))
        for f in self.last_conv_layers:
            x = f(x)
        return x


class ParallelWaveGAN(NeuralVocoder):
    """Parallel WaveGAN vocoder; see the module docstring for the release it loads."""

    name = "parallel_wavegan"
    config_class = ParallelWaveGANConfig
    default_mel = get_convention("parallel_wavegan")

    def __init__(self, config: ParallelWaveGANConfig | None = None, mel: MelSpec | None = None,
                 device: str = "cpu"):
        config = config if config is not None else ParallelWaveGANConfig()
        mel = mel or self.default_mel.replace(n_mels=config.aux_channels)
        if mel.hop_length != config.hop_length or mel.n_mels != config.aux_channels:
            raise ValueError(f"Parallel WaveGAN expects {config.aux_channels} mel bands with hop {config.hop_length} "
                             f"(product of upsample_scales {config.upsample_scales}), but the mel has "
                             f"{mel.n_mels} bands with hop {mel.hop_length}")
        if config.stats_mean is not None and len(config.stats_mean) != mel.n_mels:
            raise ValueError(f"Feature stats have {len(config.stats_mean)} values for {mel.n_mels} mel bands")
        super().__init__(config, mel, device)
        self.stats = None
        if config.stats_mean is not None:
            self.stats = tuple(torch.tensor(v, dtype=torch.float32, device=self.device)[:, None]
                               for v in (config.stats_mean, config.stats_scale))

    def build(self, config: ParallelWaveGANConfig) -> nn.Module:
        return ParallelWaveGANGenerator(config)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) waveform -> (B, n_mels, T) log10 mel, z-normalised with the stats (float32)."""
        mel = self.mel(wav.to(self.device, torch.float32))
        if self.stats is not None:
            mel = (mel - self.stats[0]) / self.stats[1]
        return mel

    @torch.inference_mode()
    def generate(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, aux_channels, T) normalised features -> (B, T * hop) float32 waveform."""
        param = next(self.model.parameters())
        c = mel.to(device=param.device, dtype=param.dtype)
        n = c.shape[0]
        a = self.config.aux_context_window
        if a > 0:
            c = F.pad(c, (a, a), mode="replicate")
        gen = None
        if self.config.noise_seed is not None:
            gen = torch.Generator().manual_seed(self.config.noise_seed)
        # drawn on the CPU: a seed gives the same noise on every device
        z = torch.randn(n, self.config.in_channels, mel.shape[-1] * self.config.hop_length, generator=gen)
        z = z.to(param.device, param.dtype)
        return self.model(z, c).squeeze(1).float()

    @classmethod
    def translate_state_dict(cls, sd: dict) -> dict:
        """Drop the feature-stats buffers some releases register in the generator: they are read
        into the config by :meth:`config_from_checkpoint`, not part of our module."""
        return {k: v for k, v in strip_prefix(sd).items() if k not in STATS_BUFFERS}

    @classmethod
    def config_from_checkpoint(cls, ckpt, path: Path):
        """Model and mel from ``config.yml`` beside the checkpoint (the v1 defaults without one),
        feature stats from ``stats.h5`` / ``stats.npy`` beside it, else from ``mean``/``scale``
        buffers in the weights (``register_stats``); one of them is required."""
        path = Path(path)
        cfg_file = path.parent / "config.yml"
        cfg = load_yaml(cfg_file.read_text()) if cfg_file.is_file() else {}
        gen_type = cfg.get("generator_type", "ParallelWaveGANGenerator")
        if gen_type != "ParallelWaveGANGenerator":
            raise CheckpointError(f"{cfg_file} describes a {gen_type}, not a ParallelWaveGANGenerator; "
                                  f"the 'parallel_wavegan' vocoder loads only the latter")
        stats = read_stats(path.parent)
        if stats is None:  # a generator saved after register_stats() carries them as buffers
            sd = strip_prefix(state_dict_of(ckpt))
            stats = tuple(sd[k].numpy() for k in STATS_BUFFERS) if set(STATS_BUFFERS) <= set(sd) else None
        if stats is None:
            raise CheckpointError(
                f"No stats.h5 or stats.npy beside {path}: Parallel WaveGAN is trained on z-normalised features "
                "(parallel_wavegan/bin/compute_statistics.py); put the stats file of the training set next to "
                "the checkpoint, as in the released archives.")
        mean, scale = (tuple(float(v) for v in np.asarray(x).reshape(-1)) for x in stats)
        config = ParallelWaveGANConfig.from_generator_params(cfg.get("generator_params") or {},
                                                             stats_mean=mean, stats_scale=scale)
        return config, _mel_from_config(cfg, config)


def read_stats(directory: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, scale) from ``stats.h5`` (datasets ``mean``, ``scale``) or ``stats.npy``
    (``[mean, scale]``) in ``directory``, as ``ParallelWaveGANGenerator.register_stats`` reads them."""
    h5 = Path(directory) / "stats.h5"
    if h5.is_file():
        import h5py

        with h5py.File(h5, "r") as f:
            return np.asarray(f["mean"][()], dtype=np.float64), np.asarray(f["scale"][()], dtype=np.float64)
    npy = Path(directory) / "stats.npy"
    if npy.is_file():
        arr = np.load(npy, allow_pickle=False)
        return np.asarray(arr[0], dtype=np.float64), np.asarray(arr[1], dtype=np.float64)
    return None


def _mel_from_config(cfg: dict, config: ParallelWaveGANConfig) -> MelSpec:
    """The ``logmelfilterbank`` settings of a release ``config.yml`` (v1 values when absent)."""
    base = get_convention("parallel_wavegan")
    if cfg.get("window", "hann") != "hann":
        raise CheckpointError(f"config.yml window {cfg['window']!r} is not supported (only 'hann')")
    if "sampling_rate_for_feats" in cfg:
        raise CheckpointError("config.yml sampling_rate_for_feats (features at another rate) is not supported")
    log_base = cfg.get("log_base", 10.0)
    if log_base not in (10.0, None):
        raise CheckpointError(f"config.yml log_base {log_base!r} is not supported (only 10 or null = natural log)")
    n_fft = int(cfg.get("fft_size", base.n_fft))
    mel = base.replace(
        sample_rate=int(cfg.get("sampling_rate", base.sample_rate)),
        n_fft=n_fft,
        hop_length=int(cfg.get("hop_size", base.hop_length)),
        win_length=int(cfg.get("win_length") or n_fft),  # null: fft_size
        n_mels=int(cfg.get("num_mels", config.aux_channels)),
        fmin=float(cfg.get("fmin", base.fmin) or 0.0),
        fmax=None if cfg.get("fmax", base.fmax) is None else float(cfg.get("fmax", base.fmax)),
        compression="log10" if log_base == 10.0 else "ln",
    )
    if mel.hop_length != config.hop_length:
        raise CheckpointError(f"config.yml hop_size {mel.hop_length} differs from the product of upsample_scales "
                              f"{config.upsample_scales}")
    return mel


VOCODER = ParallelWaveGAN
