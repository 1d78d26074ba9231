"""DDS, Delta Denoising Score (Hertz et al. 2023), for editing; UDS' baseline (papers/uds.md Eq. 6, 11).

    g = w(t) · (ε̂_cfg(z_t^tgt; y_tgt) − ε̂_cfg(z_t^src; y_src)),  same ε and t,  CFG 100 (METHODS.md)

Needs ``inp.source_latents`` (the original asset from the same cameras); ``inp.prompt`` is y_tgt.
Rows [tgt: y_tgt, ∅] + [src: y_src, ∅] in one call.
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
    cfg,
    finish,
    predict_rows,
    sample_t_and_noise,
    stack_rows,
    weighting,
)
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class DDSConfig:
    source_prompt: str  # y_src, describing the original asset
    guidance_scale: float = 100.0
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)
    weighting: Weighting = "sds"


class DDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: DDSConfig) -> None:
        self.config = config

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        if inp.source_latents is None:
            raise ValueError("DDS needs GuidanceInput.source_latents (renders of the original asset)")
        c = self.config
        z_tgt, z_src = inp.latents.detach(), inp.source_latents.detach()
        b = z_tgt.shape[0]
        t, eps = sample_t_and_noise(prior, c.timesteps, inp, generator)
        abar = alpha_bar(prior, t)
        zt_tgt, zt_src = add_noise(z_tgt, eps, abar), add_noise(z_src, eps, abar)
        groups = [(zt_tgt, t, [Condition(inp.prompt)] * b), (zt_tgt, t, [Condition("")] * b),
                  (zt_src, t, [Condition(c.source_prompt)] * b), (zt_src, t, [Condition("")] * b)]
        with torch.no_grad():
            e_tgt, e_tgt_null, e_src, e_src_null = predict_rows(prior, stack_rows(groups), 4)
        diff = cfg(e_tgt_null, e_tgt, c.guidance_scale) - cfg(e_src_null, e_src, c.guidance_scale)  # Eq. 6
        grad = weighting(c.weighting, abar)[:, None, None, None] * diff
        return finish(grad, t, 1, 4 * b)
