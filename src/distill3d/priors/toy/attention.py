"""Multi-head attention pieces shared by the text encoder and the UNet's transformer blocks."""

from __future__ import annotations

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
