"""A tiny analytic MULTI-VIEW prior for guidance tests: ``TinyPrior`` denoising the rows of one
``Condition.view_group`` (groups of 4 views) jointly.

    ε̂_k = TinyPrior's ε̂_k + 0.3·tanh(B (z̄_t − z_t,k)),   z̄_t the mean of z_t over row k's group

B a fixed random [C, C] matrix. A row alone (no view_group) has z̄_t = z_t,k, so it gets exactly TinyPrior's ε̂;
a row of a group depends on the other views of its group and on no other row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from distill3d.priors.base import Condition, ViewCapabilities, view_groups

from .tiny_prior import TinyPrior


class JointTinyPrior(TinyPrior):
    view_capabilities = ViewCapabilities(conditions_on_cameras=True, joint_views=4)

    def __init__(self, channels: int = 4, seed: int = 0) -> None:
        super().__init__(channels, seed)
        g = torch.Generator().manual_seed(seed + 1000)
        self.couple = torch.randn(channels, channels, generator=g) / math.sqrt(channels)  # B

    def predict_noise(self, z_t: Tensor, t: Tensor, conditions: Sequence[Condition]) -> Tensor:
        eps = super().predict_noise(z_t, t, conditions)
        parts, start = [], 0
        for n in view_groups(conditions, self.view_capabilities.joint_views):
            z = z_t[start:start + n]
            parts.append(0.3 * torch.tanh(torch.einsum("cd,bdhw->bchw", self.couple, z.mean(0, keepdim=True) - z)))
            start += n
        return eps + torch.cat(parts)
