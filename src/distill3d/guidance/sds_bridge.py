"""SDS-Bridge (McAllister et al. 2024, "Rethinking score distillation as a bridge between image
distributions"): the source is a handcrafted description of SDS's typical failures instead of ∅.

    g = w(t) · (ε̂_cfg(z_t; y) − ε̂_cfg(z_t; y_src))                                   (METHODS.md)

Both CFG predictions share ε̂(z_t; ∅): rows [y, y_src, ∅] in one call. The paper's two-stage schedule
(plain SDS first) is the loop's business, not this class's. The default CFG 40 is not taken from the
papers in shared/papers (they do not state it); set it explicitly when comparing.
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
    noise_latents,
    predict_prompt_and_texts,
    weight,
)
from distill3d.priors.base import Prior

SOURCE_PROMPT = ("oversaturated, smooth, pixelated, cartoon, foggy, hazy, blurry, bad structure, noisy, "
                 "malformed")


@dataclass(frozen=True)
class SDSBridgeConfig:
    guidance_scale: float = 40.0
    source_prompt: str = SOURCE_PROMPT
    view_dependent: bool = True
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)
    weighting: Weighting = "sds"


class SDSBridge(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: SDSBridgeConfig | None = None) -> None:
        self.config = config or SDSBridgeConfig()

    def extra_texts(self) -> list[str]:
        return [self.config.source_prompt]

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)
        eps_y, eps_src, eps_null = predict_prompt_and_texts(prior, n, inp, c.view_dependent,
                                                            c.source_prompt, "")
        diff = cfg(eps_null, eps_y, c.guidance_scale) - cfg(eps_null, eps_src, c.guidance_scale)
        grad = weight(c.weighting, n.abar) * diff  # w(ε̂_cfg(y) − ε̂_cfg(y_src))
        return finish(grad, n.t, 1, 3 * n.z.shape[0])
