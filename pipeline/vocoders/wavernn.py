"""WaveRNN (fatchord's alternative WaveRNN), loading both public releases of it.

Architecture and defaults: fatchord WaveRNN, ``models/fatchord_version.py`` and ``hparams.py``
(master: ``voc_mode='MOL'``, released as ``pretrained/ljspeech.wavernn.mol.800k.zip``). The same
network is torchaudio ``models/wavernn.py`` (bundle ``wavernn_10k_epochs_8bits_ljspeech.pth``,
``pipelines/_tts/utils.py::_get_wrnn_params``: RAW, 8 bits, mu-law). Our modules use fatchord's
names; torchaudio's keys are detected and translated at load time (:func:`to_fatchord_keys`); the
architecture is read off the weights' shapes. Both releases save a bare state_dict; torchaudio's
``examples/pipeline_wavernn`` saves ``{"state_dict" (``module.``), "optimizer", "epoch", ...}``.

Features: the "wavernn" mel convention; fatchord ``utils/dsp.py::melspectrogram`` (librosa 0.7
STFT 2048/275/1100, Slaney mel from 40 Hz of the magnitude, 20 log10, clip((S + 100) / 100, 0, 1))
and torchaudio's training transform (``MelSpectrogram(power=1, slaney, f_min=40)`` +
``NormalizeDB(-100)``) are the same; the tests check both.

Generation: the recurrence runs sample by sample over the whole sequence (``folded=False``) or
over fatchord's folds (segments of ``target + 2 overlap`` samples, ``target + overlap`` apart; all
folds of all utterances in ONE batch), then cross-fade and overlap-add. Per step: four matmuls into
preallocated buffers; all terms not depending on the previous sample are precomputed in chunks.
Decoding as in the releases: RAW label k -> 2k / (2^bits - 1) - 1, then mu-law expansion; MOL:
fatchord ``utils/distribution.py::sample_from_discretized_mix_logistic``. Unlike fatchord's
``generate``, the output keeps all ``T * hop`` samples (no crop to ``(T - 1) * hop``, no 20-hop
fade-out) and the outer ends of the first/last fold are not faded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .base import NeuralVocoder
from .checkpoint import (
    CheckpointError,
    state_dict_of,
    strip_prefix,
)
from .mel import get_convention

log = logging.getLogger(__name__)

MOL_CLASSES = 30  # fatchord: 10 logistics x (logit, mean, log scale)
LOG_SCALE_MIN = math.log(1e-14)  # fatchord utils/distribution.py


@dataclass
class WaveRNNConfig:
    """fatchord ``hparams.py`` (names without ``voc_``) and the ``WaveRNN(...)`` arguments."""

    rnn_dims: int = 512  # voc_rnn_dims
    fc_dims: int = 512  # voc_fc_dims
    bits: int = 9  # RAW: 2 ** bits classes (torchaudio bundle: 8)
    pad: int = 2  # voc_pad: mel frames added both sides; MelResNet kernel 2 * pad + 1
    upsample_factors: tuple[int, ...] = (5, 5, 11)  # product = hop_length
    feat_dims: int = 80  # num_mels
    compute_dims: int = 128  # voc_compute_dims
    res_out_dims: int = 128  # voc_res_out_dims (4 aux streams of res_out_dims // 4)
    res_blocks: int = 10  # voc_res_blocks
    hop_length: int = 275
    sample_rate: int = 22050
    mode: str = "MOL"  # voc_mode: "RAW" (softmax over 2 ** bits labels) or "MOL" (30 outputs)
    mu_law: bool = True  # RAW only: labels are mu-law encoded (fatchord mu_law, torchaudio bundle)
    target: int = 11000  # voc_target: samples generated per fold
    overlap: int = 550  # voc_overlap: samples of RNN warm-up + cross-fade between folds
    xfade: str = "equal_power"  # fatchord's; "linear" sums to one (exact for correlated signals)

    @property
    def n_classes(self) -> int:
        return MOL_CLASSES if self.mode == "MOL" else 2 ** self.bits

    @classmethod
    def tiny(cls) -> WaveRNNConfig:
        """Same hop (and mel) as the default; narrow layers for CPU tests."""
        return cls(rnn_dims=32, fc_dims=32, bits=9, compute_dims=16, res_out_dims=16, res_blocks=1, mode="RAW",
                   target=400, overlap=40)


class ResBlock(nn.Module):
    def __init__(self, dims: int):
        super().__init__()
        self.conv1 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.conv2 = nn.Conv1d(dims, dims, kernel_size=1, bias=False)
        self.batch_norm1 = nn.BatchNorm1d(dims)
        self.batch_norm2 = nn.BatchNorm1d(dims)

    def forward(self, x):
        return x + self.batch_norm2(self.conv2(F.relu(self.batch_norm1(self.conv1(x)))))


class MelResNet(nn.Module):
    """(B, feat, T + 2 pad) -> (B, res_out, T): valid conv of width 2 pad + 1, then res blocks."""

    def __init__(self, res_blocks: int, in_dims: int, compute_dims: int, res_out_dims: int, pad: int):
        super().__init__()
        self.conv_in = nn.Conv1d(in_dims, compute_dims, kernel_size=2 * pad + 1, bias=False)
        self.batch_norm = nn.BatchNorm1d(compute_dims)
        self.layers = nn.ModuleList(ResBlock(compute_dims) for _ in range(res_blocks))
        self.conv_out = nn.Conv1d(compute_dims, res_out_dims, kernel_size=1)

    def forward(self, x):
        x = F.relu(self.batch_norm(self.conv_in(x)))
        for layer in self.layers:
            x = layer(x)
        return self.conv_out(x)


class Stretch2d(nn.Module):
    """Nearest-neighbour upsampling of the last two axes (..., H, W) -> (..., H * y, W * x)."""

    def __init__(self, x_scale: int, y_scale: int):
        super().__init__()
        self.x_scale, self.y_scale = x_scale, y_scale

    def forward(self, x):
        return x.repeat_interleave(self.y_scale, -2).repeat_interleave(self.x_scale, -1)


class UpsampleNetwork(nn.Module):
    """(B, feat, T + 2 pad) -> mels (B, T * hop, feat), aux (B, T * hop, res_out)."""

    def __init__(self, feat_dims, upsample_scales, compute_dims, res_blocks, res_out_dims, pad):
        super().__init__()
        total_scale = math.prod(upsample_scales)
        self.indent = pad * total_scale
        self.resnet = MelResNet(res_blocks, feat_dims, compute_dims, res_out_dims, pad)
        self.resnet_stretch = Stretch2d(total_scale, 1)
        self.up_layers = nn.ModuleList()  # [Stretch2d, Conv2d] per scale: weights at odd indices
        for scale in upsample_scales:
            conv = nn.Conv2d(1, 1, kernel_size=(1, 2 * scale + 1), padding=(0, scale), bias=False)
            nn.init.constant_(conv.weight, 1.0 / (2 * scale + 1))
            self.up_layers.extend([Stretch2d(scale, 1), conv])

    def forward(self, m):
        aux = self.resnet_stretch(self.resnet(m).unsqueeze(1)).squeeze(1)
        m = m.unsqueeze(1)
        for f in self.up_layers:
            m = f(m)
        m = m.squeeze(1)[:, :, self.indent:-self.indent]
        return m.transpose(1, 2), aux.transpose(1, 2)


class WaveRNN(nn.Module):
    """fatchord's WaveRNN; parameter names as in ``models/fatchord_version.py``."""

    def __init__(self, c: WaveRNNConfig):
        super().__init__()
        if math.prod(c.upsample_factors) != c.hop_length:
            raise ValueError(f"Expected prod(upsample_factors) == hop_length, found {c.upsample_factors} "
                             f"vs {c.hop_length}")
        if c.mode not in ("RAW", "MOL") or c.res_out_dims % 4:
            raise ValueError(f"Expected mode RAW or MOL and res_out_dims divisible by 4, found {c.mode!r}, "
                             f"{c.res_out_dims}")
        self.pad, self.mode, self.n_classes = c.pad, c.mode, c.n_classes
        self.rnn_dims, self.aux_dims = c.rnn_dims, c.res_out_dims // 4
        self.upsample = UpsampleNetwork(c.feat_dims, c.upsample_factors, c.compute_dims, c.res_blocks,
                                        c.res_out_dims, c.pad)
        self.I = nn.Linear(c.feat_dims + self.aux_dims + 1, c.rnn_dims)
        self.rnn1 = nn.GRU(c.rnn_dims, c.rnn_dims, batch_first=True)
        self.rnn2 = nn.GRU(c.rnn_dims + self.aux_dims, c.rnn_dims, batch_first=True)
        self.fc1 = nn.Linear(c.rnn_dims + self.aux_dims, c.fc_dims)
        self.fc2 = nn.Linear(c.fc_dims + self.aux_dims, c.fc_dims)
        self.fc3 = nn.Linear(c.fc_dims, self.n_classes)
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))  # training steps (fatchord)

    def condition(self, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, feat, T) -> upsampled mels (B, T * hop, feat), aux (B, T * hop, res_out); the mels
        are zero-padded by ``pad`` frames on both sides first, as both releases do."""
        return self.upsample(F.pad(mels, (self.pad, self.pad)))

    def forward(self, x: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced: previous samples x (B, L) in [-1, 1], mels (B, feat, L / hop + 2 pad)
        -> logits (B, L, n_classes)."""
        if self.training:
            self.step += 1
        m, aux = self.upsample(mels)
        a1, a2, a3, a4 = aux.split(self.aux_dims, dim=2)
        x = self.I(torch.cat([x.unsqueeze(-1), m, a1], dim=2))
        x = x + self.rnn1(x)[0]
        x = x + self.rnn2(torch.cat([x, a2], dim=2))[0]
        x = F.relu(self.fc1(torch.cat([x, a3], dim=2)))
        x = F.relu(self.fc2(torch.cat([x, a4], dim=2)))
        return self.fc3(x)


