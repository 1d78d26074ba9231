"""CSD, Classifier Score Distillation (Yu et al. 2024): the classifier term of SDS alone.

    g = w(t) · s · δ_cls(z_t; y),   δ_cls = ε̂(z_t; y) − ε̂(z_t; ∅)                    (METHODS.md)

CSD's own equation has no s (it only rescales the learning rate); ours keeps it so magnitudes can be
matched with SDS/UDS, default 7.5. Rows [y, ∅] in one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    TimestepSchedule,
    UniformTimesteps,
    Weighting,
    add_noise,
    alpha_bar,
    finish,
    predict_rows,
    sample_t_and_noise,
    stack_rows,
    view_prompts,
    weighting,
)
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class CSDConfig:
    guidance_scale: float = 7.5
    view_dependent: bool = True
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)
    weighting: Weighting = "sds"


class CSD(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: CSDConfig | None = None) -> None:
        self.config = config or CSDConfig()

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        z = inp.latents.detach()
        b = z.shape[0]
        t, eps = sample_t_and_noise(prior, c.timesteps, inp, generator)
        abar = alpha_bar(prior, t)
        z_t = add_noise(z, eps, abar)
        texts = view_prompts(inp.prompt, inp.cameras, c.view_dependent)
        rows = stack_rows([(z_t, t, [Condition(y) for y in texts]), (z_t, t, [Condition("")] * b)])
        with torch.no_grad():
            eps_y, eps_null = predict_rows(prior, rows, 2)
        grad = weighting(c.weighting, abar)[:, None, None, None] * c.guidance_scale * (eps_y - eps_null)
        return finish(grad, t, 1, 2 * b)
