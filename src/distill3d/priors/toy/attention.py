"""Multi-head attention pieces shared by the text encoder and the UNet's transformer blocks."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attend(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention. q [B, N, C], k/v [B, M, C], mask [B, M] (True = attend) -> [B, N, C]."""
    b, n, c = q.shape
    split = lambda x: x.reshape(b, x.shape[1], heads, c // heads).transpose(1, 2)
    attn_mask = None if mask is None else mask[:, None, None, :]  # [B, 1, 1, M]
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask)
    return out.transpose(1, 2).reshape(b, n, c)


class Attention(nn.Module):
    """Attention from ``x`` [B, N, dim] to ``context`` [B, M, context_dim]."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.to_out(attend(self.to_q(x), self.to_k(context), self.to_v(context), self.heads, mask))


def across_views(fn: Callable[[Tensor], Tensor], x: Tensor, groups: tuple[int, ...]) -> Tensor:
    """``fn`` over the tokens of each group of views at once: x [B, L, C], its rows in consecutive groups of
    the sizes ``groups`` (summing to B); a group of n rows becomes one sequence [n·L, C] (MVDream's 3D
    self-attention: the n views' tokens concatenated), consecutive groups of one size go through ``fn`` in
    one batch. Groups of 1 give exactly ``fn(x)``. -> [B, L, C]"""
    b, length, c = x.shape
    out, start = [], 0
    for n, run in itertools.groupby(groups):
        rows = n * len(list(run))
        seg = x[start:start + rows].reshape(rows // n, n * length, c)
        out.append(fn(seg).reshape(rows, length, c))
        start += rows
    if start != b:
        raise ValueError(f"groups of sizes summing to {start} for {b} rows")
    return out[0] if len(out) == 1 else torch.cat(out)