# --- Sample-by-sample recurrence, fused ---

def _fused_weights(model: WaveRNN, dtype) -> dict:
    """Weights regrouped so that a step is four matmuls (see :func:`recurrence`).

    pre[t] = C[t] + x[t-1] * v holds, for all layers, every term not involving h1/h2:
    [rnn1 input gates | rnn2 input gates (x part) | fc1 (x part) | fc2 (aux part)]."""
    R, D = model.rnn_dims, model.aux_dims
    wi, wx = model.I.weight[:, 1:], model.I.weight[:, 0]
    w_ih1, w_ih2, w_fc1, w_fc2 = model.rnn1.weight_ih_l0, model.rnn2.weight_ih_l0, model.fc1.weight, model.fc2.weight
    w_ih2x, w_fc1x = w_ih2[:, :R], w_fc1[:, :R]
    zeros = lambda n: w_ih1.new_zeros(n)
    return {k: v.to(dtype).contiguous() for k, v in {
        "wi": wi.t(), "bi": model.I.bias,
        "w_pre_x": torch.cat([w_ih1, w_ih2x, w_fc1x]).t(),  # applied to I's output p
        "b_pre": torch.cat([model.rnn1.bias_ih_l0, model.rnn2.bias_ih_l0, model.fc1.bias, model.fc2.bias]),
        "w_a2": w_ih2[:, R:].t(), "w_a3": w_fc1[:, R:].t(), "w_a4": w_fc2[:, model.fc2.in_features - D:].t(),
        "v": torch.cat([w_ih1 @ wx, w_ih2x @ wx, w_fc1x @ wx, zeros(w_fc2.shape[0])]),
        "w_h1": torch.cat([model.rnn1.weight_hh_l0, w_ih2x, w_fc1x]).t(),
        "b_h1": torch.cat([model.rnn1.bias_hh_l0, zeros(3 * R + w_fc1.shape[0])]),
        "w_h2": torch.cat([model.rnn2.weight_hh_l0, w_fc1x]).t(),
        "b_h2": torch.cat([model.rnn2.bias_hh_l0, zeros(w_fc1.shape[0])]),
        "w_f2": w_fc2[:, :w_fc2.shape[1] - D].t(), "w_f3": model.fc3.weight.t(), "b_f3": model.fc3.bias,
    }.items()}


