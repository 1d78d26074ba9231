"""Score Distillation Sampling (DreamFusion, Poole et al. 2023): the baseline every method is measured against.

    g = w(t) · (ε̂_cfg(z_t; y) − ε),   ε̂_cfg = ε̂(∅) + s(ε̂(y) − ε̂(∅))        (DreamFusion Eq. 3 / METHODS.md)

with view-dependent prompts ("<y>, front view", ...) chosen by each view's azimuth and elevation.
Both branches go through the prior in one batched call: rows [y_1..y_B, ∅ × B].

Optional Perp-Neg (``perp_neg=True``, :mod:`distill3d.guidance.perp_neg`, shared with SDI and ISM): ε̂_cfg is
replaced by ε̂(∅) + s(e_pos + Σ_i w_i e_i^⊥) with the other views' prompts as negatives; still one batched
call, of rows [y_v × B, ∅ × B, y_1 × B, y_2 × B].
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
    clamp_grad,
    finish,
    noise_latents,
    weight,
)
from distill3d.guidance.perp_neg import PerpNegCurves, check_perp_neg, guided_eps, guided_rows
from distill3d.priors.base import Prior


@dataclass(frozen=True)
class SDSConfig:
    guidance_scale: float = 100.0  # s, standard CFG form (threestudio's 100 would be 101)
    negative_prompt: str = ""  # the unconditional branch ∅ ("" = empty prompt)
    view_dependent: bool = True  # append ", front/side/back/overhead view"
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t): 1−ᾱ ("sds"), 1 ("uniform"), √ᾱ(1−ᾱ) ("fantasia3d")
    grad_clamp: Schedule | None = None  # element-wise |g| ≤ value(step), None: no clamp
    perp_neg: bool = False  # Perp-Neg with the other views' prompts as negatives (needs view_dependent)
    perp_neg_curves: PerpNegCurves = field(default_factory=PerpNegCurves)  # Perp-Neg's view weights f(r)

    def __post_init__(self) -> None:
        check_perp_neg(self.perp_neg, self.view_dependent)


class SDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: SDSConfig | None = None) -> None:
        self.config = config or SDSConfig()

    def extra_texts(self) -> list[str]:
        return [self.config.negative_prompt] if self.config.negative_prompt else []

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)  # t, ε, z_t = √ᾱ z + √(1−ᾱ) ε (Eq. 1)
        eps_hat = guided_eps(prior, n.z_t, n.t, inp, c.guidance_scale, c.view_dependent,
                             c.perp_neg_curves if c.perp_neg else None, c.negative_prompt)  # ε̂_cfg or ε̂_PN
        grad = weight(c.weighting, n.abar) * (eps_hat - n.eps)  # Eq. 3
        limit = None if c.grad_clamp is None else c.grad_clamp(inp.step, inp.total_steps)
        return finish(clamp_grad(grad, limit), n.t, 1, guided_rows(c.perp_neg) * n.z.shape[0])
