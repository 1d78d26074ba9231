"""Score Distillation Sampling (DreamFusion, Poole et al. 2023): the baseline every method is measured against.

    g = w(t) · (ε̂_cfg(z_t; y) − ε),   ε̂_cfg = ε̂(∅) + s(ε̂(y) − ε̂(∅))        (DreamFusion Eq. 3 / METHODS.md)

with view-dependent prompts ("<y>, front view", ...) chosen by each view's azimuth and elevation.
Both branches go through the prior in one batched call: rows [y_1..y_B, ∅ × B].

Optional Perp-Neg (``perp_neg=True``, :mod:`distill3d.guidance.perp_neg`): ε̂_cfg is replaced by
ε̂(∅) + s(e_pos + Σ_i w_i e_i^⊥) with the other views' prompts as negatives; still one batched call, of
rows [y_v × B, ∅ × B, y_1 × B, y_2 × B].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill3d.core.errors import UserError
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
    predict_prompt_and_texts,
    weight,
)
from distill3d.guidance.perp_neg import PerpNegCurves, perp_neg_cfg, perp_neg_view
from distill3d.priors.base import Condition, Prior


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
        if self.perp_neg and not self.view_dependent:
            raise UserError("perp_neg needs view-dependent prompts: set view_dependent=true")


class SDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: SDSConfig | None = None) -> None:
        self.config = config or SDSConfig()

    def extra_texts(self) -> list[str]:
        return [self.config.negative_prompt] if self.config.negative_prompt else []

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)  # t, ε, z_t = √ᾱ z + √(1−ᾱ) ε (Eq. 1)
        b = n.z.shape[0]
        if c.perp_neg:
            views = [perp_neg_view(inp.prompt, float(a), float(e), c.perp_neg_curves)
                     for a, e in zip(inp.cameras.azimuth, inp.cameras.elevation)]
            groups = [(n.z_t, n.t, [Condition(v.positive) for v in views]),
                      (n.z_t, n.t, [Condition(c.negative_prompt)] * b)]
            groups += [(n.z_t, n.t, [Condition(v.negatives[i]) for v in views]) for i in range(2)]
            eps_y, eps_null, *eps_negs = predict_groups(prior, groups)
            weights = torch.tensor([v.weights for v in views], dtype=eps_y.dtype, device=eps_y.device)  # [B, 2]
            eps_hat = perp_neg_cfg(eps_null, eps_y, eps_negs, weights, c.guidance_scale)
        else:
            eps_y, eps_null = predict_prompt_and_texts(prior, n, inp, c.view_dependent, c.negative_prompt)
            eps_hat = cfg(eps_null, eps_y, c.guidance_scale)
        grad = weight(c.weighting, n.abar) * (eps_hat - n.eps)  # Eq. 3
        limit = None if c.grad_clamp is None else c.grad_clamp(inp.step, inp.total_steps)
        return finish(clamp_grad(grad, limit), n.t, 1, (4 if c.perp_neg else 2) * b)
