"""MelGAN (Kumar et al., NeurIPS 2019): a fully convolutional mel -> waveform generator.

Loads the checkpoints of the two widely used public releases. Both build the same network
(facts from the releases' code, cited by file):

- descript ``melgan-neurips``, ``mel2wav/modules.py`` ``Generator(input_size=80, ngf=32,
  n_residual_layers=3)``: ``model = Sequential(ReflectionPad1d(3), WNConv1d(80, 16*ngf, 7),
  [LeakyReLU(0.2), WNConvTranspose1d(kernel 2r, stride r, padding r//2 + r%2, output_padding
  r%2), ResnetBlock(dilation 3**j) x n_residual_layers] for r in (8, 8, 2, 2), LeakyReLU(0.2),
  ReflectionPad1d(3), WNConv1d(ngf, 1, 7), Tanh())``. ``ResnetBlock``: ``block =
  Sequential(LeakyReLU(0.2), ReflectionPad1d(d), WNConv1d(k=3, dilation d), LeakyReLU(0.2),
  WNConv1d(k=1))`` plus ``shortcut = WNConv1d(k=1)``. ``scripts/train.py`` saves
  ``netG.state_dict()`` as ``best_netG.pt`` (a bare state_dict of weight_g/weight_v pairs). Its
  mel is ``Audio2Mel`` (convention ``"melgan"`` in :mod:`.mel`).
- seungwonpark ``melgan``, ``model/generator.py`` + ``model/res_stack.py`` (the layout of the
  v0.3-alpha release, ``nvidia_tacotron2_LJ11_epoch6400.pt``): ``generator = Sequential(...)``
  with the same layers, except that the three residual units of a stage sit in one
  ``ResStack`` (``blocks[i]`` = the ResnetBlock's ``block``, ``shortcuts[i]`` = its
  ``shortcut``), channels and kernels hard-coded to the descript defaults (512 -> 32, ratios
  8, 8, 2, 2). ``forward`` first maps the mel with ``(mel + 5) / 5``; ``inference`` appends 10
  frames of -11.5129 (= ln 1e-5, silence) and cuts 10 hops off the end. ``utils/train.py``
  saves ``{"model_g", "model_d", "optim_g", "optim_d", "step", "epoch", "hp_str", "githash"}``;
  ``hp_str`` is the YAML config, whose ``audio`` section sets the Tacotron2 mel (NVIDIA
  ``TacotronSTFT``: convention ``"tacotron2"``; fmax 8000 in ``config/default.yaml``).

So the two layouts differ only in module paths and the input mapping: :class:`MelGANConfig`
``layout`` picks one, and :meth:`MelGAN.config_from_checkpoint` chooses it from the keys.
The older v0.1-alpha seungwonpark layout (``ResStack.layers``, no shortcut convs, LeakyReLU
slope 0.01) is a different network and is refused with an explanation.

Shapes: mel ``(B, n_mel_channels, T)`` -> waveform ``(B, T * prod(ratios))`` (``T * 256``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ._gan_blocks import load_yaml
from .base import NeuralVocoder
from .checkpoint import CheckpointError, fold_weight_norm, state_dict_of, strip_prefix
from .mel import MelSpec, get_convention

LAYOUTS = ("descript", "seungwonpark")
# seungwonpark model/generator.py inference(): value of the silent frames appended to the mel.
SEUNGWONPARK_PAD_VALUE = -11.5129


@dataclass
class MelGANConfig:
    """Generator hyper-parameters; defaults: descript ``mel2wav/modules.py`` as its
    ``scripts/train.py`` and ``interface.py`` build it (``Generator(80, 32, 3)``)."""

    layout: str = "descript"  # module paths: "descript" (model.N...) or "seungwonpark" (generator.N...)
    n_mel_channels: int = 80  # input mel bands (descript input_size / seungwonpark mel_channel)
    ngf: int = 32  # channels of the last stage; the first has ngf * 2 ** len(ratios) (512)
    n_residual_layers: int = 3  # residual units per stage, dilations 1, 3, 9
    ratios: tuple[int, ...] = (8, 8, 2, 2)  # upsampling per stage; product = hop length (256)
    # Silent frames appended before synthesis and cut afterwards (seungwonpark inference: 10).
    pad_tail_frames: int = 0

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"Unknown MelGAN layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        self.ratios = tuple(int(r) for r in self.ratios)

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @classmethod
    def seungwonpark(cls, n_mel_channels: int = 80) -> MelGANConfig:
        """seungwonpark ``model/generator.py`` (v0.3-alpha layout) with its inference padding."""
        return cls(layout="seungwonpark", n_mel_channels=n_mel_channels, pad_tail_frames=10)

    @classmethod
    def tiny(cls, layout: str = "descript") -> MelGANConfig:
        """A few thousand parameters, same hop (256): for CPU tests in milliseconds."""
        return cls(layout=layout, ngf=2, n_residual_layers=1,
                   pad_tail_frames=10 if layout == "seungwonpark" else 0)


def _residual_branch(channels: int, dilation: int) -> nn.Sequential:
    """descript ``ResnetBlock.block`` = seungwonpark ``ResStack.blocks[i]`` (indices 2 and 4
    hold the convolutions)."""
    return nn.Sequential(
        nn.LeakyReLU(0.2),
        nn.ReflectionPad1d(dilation),
        nn.Conv1d(channels, channels, kernel_size=3, dilation=dilation),
        nn.LeakyReLU(0.2),
        nn.Conv1d(channels, channels, kernel_size=1),
    )


class ResnetBlock(nn.Module):
    """descript layout: ``x -> shortcut(x) + block(x)``, (B, C, L) -> (B, C, L)."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.block = _residual_branch(channels, dilation)
        self.shortcut = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class ResStack(nn.Module):
    """seungwonpark layout: ``n_layers`` ResnetBlocks (dilation 3**i) as two ModuleLists."""

    def __init__(self, channels: int, n_layers: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(_residual_branch(channels, 3**i) for i in range(n_layers))
        self.shortcuts = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size=1) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, shortcut in zip(self.blocks, self.shortcuts):
            x = shortcut(x) + block(x)
        return x


