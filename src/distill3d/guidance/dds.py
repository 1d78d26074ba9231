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
    cfg,
    finish,
    noise_latents,
    predict_groups,
    source_latents,
    weight,
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
        z_src = source_latents(inp, "DDS")  # [B, C, h, w]
        c = self.config
        tgt = noise_latents(prior, c.timesteps, inp, generator)  # z_t^tgt
        zt_src = add_noise(z_src, tgt.eps, tgt.abar)  # z_t^src: same ε and t
        b, t = tgt.z.shape[0], tgt.t
        e_tgt, e_tgt_null, e_src, e_src_null = predict_groups(prior, [
            (tgt.z_t, t, [Condition(inp.prompt)] * b), (tgt.z_t, t, [Condition("")] * b),
            (zt_src, t, [Condition(c.source_prompt)] * b), (zt_src, t, [Condition("")] * b)])
        diff = cfg(e_tgt_null, e_tgt, c.guidance_scale) - cfg(e_src_null, e_src, c.guidance_scale)  # Eq. 6
        grad = weight(c.weighting, tgt.abar) * diff
        return finish(grad, t, 1, 4 * b)
