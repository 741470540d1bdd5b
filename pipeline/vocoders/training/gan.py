"""The GAN vocoders' objective: multi-resolution STFT loss, then, after a generator-only
warm-up of ``disc_start`` steps, the adversarial loss of the release's discriminator plus
feature matching (ParallelWaveGAN ``bin/train.py`` ``_train_step``: the generator loss is
``stft + lambda_adv * adv`` once ``steps > discriminator_train_start_steps``; the discriminator
is updated after the generator, on the detached output).

Generator and discriminator are trained with weight normalisation on their convolutions, as the
releases (``use_weight_norm: true``); the saved vocoder checkpoints hold the folded plain weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .losses import MultiResolutionSTFTLoss, discriminator_adversarial, feature_matching, generator_adversarial
from .objective import Objective, make_optimizer, make_scheduler, update

WEIGHT_NORMED = (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d)


def apply_weight_norm(net: nn.Module) -> nn.Module:
    """Weight-normalise every convolution of ``net`` that is not already (dim 0, as the releases)."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import weight_norm

    for m in net.modules():
        if isinstance(m, WEIGHT_NORMED) and not parametrize.is_parametrized(m, "weight"):
            weight_norm(m)
    return net


class GANObjective(Objective):
    adversarial: ClassVar[str] = "mse"  # "hinge" (descript MelGAN) or "mse" (ParallelWaveGAN)

    def __init__(self, voc, cfg):
        apply_weight_norm(voc.model)
        super().__init__(voc, cfg)
        self.discriminator = apply_weight_norm(self.build_discriminator(cfg.discriminator).to(voc.device))
        self.nets["discriminator"] = self.discriminator
        self.opts["discriminator"] = make_optimizer(self.discriminator.parameters(), cfg, cfg.lr_d)
        self.scheds["discriminator"] = make_scheduler(self.opts["discriminator"], cfg)
        self.stft_loss = MultiResolutionSTFTLoss()

    def build_discriminator(self, params: dict) -> nn.Module:
        """The release's discriminator; returns, per sub-discriminator, [feature maps..., score]."""
        raise NotImplementedError

    def generate_train(self, feats: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Features of (B, n_samples) segments -> (B, n_samples) generated audio, with gradients."""
        raise NotImplementedError

    def losses(self, wav: torch.Tensor, step: int) -> dict[str, float]:
        cfg = self.cfg
        fake = self.generate_train(self.features(wav), wav.shape[1])
        sc, mag = self.stft_loss(fake, wav)
        loss_g = sc + mag
        out = {"stft_sc": sc.item(), "stft_mag": mag.item()}
        adversarial = step >= cfg.disc_start
        if adversarial:
            real_feats = self.discriminator(wav.unsqueeze(1))
            fake_feats = self.discriminator(fake.unsqueeze(1))
            adv = generator_adversarial(self.adversarial, fake_feats)
            fm = feature_matching(fake_feats, real_feats)
            loss_g = loss_g + cfg.lambda_adv * (adv + cfg.lambda_fm * fm)
            out.update(adv_g=adv.item(), feat_match=fm.item())
        update(loss_g, self.generator, self.opts["generator"], self.scheds["generator"], cfg.grad_norm)
        out["loss_g"] = loss_g.item()
        if adversarial:
            d_real, d_fake = discriminator_adversarial(
                self.adversarial, self.discriminator(wav.unsqueeze(1)), self.discriminator(fake.detach().unsqueeze(1)))
            loss_d = d_real + d_fake
            update(loss_d, self.discriminator, self.opts["discriminator"], self.scheds["discriminator"],
                   cfg.grad_norm_d)
            out.update(d_real=d_real.item(), d_fake=d_fake.item(), loss_d=loss_d.item())
        return out
