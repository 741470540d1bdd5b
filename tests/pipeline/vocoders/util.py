"""Helpers shared by the vocoder tests."""

import warnings

import torch


def weight_normed(model: torch.nn.Module, types=(torch.nn.Conv1d, torch.nn.ConvTranspose1d)) -> torch.nn.Module:
    """Old-style weight norm (``weight_g``/``weight_v``, as the public releases saved them) on
    every layer of ``types``, with ``g != ||v||`` so that folding them is really exercised."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for m in model.modules():
            if isinstance(m, types):
                torch.nn.utils.weight_norm(m)
                with torch.no_grad():
                    m.weight_g.mul_(torch.empty_like(m.weight_g).uniform_(0.7, 1.3))
                    m.weight_v.mul_(torch.empty_like(m.weight_v).uniform_(0.5, 2.0))
    return model.eval()
