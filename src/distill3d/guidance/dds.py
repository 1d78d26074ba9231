"""DDS, Delta Denoising Score (Hertz et al. 2023), for editing; UDS' baseline (papers/uds.md Eq. 6, 11).

    g = w(t) · (ε̂_cfg(z_t^tgt; y_tgt) − ε̂_cfg(z_t^src; y_src)),  same ε and t,  CFG 100 (METHODS.md)

Needs ``inp.source_latents`` (the source asset from the same cameras) and ``inp.source_prompt``;
``inp.prompt`` is y_tgt. Rows [tgt: y_tgt, ∅] + [src: y_src, ∅] in one call (``predict_edit_rows``).
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
    cfg,
    finish,
    predict_edit_rows,
    weight,
)
from distill3d.priors.base import Prior


@dataclass(frozen=True)
class DDSConfig:
    guidance_scale: float = 100.0  # CFG s of both branches (the UDS paper's comparison: 100)
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t): 1−ᾱ ("sds"), 1 ("uniform"), √ᾱ(1−ᾱ) ("fantasia3d")


class DDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: DDSConfig | None = None) -> None:
        self.config = config or DDSConfig()

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        r = predict_edit_rows(prior, c.timesteps, inp, generator, "DDS")
        diff = cfg(r.eps_tgt_null, r.eps_tgt, c.guidance_scale) - cfg(r.eps_src_null, r.eps_src, c.guidance_scale)
        grad = weight(c.weighting, r.tgt.abar) * diff  # Eq. 6
        return finish(grad, r.tgt.t, 1, 4 * r.z_src.shape[0])
