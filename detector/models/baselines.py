"""Classic audio anti-spoofing baselines in the detector framework: trained by ``avdd-train``,
scored by ``avdd-eval`` and ``avdd-detect`` like any model, so that every report can show what a
network gains over them.

- ``lfcc-lr``: logistic regression on the mean and standard deviation over time of 20 LFCCs with
  their deltas and double deltas (120 numbers per clip), standardised by running statistics.
  Trained by the common loop (binary cross-entropy, AdamW: weight decay is the L2 penalty).
- ``lfcc-gmm``: two Gaussian mixtures with diagonal covariances, one fitted on the LFCC frames of
  real speech and one on those of fake speech, by expectation-maximisation (scikit-learn); a clip's
  logit is the mean over its frames of log p(frame | fake) - log p(frame | real). The ASVspoof
  2019/2021 LFCC-GMM baseline (Todisco et al.) and WaveFake's (Frank & Schoenherr 2021) are of this
  kind; ASVspoof 2021's uses 512 components per class (the ``base`` preset; ``tiny``: 32).

Both read the LFCC front-end of the audio stream (:class:`~detector.models.audio.LfccFrontend`,
its ``n_lfcc``, ``lfcc_filters`` and STFT settings).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from .audio import LfccFrontend
from .base import Detector


def _audio_head(logit: torch.Tensor, lfcc: torch.Tensor) -> dict:
    return {"logit_audio": logit, "p_audio": torch.sigmoid(logit), "features": {"audio.mel": lfcc},
            "attention": {}}


class _LfccBaseline(Detector):
    """What both baselines are: audio in, one audio output, on the audio stream's LFCC front-end."""

    modalities = outputs = modes = ("audio",)
    main_output = "audio"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = LfccFrontend(cfg.audio)


class LfccLogisticRegression(_LfccBaseline):
    """``lfcc-lr``. Forward: batch with ``audio`` (B, L) -> ``logit_audio``, ``p_audio`` (B,),
    ``features`` {``audio.mel``: the LFCC map (B, 3 n_lfcc, T)}."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        dims = 2 * 3 * cfg.audio.n_lfcc
        self.standardise = nn.BatchNorm1d(dims, affine=False)
        self.linear = nn.Linear(dims, 1)

    def forward(self, batch: dict) -> dict:
        lfcc = self.frontend(batch["audio"])
        stats = torch.cat([lfcc.mean(dim=-1), lfcc.std(dim=-1)], dim=1)
        if self.training and len(stats) < 2:  # one clip has no batch statistics: the running ones
            bn = self.standardise
            z = nn.functional.batch_norm(stats, bn.running_mean, bn.running_var, training=False, eps=bn.eps)
        else:
            z = self.standardise(stats)
        return _audio_head(self.linear(z).squeeze(-1), lfcc)


class LfccGmm(_LfccBaseline):
    """``lfcc-gmm``: fitted, not trained by gradients (:meth:`fit`). Forward as
    :class:`LfccLogisticRegression`; before :meth:`fit` the logit is 0."""

    fitted = True  # detector.train fits it with :meth:`fit` instead of the gradient loop

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        k, d = cfg.baseline.gmm_components, 3 * cfg.audio.n_lfcc
        for cls in ("real", "fake"):  # log weights (K,), means (K, D), log variances (K, D)
            self.register_buffer(f"{cls}_log_weight", torch.full((k,), -float(np.log(k))))
            self.register_buffer(f"{cls}_mean", torch.zeros(k, d))
            self.register_buffer(f"{cls}_log_var", torch.zeros(k, d))

    def log_likelihood(self, frames: torch.Tensor, cls: str) -> torch.Tensor:
        """Per-frame log-likelihood under the class's mixture: (N, D) -> (N,)."""
        mean, log_var = getattr(self, f"{cls}_mean"), getattr(self, f"{cls}_log_var")
        precision = torch.exp(-log_var)  # (K, D); the quadratic form expanded into matrix products
        const = (mean**2 * precision + log_var).sum(-1) + mean.shape[1] * np.log(2 * np.pi)  # (K,)
        quad = (frames**2) @ precision.T - 2 * frames @ (mean * precision).T  # (N, K)
        return torch.logsumexp(-0.5 * (quad + const[None]) + getattr(self, f"{cls}_log_weight")[None], dim=1)

    def forward(self, batch: dict) -> dict:
        lfcc = self.frontend(batch["audio"])  # (B, D, T)
        b, d, t = lfcc.shape
        frames = lfcc.transpose(1, 2).reshape(b * t, d)
        llr = (self.log_likelihood(frames, "fake") - self.log_likelihood(frames, "real")).reshape(b, t)
        return _audio_head(llr.mean(dim=1), lfcc)

    @torch.no_grad()
    def fit(self, batches, seed: int = 0) -> dict:
        """Fit both mixtures by EM on the LFCC frames of ``batches`` (an iterable of training
        batches with ``audio``, ``audio_fake`` and ``has_audio``): at most ``gmm_frames`` frames per
        class, drawn at random with ``seed``. Returns the frames used and EM's convergence per class."""
        from sklearn.mixture import GaussianMixture

        bc = self.cfg.baseline
        pools: dict[str, list[np.ndarray]] = {"real": [], "fake": []}
        self.eval()
        for batch in batches:
            keep = batch["has_audio"].bool()
            if not keep.any():
                continue
            lfcc = self.frontend(batch["audio"][keep].float()).transpose(1, 2)  # (B, T, D)
            for x, fake in zip(lfcc, batch["audio_fake"][keep]):
                pools["fake" if fake >= 0.5 else "real"].append(x.numpy())
        rng = np.random.default_rng(seed)
        report = {}
        for cls, parts in pools.items():
            if not parts:
                raise ValueError(f"lfcc-gmm: the training data has no {cls} audio to fit its mixture on")
            frames = np.concatenate(parts).astype(np.float64)
            if len(frames) > bc.gmm_frames:
                frames = frames[rng.choice(len(frames), bc.gmm_frames, replace=False)]
            k = min(bc.gmm_components, len(frames))
            gmm = GaussianMixture(k, covariance_type="diag", max_iter=bc.gmm_iterations, reg_covar=1e-4,
                                  random_state=seed).fit(frames)
            getattr(self, f"{cls}_log_weight").copy_(_padded(np.log(gmm.weights_), bc.gmm_components, -np.inf))
            getattr(self, f"{cls}_mean").copy_(_padded(gmm.means_, bc.gmm_components, 0.0))
            getattr(self, f"{cls}_log_var").copy_(_padded(np.log(gmm.covariances_), bc.gmm_components, 0.0))
            report[cls] = {"frames": int(len(frames)), "components": k, "converged": bool(gmm.converged_),
                           "iterations": int(gmm.n_iter_)}
        return report


def _padded(a: np.ndarray, k: int, fill: float) -> torch.Tensor:
    """``a`` with rows up to ``k`` (a mixture fitted on fewer frames than components)."""
    out = np.full((k, *a.shape[1:]), fill, dtype=np.float64)
    out[: len(a)] = a
    return torch.from_numpy(out).float()
