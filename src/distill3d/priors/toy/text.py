"""Captions -> text tokens, two ways (``ToyUNetConfig.text_encoder``):

- ``"words"``: a word-level tokenizer over the toy world's vocabulary and a small transformer encoder;
  the empty prompt "" encodes to the learned <bos> token alone.
- ``"objects"``: the caption parsed by the toy grammar into one token per object (colour + shape + role),
  a relation token and a view token; the empty prompt encodes to a learned null token alone.

Classifier-free dropout trains the null condition of either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from distill3d.core.errors import UserError
from distill3d.priors.toy.attention import Attention
from distill3d.toyworld.grammar import COLOR_NAMES, RELATIONS, SHAPES, VIEWS, parse_caption, split_view_suffix

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


# ---- Object-centric conditioning -------------------------------------------------------------------
# The caption grammar is closed (toyworld.grammar), so a caption can be parsed into its objects and
# encoded slot by slot, as Composable Diffusion's CLEVR-Relations model and MOSAIC do: one token per
# object (colour + shape + role), one for the relation, one for the view suffix. Each object's colour is
# then bound to its shape by construction, instead of having to be learned from word order.

#: Roles of an object token: the only object, the first of a pair ("X" in "X on top of Y"), the second.
ROLES = ("single", "first", "second")
#: Token slots, in order; a caption fills some of them (a single object fills 0 and maybe 3).
OBJECT_SLOTS = ("object 1", "relation", "object 2", "view")


@dataclass(frozen=True)
class SceneIds:
    """The integer ids of one caption's object tokens; -1 marks an empty slot."""

    colour: tuple[int, int]
    shape: tuple[int, int]
    role: tuple[int, int]
    relation: int
    view: int


class SceneTokenizer:
    """Captions -> ``SceneIds`` by the toy grammar. "" is the null prompt; a caption outside the grammar
    raises the grammar's one-line ``UserError`` (unknown words included)."""

    def __init__(self) -> None:
        self.colours, self.shapes, self.relations, self.views = COLOR_NAMES, SHAPES, RELATIONS, VIEWS

    def ids(self, text: str) -> SceneIds | None:
        """None for the null prompt (empty or blank)."""
        if not text.strip():
            return None
        spec = parse_caption(text)
        _, view = split_view_suffix(text)
        objs = spec.objects
        roles = (ROLES.index("single"),) if len(objs) == 1 else (ROLES.index("first"), ROLES.index("second"))
        pad = lambda xs: tuple(xs) + (-1,) * (2 - len(xs))
        return SceneIds(
            colour=pad([self.colours.index(o.color) for o in objs]),
            shape=pad([self.shapes.index(o.shape) for o in objs]),
            role=pad(roles),
            relation=-1 if spec.relation is None else self.relations.index(spec.relation),
            view=-1 if view is None else self.views.index(view),
        )

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """Ids [B, 8] (long): colour 1, colour 2, shape 1, shape 2, role 1, role 2, relation, view;
        -1 for an empty slot. A null prompt is all -1."""
        rows = []
        for text in texts:
            s = self.ids(text)
            rows.append([-1] * 8 if s is None else [*s.colour, *s.shape, *s.role, s.relation, s.view])
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), 8)


class ObjectEncoder(nn.Module):
    """``SceneTokenizer`` ids -> tokens [B, 5, dim] and their mask [B, 5]:

        token_obj_k = LN(E_colour[c_k] + E_shape[s_k] + E_role[r_k])      k = 1, 2
        token_rel   = LN(E_relation[rel]),   token_view = LN(E_view[v]),   token_null = LN(E_null)

    in the slots (object 1, relation, object 2, view, null); the null token is valid only for the null
    prompt, so every row attends to at least one token.
    """

    def __init__(self, n_colours: int, n_shapes: int, n_relations: int, n_views: int, dim: int) -> None:
        super().__init__()
        self.colour = nn.Embedding(n_colours, dim)
        self.shape = nn.Embedding(n_shapes, dim)
        self.role = nn.Embedding(len(ROLES), dim)
        self.relation = nn.Embedding(n_relations, dim)
        self.view = nn.Embedding(n_views, dim)
        self.null = nn.Parameter(torch.randn(dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        for e in (self.colour, self.shape, self.role, self.relation, self.view):
            nn.init.normal_(e.weight, std=0.02)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """ids [B, 8] -> tokens [B, 5, dim], mask [B, 5] (bool)."""
        c, s, r, rel, view = ids[:, 0:2], ids[:, 2:4], ids[:, 4:6], ids[:, 6], ids[:, 7]
        look = lambda emb, i: emb(i.clamp_min(0))
        objects = look(self.colour, c) + look(self.shape, s) + look(self.role, r)  # [B, 2, dim]
        null = (c[:, 0] < 0) & (rel < 0) & (view < 0)
        tokens = torch.stack([objects[:, 0], look(self.relation, rel), objects[:, 1], look(self.view, view),
                              self.null.expand(ids.shape[0], -1)], dim=1)  # [B, 5, dim]
        mask = torch.stack([c[:, 0] >= 0, rel >= 0, c[:, 1] >= 0, view >= 0, null], dim=1)
        return self.norm(tokens), mask
