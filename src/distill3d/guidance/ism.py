"""ISM, Interval Score Matching (LucidDreamer, Liang et al. 2024); UDS' generation baseline.

    z_s = DDIM inversion of z from 0 to s = t − δ with unconditional predictions (``inversion_steps``)
    z_t = DDIM inversion step s → t using ε̂(z_s; s, ∅)
    g   = √((1−ᾱ_t)/ᾱ_t) · (ε̂_cfg(z_t; t, y) − ε̂(z_s; s, ∅)),   CFG 7.5                  (METHODS.md)

No random ε: only t is drawn (so the generator draws t and then an ε that is not used, to keep the
shared draw order). The inversion is sequential, so ISM makes ``inversion_steps + 2`` calls per step:
one per inversion step from 0 to s, one for ε̂(z_s; s, ∅) (the s → t step, whose prediction is also the
control variate) and one batched [y, ∅] call at t. With s = t − δ < 0 it is clamped to 0 (then z_s = z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    TimestepSchedule,
    UniformTimesteps,
    alpha_bar,
    cfg,
    ddim_step,
    finish,
    predict_groups,
    prompt_conditions,
    sample_t_and_noise,
)
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class ISMConfig:
    guidance_scale: float = 7.5
    delta: int = 200  # δ = t − s (LucidDreamer's xs_delta_t)
    inversion_steps: int = 5  # DDIM steps from 0 to s (LucidDreamer's xs_inv_steps)
    view_dependent: bool = True
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)


class ISM(GuidanceMethod):
    def __init__(self, config: ISMConfig | None = None) -> None:
        self.config = config or ISMConfig()
        self.prior_calls_per_step = self.config.inversion_steps + 2

    def _uncond(self, prior: Prior, z: Tensor, t: Tensor) -> Tensor:
        return prior.predict_noise(z, t, [Condition("")] * z.shape[0])  # ε̂(z; t, ∅)

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        z = inp.latents.detach()
        b = z.shape[0]
        t, _ = sample_t_and_noise(prior, c.timesteps, inp, generator)
        s = (t - c.delta).clamp(min=0)
        with torch.no_grad():
            z_s = z
            for i in range(c.inversion_steps):  # DDIM inversion 0 → s along τ_i = round(s·i/k)
                tau = torch.div(s * i, c.inversion_steps, rounding_mode="floor")
                tau_next = torch.div(s * (i + 1), c.inversion_steps, rounding_mode="floor")
                z_s = ddim_step(z_s, self._uncond(prior, z_s, tau), alpha_bar(prior, tau), alpha_bar(prior, tau_next))
            eps_s = self._uncond(prior, z_s, s)  # ε̂(z_s; s, ∅)
            abar_t = alpha_bar(prior, t)
            z_t = ddim_step(z_s, eps_s, alpha_bar(prior, s), abar_t)  # inversion step s → t
            eps_y, eps_null = predict_groups(prior, [(z_t, t, prompt_conditions(inp, c.view_dependent)),
                                                     (z_t, t, [Condition("")] * b)])
        w = ((1.0 - abar_t) / abar_t).sqrt()[:, None, None, None]
        grad = w * (cfg(eps_null, eps_y, c.guidance_scale) - eps_s)
        evals = (c.inversion_steps + 1) * b + 2 * b
        return finish(grad, t, self.prior_calls_per_step, evals)