def _precompute(w: dict, m: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """Conditioning (B, n, feat), (B, n, 4 D) -> the x-independent terms (n, B, 6 R + 2 F)."""
    a1, a2, a3, a4 = aux.transpose(0, 1).chunk(4, dim=2)
    n, B = a1.shape[:2]
    p = torch.addmm(w["bi"], torch.cat([m.transpose(0, 1), a1], 2).flatten(0, 1), w["wi"])
    R3, F_ = w["w_a2"].shape[1], w["w_a3"].shape[1]
    pre = torch.empty(n, B, w["v"].numel(), device=p.device, dtype=p.dtype)
    k = 2 * R3 + F_
    pre[..., :k] = torch.addmm(w["b_pre"][:k], p, w["w_pre_x"]).view(n, B, k)
    pre[..., R3:2 * R3] += a2 @ w["w_a2"]
    pre[..., 2 * R3:k] += a3 @ w["w_a3"]
    pre[..., k:] = torch.add(w["b_pre"][k:], a4 @ w["w_a4"])
    return pre


def _buffers(w: dict, B: int, R: int, C: int, raw: bool, dev, dt) -> SimpleNamespace:
    """Buffers written in place at every step, and the views into them, made once."""
    e = lambda *shape, dtype=dt: torch.empty(*shape, device=dev, dtype=dtype)
    b = SimpleNamespace(s=e(B, w["v"].numel()), m1=e(B, w["w_h1"].shape[1]), m2=e(B, w["w_h2"].shape[1]),
                        g2=e(B, 3 * R), rz1=e(B, 2 * R), rz2=e(B, 2 * R), n1=e(B, R), n2=e(B, R), tmp=e(B, R),
                        h1=torch.zeros(B, R, device=dev, dtype=dt), h2=torch.zeros(B, R, device=dev, dtype=dt),
                        f1=e(B, w["w_f2"].shape[0]), f2=e(B, w["w_f2"].shape[1]), logits=e(B, C),
                        x=torch.zeros(B, device=dev, dtype=dt))
    b.m1[:, :3 * R] = w["b_h1"][:3 * R]  # h1 = 0: rnn1's hidden gates are its bias
    b.m2[:, :3 * R] = w["b_h2"][:3 * R]
    F_ = b.f1.shape[1]
    b.xcol = b.x.unsqueeze(1)
    b.s_g1rz, b.s_g1n, b.s_g2, b.s_f1, b.s_f2 = b.s.split([2 * R, R, 3 * R, F_, F_], 1)
    b.gh1rz, b.gh1n, b.m1_g2, b.m1_f1 = b.m1.split([2 * R, R, 3 * R, F_], 1)
    b.gh2rz, b.gh2n, b.m2_f1 = b.m2.split([2 * R, R, F_], 1)
    (b.r1, b.z1), (b.r2, b.z2) = b.rz1.chunk(2, 1), b.rz2.chunk(2, 1)
    b.g2rz, b.g2n = b.g2.split([2 * R, R], 1)
    if raw:
        b.table = torch.linspace(-1, 1, C, device=dev, dtype=dt)  # label k -> 2k / (C - 1) - 1
    else:
        b.k, b.g, b.sel = e(B, 1, dtype=torch.long), e(B, C // 3), e(B, 2, 1)
        b.mix, b.params = b.logits[:, :C // 3], b.logits.view(B, 3, C // 3)[:, 1:]  # logits | means, log scales
        b.kidx = b.k.view(B, 1, 1).expand(B, 2, 1)
        b.mean, b.scale = b.sel[:, 0, 0], b.sel[:, 1, 0]
    return b


def _steps(b: SimpleNamespace, w: dict, pre, noise, logistic, out, all_logits=None) -> None:
    """Run len(pre) steps; writes labels (RAW) or samples (MOL) into out (n, B)."""
    raw = logistic is None
    for i in range(len(pre)):
        torch.addcmul(pre[i], b.xcol, w["v"], out=b.s)
        # GRU 1 (gates r, z, n): h = n + z (h - n), n = tanh(i_n + r * h_n)
        torch.add(b.s_g1rz, b.gh1rz, out=b.rz1).sigmoid_()
        torch.addcmul(b.s_g1n, b.r1, b.gh1n, out=b.n1).tanh_()
        torch.addcmul(b.n1, b.z1, torch.sub(b.h1, b.n1, out=b.tmp), out=b.h1)
        torch.addmm(w["b_h1"], b.h1, w["w_h1"], out=b.m1)  # next rnn1 hidden gates | rnn2 in | fc1
        # GRU 2 on [x + h1, a2]
        torch.add(b.s_g2, b.m1_g2, out=b.g2)
        torch.add(b.g2rz, b.gh2rz, out=b.rz2).sigmoid_()
        torch.addcmul(b.g2n, b.r2, b.gh2n, out=b.n2).tanh_()
        torch.addcmul(b.n2, b.z2, torch.sub(b.h2, b.n2, out=b.tmp), out=b.h2)
        torch.addmm(w["b_h2"], b.h2, w["w_h2"], out=b.m2)
        # fc1 on [x + h1 + h2, a3], fc2 on [f1, a4], fc3
        torch.add(b.s_f1, b.m1_f1, out=b.f1).add_(b.m2_f1).relu_()
        torch.addmm(b.s_f2, b.f1, w["w_f2"], out=b.f2).relu_()
        torch.addmm(w["b_f3"], b.f2, w["w_f3"], out=b.logits)
        if all_logits is not None:
            all_logits[i] = b.logits
        if raw:  # Gumbel-max: argmax(logits + g) is a draw from softmax(logits)
            torch.argmax(b.logits.add_(noise[i]), dim=1, out=out[i])
            torch.index_select(b.table, 0, out[i], out=b.x)
        else:  # fatchord sample_from_discretized_mix_logistic
            torch.argmax(torch.add(b.mix, noise[i], out=b.g), dim=1, keepdim=True, out=b.k)
            torch.gather(b.params, 2, b.kidx, out=b.sel)
            b.scale.clamp_(min=LOG_SCALE_MIN).exp_()
            torch.addcmul(b.mean, b.scale, logistic[i], out=b.x).clamp_(-1, 1)
            out[i] = b.x


@torch.inference_mode()
def recurrence(model: WaveRNN, m: torch.Tensor, aux: torch.Tensor, chunk_elems: int = 1 << 22,
               return_logits: bool = False):
    """Sample by sample over upsampled conditioning m (B, L, feat), aux (B, L, 4 D), in m's dtype.

    Returns (B, L): labels (long) in RAW mode, samples in [-1, 1] in MOL mode; with
    ``return_logits`` also the logits (B, L, n_classes) (for tests). The terms that do not depend
    on the previous sample, and the random draws, are computed for chunks of steps at once."""
    B, L, _ = m.shape
    dev, dt = m.device, m.dtype
    raw, C = model.mode == "RAW", model.n_classes
    w = _fused_weights(model, dt)
    b = _buffers(w, B, model.rnn_dims, C, raw, dev, dt)
    out = torch.empty(L, B, device=dev, dtype=torch.long if raw else dt)
    all_logits = torch.empty(L, B, C, device=dev, dtype=dt) if return_logits else None
    chunk = max(1, min(L, chunk_elems // (B * max(w["v"].numel(), C))))
    for t0 in range(0, L, chunk):
        t1 = min(L, t0 + chunk)
        pre = _precompute(w, m[:, t0:t1], aux[:, t0:t1])
        u = torch.rand(t1 - t0, B, C if raw else C // 3 + 1, device=dev).clamp_(1e-5, 1 - 1e-5)
        noise = -torch.log(-torch.log(u if raw else u[..., :-1]))  # Gumbel
        logistic = None if raw else (torch.log(u[..., -1]) - torch.log1p(-u[..., -1])).to(dt)
        _steps(b, w, pre, noise.to(dt), logistic, out[t0:t1],
               None if all_logits is None else all_logits[t0:t1])
    out = out.t()
    return (out, all_logits.transpose(0, 1)) if return_logits else out


# --- Folding (fatchord fold_with_overlap / xfade_and_unfold), batched over utterances ---

def fold_with_overlap(x: torch.Tensor, target: int, overlap: int) -> torch.Tensor:
    """(B, L, C) -> (B, n, target + 2 overlap, C): fold i starts at i (target + overlap); the
    end is zero-padded so that n = ceil((L - overlap) / (target + overlap)) folds fit."""
    if target < 1 or overlap < 0:
        raise ValueError(f"Expected target >= 1 and overlap >= 0, found {target}, {overlap}")
    L = x.shape[1]
    step = target + overlap
    n = max(1, -(-(L - overlap) // step))
    x = F.pad(x, (0, 0, 0, n * step + overlap - L))
    return x.unfold(1, target + 2 * overlap, step).transpose(2, 3)


def crossfade(overlap: int, kind: str = "equal_power", dtype=torch.float32, device=None):
    """(fade_in, fade_out) of length ``overlap``: the first half of the overlap belongs to the
    earlier fold (the later one is still warming up), the second half is cross-faded."""
    silence = overlap // 2
    t = torch.linspace(-1, 1, overlap - silence, dtype=torch.float64)
    if kind == "equal_power":
        fin, fout = torch.sqrt(0.5 * (1 + t)), torch.sqrt(0.5 * (1 - t))
    elif kind == "linear":
        fin, fout = 0.5 * (1 + t), 0.5 * (1 - t)
    else:
        raise ValueError(f"Unknown crossfade {kind!r}; expected 'equal_power' or 'linear'")
    fin = torch.cat([torch.zeros(silence, dtype=torch.float64), fin])
    fout = torch.cat([torch.ones(silence, dtype=torch.float64), fout])
    return fin.to(device=device, dtype=dtype), fout.to(device=device, dtype=dtype)


def xfade_and_unfold(y: torch.Tensor, overlap: int, kind: str = "equal_power") -> torch.Tensor:
    """(B, n, target + 2 overlap) -> (B, n (target + overlap) + overlap): fades at the inner fold
    boundaries, then overlap-add."""
    B, n, S = y.shape
    step = S - overlap
    if n > 1 and overlap > 0:
        fin, fout = crossfade(overlap, kind, y.dtype, y.device)
        y = y.clone()
        y[:, 1:, :overlap] *= fin
        y[:, :-1, S - overlap:] *= fout
    out = F.fold(y.transpose(1, 2), output_size=(1, n * step + overlap), kernel_size=(1, S), stride=(1, step))
    return out.view(B, -1)


def decode(y: torch.Tensor, config: WaveRNNConfig) -> torch.Tensor:
    """Recurrence output -> waveform in [-1, 1] (float32). RAW: label k -> 2k / (2^bits - 1) - 1,
    then mu-law expansion sign(y) ((1 + mu)^|y| - 1) / mu with mu = 2^bits - 1 when ``mu_law``
    (fatchord dsp.decode_mu_law, torchaudio mu_law_decoding). MOL: as sampled."""
    if config.mode == "MOL":
        return y.float()
    mu = config.n_classes - 1
    x = 2 * y.double() / mu - 1
    if config.mu_law:
        x = torch.sign(x) * torch.expm1(x.abs() * math.log1p(mu)) / mu
    return x.float()


# --- Checkpoints of both releases ---

def to_fatchord_keys(sd: dict) -> dict:
    """Translate a torchaudio ``WaveRNN`` state_dict to fatchord's names (unchanged if fatchord's).

    torchaudio (models/wavernn.py): ``upsample.resnet.melresnet_model.{0: conv_in, 1: batch_norm,
    3 + i: ResBlock i, 3 + n: conv_out}``, ResBlock ``resblock_model.{0: conv1, 1: batch_norm1,
    3: conv2, 4: batch_norm2}``, ``upsample.upsample_layers`` = fatchord's ``up_layers``, ``fc`` =
    fatchord's ``I``; no ``step`` buffer."""
    sd = strip_prefix(dict(sd))
    if "I.weight" in sd:
        return sd
    if "fc.weight" not in sd:
        raise CheckpointError(f"Not a WaveRNN state_dict of fatchord's or torchaudio's layout: expected "
                              f"'I.weight' or 'fc.weight', found {sorted(sd)[:6]}")
    pre = "upsample.resnet.melresnet_model."
    idx = {int(k[len(pre):].split(".")[0]) for k in sd if k.startswith(pre)}
    last = max(idx)
    sub = {"0": "conv1", "1": "batch_norm1", "3": "conv2", "4": "batch_norm2"}
    out = {"step": torch.zeros(1, dtype=torch.long)}
    for k, v in sd.items():
        if k.startswith(pre):
            i, rest = k[len(pre):].split(".", 1)
            i = int(i)
            if i == 0:
                k = "upsample.resnet.conv_in." + rest
            elif i == 1:
                k = "upsample.resnet.batch_norm." + rest
            elif i == last:
                k = "upsample.resnet.conv_out." + rest
            else:
                j, name = rest.removeprefix("resblock_model.").split(".", 1)
                k = f"upsample.resnet.layers.{i - 3}.{sub[j]}.{name}"
        elif k.startswith("upsample.upsample_layers."):
            k = "upsample.up_layers." + k[len("upsample.upsample_layers."):]
        elif k.startswith("fc."):
            k = "I." + k[3:]
        out[k] = v
    return out


def config_from_state_dict(sd: dict) -> WaveRNNConfig:
    """The architecture read off fatchord-named weights' shapes; other fields: release defaults."""
    try:
        conv_in, n_classes = sd["upsample.resnet.conv_in.weight"], sd["fc3.weight"].shape[0]
        ups = sorted((int(k.split(".")[2]), v.shape[-1]) for k, v in sd.items()
                     if k.startswith("upsample.up_layers.") and k.endswith(".weight"))
        factors = tuple((width - 1) // 2 for _, width in ups)
        kw = {"rnn_dims": sd["rnn1.weight_hh_l0"].shape[1], "fc_dims": sd["fc1.weight"].shape[0],
              "pad": (conv_in.shape[2] - 1) // 2, "upsample_factors": factors, "feat_dims": conv_in.shape[1],
              "compute_dims": conv_in.shape[0], "res_out_dims": sd["upsample.resnet.conv_out.weight"].shape[0],
              "res_blocks": len({k.split(".")[3] for k in sd if k.startswith("upsample.resnet.layers.")}),
              "hop_length": math.prod(factors)}
    except KeyError as e:
        raise CheckpointError(f"WaveRNN checkpoint lacks {e}; found {sorted(sd)[:6]}") from None
    if conv_in.shape[2] % 2 == 0:
        raise CheckpointError(f"MelResNet kernel {conv_in.shape[2]} is even; expected 2 pad + 1")
    if n_classes == MOL_CLASSES:
        kw["mode"] = "MOL"
    elif n_classes & (n_classes - 1) == 0:
        kw.update(mode="RAW", bits=n_classes.bit_length() - 1)
    else:
        raise CheckpointError(f"fc3 has {n_classes} outputs: expected 30 (MOL) or a power of two (RAW)")
    return WaveRNNConfig(**kw)


class WaveRNNVocoder(NeuralVocoder):
    """``generate(mel (B, 80, T), folded=True) -> (B, T * hop)`` at 22.05 kHz."""

    name = "wavernn"
    config_class = WaveRNNConfig
    default_mel = get_convention("wavernn")

    def build(self, config: WaveRNNConfig) -> nn.Module:
        if config.hop_length != self.mel.hop_length or config.feat_dims != self.mel.n_mels:
            raise ValueError(f"Model hop/mels {config.hop_length}/{config.feat_dims} differ from the mel "
                             f"convention's {self.mel.hop_length}/{self.mel.n_mels}")
        return WaveRNN(config)

    def apply_precision(self) -> None:
        """Weights stay float32; :meth:`generate` casts them per call (fused in ``recurrence``)."""

    @torch.inference_mode()
    def generate(self, mel: torch.Tensor, folded: bool = True, target: int | None = None,
                 overlap: int | None = None) -> torch.Tensor:
        """(B, n_mels, T) normalised mels -> (B, T * hop) float32 waveform.

        ``folded``: fatchord's batched generation, all folds of all B utterances in one batch
        (``target``/``overlap`` default to the config's, fatchord 11000/550); else the whole
        sequence sample by sample (still batched over the B utterances). float16 with :meth:`use_half` (CUDA)."""
        c = self.config
        target = c.target if target is None else target
        overlap = c.overlap if overlap is None else overlap
        mel = mel.to(self.device, torch.float32)
        half = self.half
        with torch.autocast("cuda", dtype=torch.float16, enabled=half):
            m, aux = self.model.condition(mel)
        dtype = torch.float16 if half else torch.float32
        m, aux = m.to(dtype), aux.to(dtype)
        B, L, _ = m.shape
        if not folded:
            return decode(recurrence(self.model, m, aux), c)
        m, aux = (fold_with_overlap(a, target, overlap) for a in (m, aux))
        n, S = m.shape[1:3]
        y = recurrence(self.model, m.reshape(B * n, S, -1), aux.reshape(B * n, S, -1))
        y = decode(y, c).view(B, n, S)  # decoded per fold before the cross-fade, as the releases
        return xfade_and_unfold(y, overlap, c.xfade)[:, :L]

    @classmethod
    def config_from_checkpoint(cls, ckpt, path: Path):
        config = config_from_state_dict(to_fatchord_keys(state_dict_of(ckpt)))
        mel = cls.default_mel
        if config.hop_length != mel.hop_length:  # fatchord's pattern: hop 12.5 ms, window 50 ms
            log.warning("%s: hop %d differs from the release's 275; assuming window 4 x hop and sample rate "
                        "hop / 12.5 ms", path, config.hop_length)
            sr = round(config.hop_length / 0.0125)
            mel = mel.replace(hop_length=config.hop_length, win_length=4 * config.hop_length, sample_rate=sr)
            config.sample_rate = sr
        return config, mel.replace(n_mels=config.feat_dims)

    @classmethod
    def translate_state_dict(cls, sd: dict) -> dict:
        """fatchord, torchaudio or avdd keys (detected from their names) -> ours (fatchord's)."""
        return to_fatchord_keys(sd)


VOCODER = WaveRNNVocoder
