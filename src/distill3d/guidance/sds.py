"""Score Distillation Sampling (DreamFusion, Poole et al. 2023): the baseline every method is measured against.

    g = w(t) · (ε̂_cfg(z_t; y) − ε),   ε̂_cfg = ε̂(∅) + s(ε̂(y) − ε̂(∅))        (DreamFusion Eq. 3 / METHODS.md)

with view-dependent prompts ("<y>, front view", ...) chosen by each view's azimuth and elevation.
Both branches go through the prior in one batched call: rows [y_1..y_B, ∅ × B].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    Schedule,
    TimestepSchedule,
    UniformTimesteps,
    Weighting,
    cfg,
    clamp_grad,
    finish,
    noise_latents,
    predict_groups,
    prompt_conditions,
    weight,
)
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class SDSConfig:
    guidance_scale: float = 100.0  # s, standard CFG form (threestudio's 100 would be 101)
    negative_prompt: str = ""  # the unconditional branch ∅ ("" = empty prompt)
    view_dependent: bool = True  # append ", front/side/back/overhead view"
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)
    weighting: Weighting = "sds"
    grad_clamp: Schedule | None = None  # element-wise |g| ≤ value(step), None: no clamp


class SDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: SDSConfig | None = None) -> None:
        self.config = config or SDSConfig()

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)  # t, ε, z_t = √ᾱ z + √(1−ᾱ) ε (Eq. 1)
        b = n.z.shape[0]
        eps_y, eps_null = predict_groups(prior, [(n.z_t, n.t, prompt_conditions(inp, c.view_dependent)),
                                                 (n.z_t, n.t, [Condition(c.negative_prompt)] * b)])
        grad = weight(c.weighting, n.abar) * (cfg(eps_null, eps_y, c.guidance_scale) - n.eps)  # Eq. 3
        limit = None if c.grad_clamp is None else c.grad_clamp(inp.step, inp.total_steps)
        return finish(clamp_grad(grad, limit), n.t, 1, 2 * b)
