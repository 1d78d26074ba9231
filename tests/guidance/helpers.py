"""Hand-written references share only this: replaying the documented draw order (t first, then ε)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distill3d.guidance.base import GuidanceInput, TimestepSchedule
from distill3d.priors.base import Condition

from .tiny_prior import TinyPrior


def replay(prior: TinyPrior, schedule: TimestepSchedule, inp: GuidanceInput, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = schedule.sample(inp.step, inp.total_steps, inp.latents.shape[0], prior.num_timesteps, g)
    eps = torch.randn(inp.latents.shape, generator=g)
    return t, eps


def one(prior: TinyPrior, z_t: Tensor, t: int, cond: Condition) -> Tensor:
    """A single-row predict_noise call: ε̂ for one latent [C, h, w]."""
    return prior.predict_noise(z_t[None], torch.tensor([t]), [cond])[0]


def abar(prior: TinyPrior, t: int) -> float:
    return float(prior.alphas_cumprod[t])


def noised(z: Tensor, eps: Tensor, a: float) -> Tensor:
    return math.sqrt(a) * z + math.sqrt(1 - a) * eps


def x0(z_t: Tensor, eps_hat: Tensor, a: float) -> Tensor:
    return (z_t - math.sqrt(1 - a) * eps_hat) / math.sqrt(a)


VIEW_NAMES = ["front", "side", "back"]  # make_input's azimuths 0, 90, 180 at 15° elevation
