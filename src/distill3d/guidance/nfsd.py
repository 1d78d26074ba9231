"""NFSD, Noise-Free Score Distillation (Katzir et al. 2024).

    g = w(t) · (δ_D + s · δ_cls(z_t; y)),  s = 7.5                                     (METHODS.md)
    δ_D = ε̂(z_t; ∅)                   for t < 200
    δ_D = ε̂(z_t; ∅) − ε̂(z_t; y_neg)   otherwise

Rows [y, ∅, y_neg] in one call (y_neg evaluated for every view; it is unused where t < 200).
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

NEGATIVE_PROMPT = ("unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, "
                   "low-resolution, gloomy")


@dataclass(frozen=True)
class NFSDConfig:
    guidance_scale: float = 7.5  # s of the classifier term
    negative_prompt: str = NEGATIVE_PROMPT  # y_neg of δ_D above small_t
    small_t: int = 200  # below it δ_D is ε̂(∅) alone
    view_dependent: bool = True  # view suffix on y
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t): 1−ᾱ ("sds"), 1 ("uniform"), √ᾱ(1−ᾱ) ("fantasia3d")


class NFSD(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: NFSDConfig | None = None) -> None:
        self.config = config or NFSDConfig()

    def extra_texts(self) -> list[str]:
        return [self.config.negative_prompt]

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)
        eps_y, eps_null, eps_neg = predict_prompt_and_texts(prior, n, inp, c.view_dependent, "",
                                                            c.negative_prompt)
        small = (n.t < c.small_t)[:, None, None, None]
        delta_d = torch.where(small, eps_null, eps_null - eps_neg)  # δ_D
        grad = weight(c.weighting, n.abar) * (delta_d + c.guidance_scale * (eps_y - eps_null))  # w(δ_D + s·δ_cls)
        return finish(grad, n.t, 1, 3 * n.z.shape[0])
