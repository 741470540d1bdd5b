"""The CUDA paths of the vocoders against their float32 CPU paths, on real speech.

The neural vocoders run in float32 by default and in float16 with ``use_half`` (``--half``); these
tests give both devices the same weights and the same seeded noise (drawn on the CPU) and check
that the GPU computes what the CPU computes, in both precisions. They are
skipped on a machine without a CUDA device (CI has none); run them where there is one:

    pytest tests/pipeline/vocoders/test_cuda.py -v -s
"""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from pipeline.vocoders import get_vocoder_class
from pipeline.vocoders.wavernn import WaveRNNVocoder, recurrence

from .test_wavernn import randomize_bn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SR, CLIP = 16000, 20480  # the store's clips: 32 frames at 25 fps


@pytest.fixture(scope="module")
def speech(sample_data):
    """Four 1.28 s clips of real speech at 16 kHz."""
    audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted((sample_data / "speech").glob("*.wav"))])
    starts = np.linspace(0, len(audio) - CLIP, 4).astype(int)
    return np.stack([audio[s:s + CLIP] for s in starts])


def _twins(name: str, std: float | None = None, only: str = "", half: bool = False):
    """The vocoder on CPU and on CUDA (float16 with ``half``) with the same (seeded random)
    weights: the release's default config; ``std`` re-draws the parameters whose name contains
    ``only`` with that spread (zero-initialised layers would otherwise hide a part of the network)."""
    cls = get_vocoder_class(name)
    torch.manual_seed(0)
    cpu = cls(device="cpu")
    gpu = cls(device="cuda")
    if hasattr(cpu, "model"):
        if std is not None:
            g = torch.Generator().manual_seed(1)
            for key, p in cpu.model.named_parameters():
                if only in key:
                    p.data = torch.randn(p.shape, generator=g) * std
        gpu.model.load_state_dict(cpu.model.state_dict())
        gpu.use_half(half)
    return cpu, gpu


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name,std,only,half,tol", [
    ("griffinlim", None, "", False, 1e-3),  # float32 on both devices: rounding only
    ("melgan", None, "", False, 1e-3),
    ("melgan", None, "", True, 0.02),  # float16 on CUDA
    ("parallel_wavegan", None, "", False, 1e-3),
    ("parallel_wavegan", None, "", True, 0.02),
    # the coupling layers' zero-initialised last convs drawn; float16 keeps the 1x1 convs in float32
    ("waveglow", 0.02, ".end.", False, 1e-3),
    ("waveglow", 0.02, ".end.", True, 0.02),
])
def test_copy_synthesis_on_cuda_matches_cpu(speech, name, std, only, half, tol):
    cpu, gpu = _twins(name, std, only, half)
    y_cpu = cpu.copy_synthesize(speech, SR)
    y_gpu = gpu.copy_synthesize(speech, SR)
    assert y_gpu.shape == speech.shape and y_gpu.dtype == np.float32 and np.isfinite(y_gpu).all()
    err = _relative_error(y_gpu, y_cpu)
    print(f"{name} {'float16' if half else 'float32'}: relative error CUDA vs CPU {err:.2e}, rms {np.sqrt(np.mean(y_cpu ** 2)):.3g}")
    assert np.sqrt(np.mean(y_cpu ** 2)) > 1e-4  # a real signal, not silence on both sides
    assert err < tol


@pytest.mark.parametrize("mode", ["MOL", "RAW"])
def test_wavernn_fused_float16_recurrence_matches_float32_teacher_forcing(mode):
    """The release-sized network: the logits of the fused float16 steps on CUDA equal those of the
    float32 GRU layers on CPU fed the samples the GPU drew."""
    cls = WaveRNNVocoder
    cfg = cls.config_class()
    cfg.mode = mode
    torch.manual_seed(0)
    cpu_model = randomize_bn(cls(cfg).model).eval()
    gpu = cls(cfg, device="cuda").use_half()
    gpu.model.load_state_dict(cpu_model.state_dict())
    mel = torch.rand(2, cfg.feat_dims, 3, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cuda", dtype=torch.float16):
        m, aux = gpu.model.condition(mel.cuda())
    y, logits = recurrence(gpu.model, m.half(), aux.half(), return_logits=True)
    y, logits = y.cpu(), logits.float().cpu()
    x = 2 * y.float() / (cpu_model.n_classes - 1) - 1 if mode == "RAW" else y.float()
    x_prev = torch.cat([torch.zeros(2, 1), x[:, :-1]], 1)
    with torch.no_grad():
        ref = cpu_model(x_prev, F.pad(mel, (cpu_model.pad, cpu_model.pad)))
    err = float((logits - ref).norm() / ref.norm())
    print(f"wavernn {mode}: relative logit error float16 CUDA vs float32 CPU {err:.2e}")
    assert torch.isfinite(logits).all() and err < 0.02


@pytest.mark.parametrize("half", [False, True])
def test_wavernn_folded_generation_on_cuda(speech, half):
    _, gpu = _twins("wavernn", half=half)
    feats = gpu.features(torch.as_tensor(speech).cuda())  # resampling is not needed for the shapes
    y = gpu.generate(feats, folded=True)
    assert y.shape == (len(speech), feats.shape[-1] * gpu.mel.hop_length) and y.device.type == "cuda"
    assert torch.isfinite(y).all() and y.abs().max() <= math.sqrt(2) + 1e-3 and y.std() > 1e-3


@pytest.mark.parametrize("half", [False, True])
def test_wavenet_incremental_and_naive_agree_on_cuda(half):
    """On CUDA the cached incremental path draws what the naive path draws, until rounding first
    flips a draw; both stay finite signals."""
    _, gpu = _twins("wavenet", std=0.05, half=half)
    mel = torch.rand(2, gpu.mel.n_mels, 2, generator=torch.Generator().manual_seed(3))
    fast = gpu.generate(mel, incremental=True, seed=7).cpu()
    naive = gpu.generate(mel, incremental=False, seed=7).cpu()
    assert fast.shape == naive.shape == (2, 2 * gpu.mel.hop_length)
    assert torch.isfinite(fast).all() and fast.std(1).min() > 1e-3
    same = (fast - naive).abs() < 1e-2
    first_diff = int(same.all(0).logical_not().nonzero()[0]) if not same.all() else fast.shape[1]
    print(f"wavenet: incremental and naive agree on {same.float().mean():.1%} of samples, "
          f"identical up to sample {first_diff}")
    assert first_diff >= 32
