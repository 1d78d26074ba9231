"""Captions -> text tokens: a word-level tokenizer over the toy world's vocabulary and a small
transformer encoder. The empty prompt "" is the null condition: it encodes to the learned <bos>
token alone, which classifier-free dropout trains."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.priors.toy.attention import Attention

PAD, UNK, BOS = 0, 1, 2
_SPECIALS = ("<pad>", "<unk>", "<bos>")


def words_of(text: str) -> list[str]:
    """Lower-case words with punctuation stripped: "A red cube, front view" -> [a, red, cube, front, view]."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


class Tokenizer:
    """Word ids over a fixed vocabulary; every sequence starts with <bos> and is padded to ``max_len``."""

    def __init__(self, vocabulary: Sequence[str], max_len: int) -> None:
        words = sorted({w for v in vocabulary for w in words_of(v)})
        self.words: tuple[str, ...] = _SPECIALS + tuple(words)
        self.max_len = max_len
        self._index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        ids = [BOS] + [self._index.get(w, UNK) for w in words_of(text)]
        if len(ids) > self.max_len:
            raise UserError(f"prompt {text!r} has {len(ids) - 1} words; the toy prior reads at most "
                            f"{self.max_len - 1}")
        return ids + [PAD] * (self.max_len - len(ids))

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """Token ids [B, max_len] (long)."""
        return torch.tensor([self.encode(t) for t in texts], dtype=torch.long)


class _Block(nn.Module):
    """Pre-norm transformer layer: self-attention over the valid tokens, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, mask)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Learned word and position embeddings + ``layers`` transformer layers -> tokens [B, L, dim]."""

    def __init__(self, vocab_size: int, max_len: int, dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """ids [B, L] -> tokens [B, L, dim] and the valid-token mask [B, L] (bool)."""
        mask = ids != PAD
        x = self.embed(ids) + self.pos
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x), mask
