"""Nearest neighbours by chunked brute force (no extra dependency; fine up to ~10^5 points)."""

from __future__ import annotations

import torch
from torch import Tensor

_CHUNK = 1024


@torch.no_grad()
def knn_indices(queries: Tensor, points: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` nearest ``points`` [N, 3] to each query [M, 3]. -> [M, k]"""
    out = [torch.cdist(q, points).topk(k, dim=-1, largest=False).indices for q in queries.split(_CHUNK)]
    return torch.cat(out) if out else queries.new_zeros(0, k, dtype=torch.int64)


@torch.no_grad()
def knn_distances(points: Tensor, k: int) -> Tensor:
    """Distances from each point [N, 3] to its ``k`` nearest other points. -> [N, k]"""
    out = [torch.cdist(q, points).topk(k + 1, dim=-1, largest=False).values[:, 1:]
           for q in points.split(_CHUNK)]
    return torch.cat(out)
