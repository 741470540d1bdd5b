"""Pre-norm transformer layers that return their attention weights.

:class:`SelfAttention` (a sequence attends to itself) and :class:`CrossAttention` (a query
sequence attends to a context sequence) are both ``x + MHA(LN(x), LN(context))`` followed by
``x + FFN(LN(x))``. Each returns ``(x, weights)`` with ``weights`` (B, heads, Tq, Tk): the softmax
attention probabilities before dropout, so every row sums to 1. They are kept for visualization.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention.

    Args:
        dim: feature width (a multiple of ``heads``).
        heads: attention heads, each of width ``dim // heads``.
        dropout: dropout on the attention probabilities used in the product (not on the returned ones).

    Shapes: query (B, Tq, dim), context (B, Tk, dim) -> out (B, Tq, dim), weights (B, heads, Tq, Tk).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"Attention width must be a multiple of the heads, but found dim={dim}, heads={heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, dim) -> (B, heads, T, head_dim)
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self._split(self.q(query))
        k, v = (self._split(t) for t in self.kv(context).chunk(2, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        weights = F.softmax(scores.float(), dim=-1).to(q.dtype)  # softmax in float32 under AMP
        out = (self.drop(weights) @ v).transpose(1, 2).flatten(2)
        return self.out(out), weights


class FeedForward(nn.Sequential):
    """Linear(dim, mult * dim) -> GELU -> Dropout -> Linear(mult * dim, dim) -> Dropout. (B, T, dim) -> same."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * dim, dim),
                         nn.Dropout(dropout))


class _PreNormLayer(nn.Module):
    """Shared body: ``x + Drop(MHA(LN(x), context))`` then ``x + FFN(LN(x))``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, ff_mult: int = 4):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def _layer(self, x: torch.Tensor, query: torch.Tensor, context: torch.Tensor):
        y, weights = self.attn(query, context)
        x = x + self.drop(y)
        return x + self.ff(self.norm_ff(x)), weights


class SelfAttention(_PreNormLayer):
    """Pre-norm self-attention layer: a sequence attends to itself, then a feed-forward block.

    Args:
        dim, heads: width and heads of the attention.
        dropout: on attention probabilities, residual branches and inside the feed-forward block.
        ff_mult: width of the feed-forward block's hidden layer, in multiples of ``dim``.

    Shapes: x (B, T, dim) -> x (B, T, dim), weights (B, heads, T, T).
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm_q(x)
        return self._layer(x, h, h)


class CrossAttention(_PreNormLayer):
    """Pre-norm cross-attention layer: ``x`` queries ``context`` (normalised by its own
    LayerNorm), then a feed-forward block. Arguments as :class:`SelfAttention`.

    Shapes: x (B, Tq, dim), context (B, Tk, dim) -> x (B, Tq, dim), weights (B, heads, Tq, Tk).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, ff_mult: int = 4):
        super().__init__(dim, heads, dropout, ff_mult)
        self.norm_kv = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._layer(x, self.norm_q(x), self.norm_kv(context))
