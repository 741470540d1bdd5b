"""WaveGlow (Prenger, Valle & Catanzaro, 2019): a flow-based vocoder, mirroring NVIDIA's release.

Facts from the public release NVIDIA/waveglow (``glow.py``, ``config.json``, ``train.py``,
``inference.py``, ``waveglow/inference.py``) and NVIDIA/DeepLearningExamples
(``PyTorch/SpeechSynthesis/Tacotron2/waveglow/model.py``, ``entrypoints.py``, ``models.py``):

- Model: ``upsample`` = ConvTranspose1d(n_mel, n_mel, 1024, stride=256); ``n_flows`` flows, each an
  ``Invertible1x1Conv`` (``convinv.k.conv``, no bias) and an affine coupling ``WN`` (``WN.k``:
  ``start``, ``in_layers.i`` with dilation 2**i, ``cond_layer`` (one fused 1x1 conv for all
  layers), ``res_skip_layers.i``, ``end``). Every ``n_early_every`` flows ``n_early_size``
  channels leave the flow early. WN convs except ``end`` carry weight norm in the release; ours
  carry plain weights (folded at load time).
- ``config.json`` waveglow_config: n_mel_channels 80, n_flows 12, n_group 8, n_early_every 4,
  n_early_size 2, WN_config n_layers 8, n_channels 256, kernel_size 3 (DeepLearningExamples'
  TorchHub entry point defaults to n_channels 512; both are read from the checkpoint's shapes).
- Inference (``WaveGlow.infer``): upsample, keep T * 256 samples, fold into groups of
  ``n_group``, draw z ~ N(0, sigma^2), run the flows backwards (coupling inverse, then the
  inverse 1x1 conv, then prepend sigma-scaled noise for the early outputs). The README runs it
  with ``-s 0.6`` (our default); tacotron2's notebook uses 0.666, ``inference.py`` defaults to 1.0.
- Mel: Tacotron2's TacotronSTFT (``mel2samp.py``; our ``"tacotron2"`` convention).

Checkpoints: NVIDIA's original ``waveglow_256channels_universal_v5.pt`` is a pickled module,
``{"model": <glow.WaveGlow>, ...}`` (``train.py`` ``save_checkpoint`` also stores iteration,
optimizer, learning_rate); read only with ``trust_pickle`` through the strict unpickler below,
and :func:`resave_plain` turns it into a plain file. Plain state_dicts (``module.`` prefix or
not, weight-norm pairs or plain) and DeepLearningExamples' ``{"state_dict", "config", ...}``
(per-layer ``cond_layers.i``, fused here) load with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import NeuralVocoder
from .checkpoint import (
    CheckpointError,
    fold_weight_norm,
    state_dict_of,
    strip_prefix,
)
from .mel import MelSpec, get_convention


@dataclass
class WaveGlowConfig:
    """Release defaults: NVIDIA/waveglow ``config.json`` ``waveglow_config`` (WN_config flattened)."""

    n_mel_channels: int = 80  # mel bands of the conditioning spectrogram
    n_flows: int = 12  # number of (1x1 conv, affine coupling) flows
    n_group: int = 8  # audio samples folded into one vector
    n_early_every: int = 4  # output n_early_size channels early every this many flows
    n_early_size: int = 2
    n_layers: int = 8  # WN_config: dilated conv layers per coupling network (dilation 2**i)
    n_channels: int = 256  # WN_config: hidden channels (DeepLearningExamples' TorchHub: 512)
    kernel_size: int = 3  # WN_config
    upsample_kernel: int = 1024  # fixed in glow.py: ConvTranspose1d(n_mel, n_mel, 1024, stride=256)
    upsample_stride: int = 256  # = mel hop length
    sigma: float = 0.6  # inference noise scale (release README: -s 0.6)
    seed: int = 0  # noise seed: the same input gives the same audio

    @classmethod
    def tiny(cls) -> WaveGlowConfig:
        """A few-thousand-parameter flow (plus the upsampler) for CPU tests in seconds."""
        return cls(n_flows=4, n_group=8, n_early_every=2, n_early_size=2, n_layers=2, n_channels=8,
                   upsample_kernel=512)

    def n_remaining(self) -> int:
        """Channels still in the flow after all early outputs."""
        return self.n_group - self.n_early_size * ((self.n_flows - 1) // self.n_early_every)


class Invertible1x1Conv(nn.Module):
    """Learned channel mixing ``conv`` (c x c, no bias), initialised to a random rotation."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, kernel_size=1, bias=False)
        q = torch.linalg.qr(torch.randn(c, c, device="cpu"))[0]
        if torch.det(q) < 0:  # a rotation, so log|det W| starts at 0
            q[:, 0] = -q[:, 0]
        with torch.no_grad():
            self.conv.weight.copy_(q.unsqueeze(-1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, c, G) -> (W z, log|det W| summed over batch and groups)."""
        w = self.conv.weight.squeeze(-1)
        log_det = z.shape[0] * z.shape[2] * torch.linalg.slogdet(w.float())[1]
        return self.conv(z), log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """(B, c, G) -> W^-1 z (inverse computed in float64, applied in z's dtype)."""
        w_inv = torch.linalg.inv(self.conv.weight.squeeze(-1).double())
        return F.conv1d(z, w_inv.to(z.dtype).unsqueeze(-1))


class WN(nn.Module):
    """The coupling network: non-causal WaveNet with gated dilated convs, conditioned on the
    grouped mel. (B, n_in, G) audio half + (B, n_mel * n_group, G) -> (B, 2 * n_in, G)."""

    def __init__(self, n_in_channels: int, n_cond_channels: int, n_layers: int, n_channels: int, kernel_size: int):
        super().__init__()
        if kernel_size % 2 != 1 or n_channels % 2 != 0:
            raise ValueError(f"WN needs an odd kernel_size and even n_channels, got {kernel_size}, {n_channels}")
        self.n_layers = n_layers
        self.n_channels = n_channels
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.start = nn.Conv1d(n_in_channels, n_channels, 1)
        self.end = nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        nn.init.zeros_(self.end.weight)  # release: the coupling starts as the identity
        nn.init.zeros_(self.end.bias)
        self.cond_layer = nn.Conv1d(n_cond_channels, 2 * n_channels * n_layers, 1)
        for i in range(n_layers):
            dilation = 2 ** i
            self.in_layers.append(nn.Conv1d(n_channels, 2 * n_channels, kernel_size, dilation=dilation,
                                            padding=dilation * (kernel_size - 1) // 2))
            out = 2 * n_channels if i < n_layers - 1 else n_channels  # the last layer has no residual
            self.res_skip_layers.append(nn.Conv1d(n_channels, out, 1))

    def forward(self, audio: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
        c = self.n_channels
        x = self.start(audio)
        cond = self.cond_layer(spect)
        skip = torch.zeros_like(x)
        for i in range(self.n_layers):
            h = self.in_layers[i](x) + cond[:, 2 * c * i: 2 * c * (i + 1)]
            acts = torch.tanh(h[:, :c]) * torch.sigmoid(h[:, c:])
            rs = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = x + rs[:, :c]
                skip = skip + rs[:, c:]
            else:
                skip = skip + rs
        return self.end(skip)


class WaveGlow(nn.Module):
    """mel (B, n_mel, T) -> audio (B, T * upsample_stride); attribute names as in glow.py."""

    def __init__(self, config: WaveGlowConfig):
        super().__init__()
        if config.n_group % 2 or config.upsample_kernel < config.upsample_stride:
            raise ValueError(f"WaveGlow needs an even n_group and upsample_kernel >= upsample_stride, got "
                             f"{config.n_group}, {config.upsample_kernel} < {config.upsample_stride}")
        c = config
        self.upsample = nn.ConvTranspose1d(c.n_mel_channels, c.n_mel_channels, c.upsample_kernel,
                                           stride=c.upsample_stride)
        self.n_flows, self.n_group = c.n_flows, c.n_group
        self.n_early_every, self.n_early_size = c.n_early_every, c.n_early_size
        self.WN = nn.ModuleList()
        self.convinv = nn.ModuleList()
        remaining = c.n_group
        for k in range(c.n_flows):
            if self._early(k):
                remaining -= c.n_early_size
            self.convinv.append(Invertible1x1Conv(remaining))
            self.WN.append(WN(remaining // 2, c.n_mel_channels * c.n_group, c.n_layers, c.n_channels, c.kernel_size))
        self.n_remaining_channels = remaining

    def _early(self, k: int) -> bool:
        return k > 0 and k % self.n_early_every == 0

    def grouped_condition(self, mel: torch.Tensor, n_samples: int) -> torch.Tensor:
        """(B, n_mel, T) -> (B, n_mel * n_group, n_samples // n_group): upsampled, trimmed to
        ``n_samples`` and folded like the audio (channel index = mel band * n_group + offset)."""
        spect = self.upsample(mel)[:, :, :n_samples]
        b, m, n = spect.shape
        spect = spect.reshape(b, m, n // self.n_group, self.n_group).permute(0, 1, 3, 2)
        return spect.reshape(b, m * self.n_group, n // self.n_group)

    def forward(self, mel: torch.Tensor, audio: torch.Tensor):
        """Training direction. mel (B, n_mel, T), audio (B, N) with N a multiple of n_group and
        N <= T * stride -> (z (B, n_group, N / n_group), [log_s per flow], [log|det W| per flow])."""
        if audio.shape[1] % self.n_group or audio.shape[1] > mel.shape[2] * self.upsample.stride[0]:
            limit = mel.shape[2] * self.upsample.stride[0]
            raise ValueError(f"Expected audio of a multiple of {self.n_group} samples, at most frames x "
                             f"{self.upsample.stride[0]} = {limit}, got {audio.shape[1]}")
        spect = self.grouped_condition(mel, audio.shape[1])
        x = audio.reshape(audio.shape[0], -1, self.n_group).transpose(1, 2)
        early, log_s_list, log_det_list = [], [], []
        for k in range(self.n_flows):
            if self._early(k):
                early.append(x[:, :self.n_early_size])
                x = x[:, self.n_early_size:]
            x, log_det = self.convinv[k](x)
            half = x.shape[1] // 2
            out = self.WN[k](x[:, :half], spect)
            log_s, b = out[:, half:], out[:, :half]
            x = torch.cat([x[:, :half], torch.exp(log_s) * x[:, half:] + b], 1)
            log_s_list.append(log_s)
            log_det_list.append(log_det)
        return torch.cat(early + [x], 1), log_s_list, log_det_list

    def infer(self, mel: torch.Tensor, sigma: float = 0.6, generator: torch.Generator | None = None,
              z: torch.Tensor | None = None) -> torch.Tensor:
        """Sampling direction, as glow.py ``infer``: (B, n_mel, T) -> (B, T * stride). The latent is
        sigma * N(0, 1) from ``generator`` (a CPU generator), or sigma * ``z`` (B, n_group,
        T * stride / n_group) laid out as :meth:`forward` returns it (early outputs first)."""
        n_samples = mel.shape[2] * self.upsample.stride[0]
        spect = self.grouped_condition(mel, n_samples)
        b, g = spect.shape[0], spect.shape[2]
        end = self.n_group

        def noise(c):  # the next c latent channels, consumed from the end
            nonlocal end
            end -= c
            part = z[:, end:end + c] if z is not None else torch.randn(  # on the CPU: same on every device
                b, c, g, generator=generator, dtype=torch.float32).to(spect.device)
            return (sigma * part).to(spect.dtype)

        x = noise(self.n_remaining_channels)
        for k in reversed(range(self.n_flows)):
            half = x.shape[1] // 2
            out = self.WN[k](x[:, :half], spect)
            s, shift = out[:, half:], out[:, :half]
            x = torch.cat([x[:, :half], (x[:, half:] - shift) / torch.exp(s)], 1)
            x = self.convinv[k].inverse(x)
            if self._early(k):
                x = torch.cat([noise(self.n_early_size), x], 1)
        return x.transpose(1, 2).reshape(b, -1)


def waveglow_loss(outputs, sigma: float = 1.0) -> torch.Tensor:
    """Negative log-likelihood per dimension, as glow.py ``WaveGlowLoss`` (training sigma 1.0)."""
    z, log_s_list, log_det_list = outputs
    nll = (z * z).sum() / (2 * sigma ** 2) - sum(s.sum() for s in log_s_list) - sum(log_det_list)
    return nll / z.numel()


# ---------------------------------------------------------------- checkpoints

def release_state_dict(sd: dict) -> dict:
    """Map a release-layout state_dict onto ours: drop a ``module.`` prefix, fold weight norm,
    and fuse the per-layer ``cond_layers.i`` (glow.py before NVIDIA/waveglow PR #152, and
    DeepLearningExamples) into the single ``cond_layer`` (rows i*2C:(i+1)*2C are layer i)."""
    sd = fold_weight_norm(strip_prefix({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}))
    if any(".res_layers." in k or ".skip_layers." in k for k in sd):
        raise CheckpointError("This checkpoint has the old glow_old.py layout (separate res_layers and "
                              "skip_layers), which avdd does not load; use a checkpoint of the current glow.py.")
    fused = {}
    for k in sorted(sd):
        head, sep, tail = k.partition(".cond_layers.")
        if sep:
            index, name = tail.split(".", 1)
            fused.setdefault((head, name), {})[int(index)] = sd.pop(k)
    for (head, name), parts in fused.items():
        sd[f"{head}.cond_layer.{name}"] = torch.cat([parts[i] for i in sorted(parts)], 0)
    return sd


def config_from_state_dict(sd: dict, base: WaveGlowConfig | None = None) -> WaveGlowConfig:
    """The architecture read off the (release-layout, :func:`release_state_dict`) weights' shapes;
    what shapes cannot tell (stride, sigma, seed, n_early_every without early outputs) from ``base``."""
    base = base or WaveGlowConfig()
    try:
        up = sd["upsample.weight"]
        sizes = [sd[f"convinv.{k}.conv.weight"].shape[0] for k in range(len({
            k.split(".")[1] for k in sd if k.startswith("convinv.")}))]
        n_layers = len({k.split(".")[3] for k in sd if k.startswith("WN.0.in_layers.")})
        in0 = sd["WN.0.in_layers.0.weight"]
    except KeyError as e:
        raise CheckpointError(f"Not a WaveGlow state_dict: no {e} (found e.g. {sorted(sd)[:5]})") from None
    drops = [k for k in range(1, len(sizes)) if sizes[k] < sizes[k - 1]]
    return dataclasses.replace(
        base, n_mel_channels=up.shape[0], n_flows=len(sizes), n_group=sizes[0],
        n_early_every=drops[0] if drops else base.n_early_every,
        n_early_size=sizes[0] - sizes[drops[0]] if drops else base.n_early_size,
        n_layers=n_layers, n_channels=in0.shape[1], kernel_size=in0.shape[2], upsample_kernel=up.shape[2])


class WaveGlowVocoder(NeuralVocoder):
    """WaveGlow on Tacotron2 mels (22.05 kHz, hop 256); noise scale ``config.sigma``, noise seeded
    by ``config.seed``. With :meth:`use_half` (CUDA) it runs in half precision with the 1x1 convs
    kept in float32, as the release's ``inference.py --is_fp16``."""

    name = "waveglow"
    config_class = WaveGlowConfig
    default_mel = get_convention("tacotron2")
    # Class names in NVIDIA's pickled checkpoints (train.py imports them from glow.py) -> ours.
    pickle_classes: ClassVar[dict[str, type]] = {
        "glow.WaveGlow": WaveGlow, "glow.WN": WN, "glow.Invertible1x1Conv": Invertible1x1Conv,
        # modules pickled by torch < 1.6 may carry this no-op backend getter; NoneType() -> None
        "torch.nn.backends.thnn._get_thnn_function_backend": type(None),
    }

    def __init__(self, config: WaveGlowConfig | None = None, mel: MelSpec | None = None, device: str = "cpu"):
        super().__init__(config, mel, device)
        if self.mel.hop_length != self.config.upsample_stride:
            raise ValueError(f"WaveGlow upsamples by {self.config.upsample_stride} but the mel hop is "
                             f"{self.mel.hop_length}")

    def build(self, config: WaveGlowConfig) -> WaveGlow:
        return WaveGlow(config)

    def apply_precision(self) -> None:
        """float16 with the invertible 1x1 convs kept in float32, as the release's inference."""
        super().apply_precision()
        for conv in self.model.convinv:
            conv.float()

    @torch.inference_mode()
    def generate(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) Tacotron2 mel -> (B, T * 256) waveform, float32."""
        mel = mel.to(self.device, self.model.upsample.weight.dtype)
        gen = torch.Generator().manual_seed(self.config.seed)
        return self.model.infer(mel, sigma=self.config.sigma, generator=gen).float()

    @classmethod
    def config_from_checkpoint(cls, ckpt, path: Path):
        return config_from_state_dict(release_state_dict(state_dict_of(ckpt))), cls.default_mel

    @classmethod
    def translate_state_dict(cls, sd: dict) -> dict:
        return release_state_dict(sd)


def resave_plain(src, dst) -> Path:
    """Convert NVIDIA's pickled ``{"model": <glow.WaveGlow>}`` checkpoint (trusted source, read
    with the strict unpickler) into a plain ``weights_only``-loadable checkpoint at ``dst``."""
    WaveGlowVocoder.from_checkpoint(src, trust_pickle=True).save(dst)
    return Path(dst)


VOCODER = WaveGlowVocoder