class MelGANGenerator(nn.Module):
    """(B, n_mel_channels, T) mel -> (B, 1, T * hop) waveform in [-1, 1], plain weights.

    The layers sit in ``self.model`` (descript) or ``self.generator`` (seungwonpark) so that
    the releases' state_dict keys (after weight-norm folding) match exactly."""

    def __init__(self, config: MelGANConfig):
        super().__init__()
        self.layout = config.layout
        mult = 2 ** len(config.ratios)
        layers: list[nn.Module] = [nn.ReflectionPad1d(3), nn.Conv1d(config.n_mel_channels, mult * config.ngf, 7)]
        for r in config.ratios:
            channels = mult * config.ngf // 2
            layers += [nn.LeakyReLU(0.2),
                       nn.ConvTranspose1d(mult * config.ngf, channels, kernel_size=2 * r, stride=r,
                                          padding=r // 2 + r % 2, output_padding=r % 2)]
            if config.layout == "descript":
                layers += [ResnetBlock(channels, 3**j) for j in range(config.n_residual_layers)]
            else:
                layers += [ResStack(channels, config.n_residual_layers)]
            mult //= 2
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), nn.Conv1d(config.ngf, 1, 7), nn.Tanh()]
        self.add_module("model" if config.layout == "descript" else "generator", nn.Sequential(*layers))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if self.layout == "seungwonpark":
            return self.generator((mel + 5.0) / 5.0)  # seungwonpark forward(): "roughly normalize"
        return self.model(mel)


