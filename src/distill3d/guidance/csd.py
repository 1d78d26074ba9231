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
    finish,
    noise_latents,
    predict_prompt_and_texts,
    weight,
)
from distill3d.priors.base import Prior


@dataclass(frozen=True)
class CSDConfig:
    guidance_scale: float = 7.5  # s of the classifier term
    view_dependent: bool = True  # view suffix on y
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t): 1−ᾱ ("sds"), 1 ("uniform"), √ᾱ(1−ᾱ) ("fantasia3d")


class CSD(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: CSDConfig | None = None) -> None:
        self.config = config or CSDConfig()

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)
        eps_y, eps_null = predict_prompt_and_texts(prior, n, inp, c.view_dependent, "")
        grad = weight(c.weighting, n.abar) * c.guidance_scale * (eps_y - eps_null)  # w·s·δ_cls
        return finish(grad, n.t, 1, 2 * n.z.shape[0])