class MelGAN(NeuralVocoder):
    """MelGAN vocoder; see the module docstring for the releases it loads."""

    name = "melgan"
    config_class = MelGANConfig
    default_mel = get_convention("melgan")

    def __init__(self, config: MelGANConfig | None = None, mel: MelSpec | None = None, device: str = "cpu"):
        config = config if config is not None else MelGANConfig()
        if mel is None:
            mel = get_convention("tacotron2" if config.layout == "seungwonpark" else "melgan")
            mel = mel.replace(n_mels=config.n_mel_channels)
        if mel.hop_length != config.hop_length or mel.n_mels != config.n_mel_channels:
            raise ValueError(f"MelGAN generator expects {config.n_mel_channels} mel bands with hop "
                             f"{config.hop_length} (product of ratios {config.ratios}), but the mel has "
                             f"{mel.n_mels} bands with hop {mel.hop_length}")
        super().__init__(config, mel, device)

    def build(self, config: MelGANConfig) -> nn.Module:
        return MelGANGenerator(config)

    @torch.inference_mode()
    def generate(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mel_channels, T) features -> (B, T * hop) float32 waveform."""
        param = next(self.model.parameters())
        x = mel.to(device=param.device, dtype=param.dtype)
        pad = self.config.pad_tail_frames
        if pad:
            x = torch.cat([x, x.new_full((x.shape[0], x.shape[1], pad), SEUNGWONPARK_PAD_VALUE)], dim=2)
        y = self.model(x).squeeze(1)
        if pad:
            y = y[:, : -pad * self.config.hop_length]
        return y.float()

    @classmethod
    def config_from_checkpoint(cls, ckpt, path: Path):
        """Layout and sizes from the weights' names and shapes; for seungwonpark files, the mel
        from ``hp_str``. (descript keeps ``args.yml`` beside ``best_netG.pt``; every value it
        holds that matters here is also readable from the weight shapes.)"""
        sd = fold_weight_norm(strip_prefix(state_dict_of(ckpt)))
        config = _config_from_weights(sd, str(path))
        if config.layout == "descript":
            return config, get_convention("melgan").replace(n_mels=config.n_mel_channels)
        hp = load_yaml(ckpt["hp_str"]) if isinstance(ckpt, dict) and isinstance(ckpt.get("hp_str"), str) else {}
        return config, _tacotron2_mel(hp.get("audio") or {}, config.n_mel_channels)


def _config_from_weights(sd: dict, source: str) -> MelGANConfig:
    keys = list(sd)
    if any(re.match(r"generator\.\d+\.layers\.", k) for k in keys):
        raise CheckpointError(
            f"{source} is a seungwonpark MelGAN checkpoint of the v0.1-alpha layout (ResStack.layers, no shortcut "
            "convolutions, LeakyReLU slope 0.01), a different network from the current release (v0.3-alpha, "
            "model/res_stack.py blocks + shortcuts), which is the one avdd mirrors; use a v0.3-alpha checkpoint "
            "such as nvidia_tacotron2_LJ11_epoch6400.pt")
    if any(re.match(r"model\.\d+\.shortcut\.", k) for k in keys):
        layout, prefix = "descript", "model"
    elif any(re.match(r"generator\.\d+\.shortcuts\.", k) for k in keys):
        layout, prefix = "seungwonpark", "generator"
    else:
        raise CheckpointError(f"{source} is not a MelGAN generator of descript melgan-neurips (keys model.N...) "
                              f"or seungwonpark melgan (keys generator.N...); found keys like {keys[:5]}")
    top = sorted((int(m.group(1)), v) for k, v in sd.items()
                 if (m := re.fullmatch(rf"{prefix}\.(\d+)\.weight", k)))
    if len(top) < 3:
        raise CheckpointError(f"{source}: too few {prefix}.N.weight entries for a MelGAN generator")
    first, last, ups = top[0][1], top[-1][1], [v for _, v in top[1:-1]]
    ratios = tuple(int(w.shape[2]) // 2 for w in ups)  # ConvTranspose1d kernel = 2 * ratio
    if layout == "descript":
        units = {m.group(1) for k in keys if (m := re.match(r"model\.(\d+)\.shortcut\.", k))}
        n_res = len(units) // max(len(ratios), 1)
    else:
        stack = min(int(m.group(1)) for k in keys if (m := re.match(r"generator\.(\d+)\.shortcuts\.", k)))
        n_res = len({m.group(1) for k in keys if (m := re.match(rf"generator\.{stack}\.shortcuts\.(\d+)\.", k))})
    return MelGANConfig(layout=layout, n_mel_channels=int(first.shape[1]), ngf=int(last.shape[1]),
                        n_residual_layers=n_res, ratios=ratios, pad_tail_frames=10 if layout == "seungwonpark" else 0)


def _tacotron2_mel(audio: dict, n_mels: int) -> MelSpec:
    """The NVIDIA Tacotron2 mel with the values of a seungwonpark ``hp_str`` ``audio`` section
    (``filter_length``, ``hop_length``, ``win_length``, ``sampling_rate``, ``mel_fmin``, ``mel_fmax``)."""
    base = get_convention("tacotron2")
    fmax = audio.get("mel_fmax", base.fmax)
    return base.replace(
        sample_rate=int(audio.get("sampling_rate", base.sample_rate)),
        n_fft=int(audio.get("filter_length", base.n_fft)),
        hop_length=int(audio.get("hop_length", base.hop_length)),
        win_length=int(audio.get("win_length", base.win)),
        n_mels=int(audio.get("n_mel_channels", n_mels)),
        fmin=float(audio.get("mel_fmin", base.fmin)),
        fmax=None if fmax is None else float(fmax),
    )


VOCODER = MelGAN
