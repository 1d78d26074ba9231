"""ISM, Interval Score Matching (LucidDreamer, Liang et al. 2024); UDS' generation baseline.

As LucidDreamer's code runs it (EnVision-Research/LucidDreamer ``guidance/sd_utils.py`` ``train_step``, its
defaults in ``arguments/__init__.py`` ``GuidanceParams``; METHODS.md "More baselines and corrections"):

    s   = t − δ(τ),   δ annealed linearly from 100 at step 0 to 80 at step 1500 (``delta_t_start`` →
          ``delta_t`` over ``warmup_iter``), clamped at 0
    z_s = DDIM inversion of z from 0 to s with unconditional predictions, in strides of 200 timesteps
          (``xs_delta_t``; τ_0 = 0, τ_{i+1} = min(τ_i + 200, s), at most 5 steps: ``xs_inv_steps``)
    z_t = one DDIM inversion step s → t using ε̂(z_s; s, ∅)
    g   = √((1−ᾱ_t)/ᾱ_t) · (ε̂_cfg(z_t; t, y) − ε̂(z_s; s, ∅)),   CFG 7.5

and t ~ U[0.02, m(τ)] with the maximum m falling from 0.98 to 0.5 over the same 1500 steps (``t_range``,
``max_t_range``, ``warm_up_rate``): ``MaxRampTimesteps``. So 200 is the inversion stride, not the interval.
With ``perp_neg`` (LucidDreamer's ``GuidanceParams.perpneg``, on there by default; its ``train_step_perpneg``)
ε̂_cfg(z_t; y) is Perp-Neg's ε̂_PN with LucidDreamer's view weights (:mod:`distill3d.guidance.perp_neg`,
``LUCIDDREAMER_CURVES``); the inversion keeps its unconditional predictions. Off by default here: the paper's
ISM; the ``luciddreamer-ism`` preset turns it on.
Deviations kept: t is drawn per view (the code draws one t per batch); the code's 0.1-scaled offset noise and
random horizontal flip of the renders are left out (our inversion starts at z itself, not at z noised to
τ_0 = 0).

No random ε: only t is drawn (so the generator draws t and then an ε that is not used, to keep the shared
draw order). The inversion is sequential: ⌈max_b s_b / stride⌉ calls (at most ``max_inversion_steps``; views
whose s is reached early stay put), one for ε̂(z_s; s, ∅) (the s → t step, whose prediction is also the
control variate) and one batched [y, ∅] call at t ([y_v, ∅, y_1, y_2] with Perp-Neg).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from distill3d.core.errors import UserError
from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    LinearRamp,
    MaxRampTimesteps,
    Schedule,
    TimestepSchedule,
    alpha_bar,
    ddim_step,
    finish,
    sample_t_and_noise,
)
from distill3d.guidance.perp_neg import (
    LUCIDDREAMER_CURVES,
    PerpNegCurves,
    check_perp_neg,
    guided_eps,
    guided_rows,
)
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class ISMConfig:
    guidance_scale: float = 7.5  # CFG s of ε̂_cfg(z_t; y) (LucidDreamer guidance_scale)
    #: The interval δ = t − s in timesteps over training, rounded down: LucidDreamer's annealed delta_t,
    #: 100 (delta_t_start) → 80 (delta_t) over its warm-up of 1500 steps.
    interval: Schedule = field(default_factory=lambda: LinearRamp(100.0, 80.0, 0, 1500))
    inversion_stride: int = 200  # timesteps per DDIM inversion step from 0 to s (LucidDreamer's xs_delta_t)
    max_inversion_steps: int = 5  # at most this many inversion steps from 0 to s (LucidDreamer's xs_inv_steps)
    view_dependent: bool = True  # view suffix on y
    #: Perp-Neg for ε̂_cfg(z_t; y), the other views' prompts as negatives (LucidDreamer's perpneg, on in its
    #: GuidanceParams and the luciddreamer-ism preset; needs view_dependent).
    perp_neg: bool = False
    #: Perp-Neg's view weights: LucidDreamer's (negative_w −2, front_decay_factor 2, side_decay_factor 10).
    perp_neg_curves: PerpNegCurves = field(default_factory=lambda: LUCIDDREAMER_CURVES)
    #: LucidDreamer: t ~ U[0.02, m], m 0.98 → 0.5 over the warm-up (t_range [0.02, 0.5], max_t_range 0.98).
    timesteps: TimestepSchedule = field(default_factory=MaxRampTimesteps)

    def validate(self) -> None:
        if self.inversion_stride < 1 or self.max_inversion_steps < 1:
            raise UserError("inversion_stride and max_inversion_steps must be at least 1")
        check_perp_neg(self.perp_neg, self.view_dependent)


class ISM(GuidanceMethod):
    def __init__(self, config: ISMConfig | None = None) -> None:
        self.config = config or ISMConfig()
        #: At most: fewer when every view's s is within fewer strides of 0.
        self.prior_calls_per_step = self.config.max_inversion_steps + 2

    def _uncond(self, prior: Prior, z: Tensor, t: Tensor) -> Tensor:
        return prior.predict_noise(z, t, [Condition("")] * z.shape[0])  # ε̂(z; t, ∅)

    def inversion_steps(self, s: Tensor) -> int:
        """DDIM steps from 0 to the largest s [B]: ⌈max s / stride⌉, at most ``max_inversion_steps``."""
        c = self.config
        return min(-(-int(s.max()) // c.inversion_stride), c.max_inversion_steps)

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        z = inp.latents.detach()
        b = z.shape[0]
        t, _ = sample_t_and_noise(prior, c.timesteps, inp, generator)
        delta = int(c.interval(inp.step, inp.total_steps))  # δ(τ), LucidDreamer's current_delta_t
        s = (t - delta).clamp(min=0)
        steps = self.inversion_steps(s)
        with torch.no_grad():
            z_s, tau = z, torch.zeros_like(s)
            for _ in range(steps):  # DDIM inversion 0 → s: τ_{i+1} = min(τ_i + stride, s)
                tau_next = torch.minimum(tau + c.inversion_stride, s)
                moved = ddim_step(z_s, self._uncond(prior, z_s, tau), alpha_bar(prior, tau), alpha_bar(prior, tau_next))
                z_s = torch.where((tau_next > tau)[:, None, None, None], moved, z_s)  # views at s stay put
                tau = tau_next
            eps_s = self._uncond(prior, z_s, s)  # ε̂(z_s; s, ∅)
            abar_t = alpha_bar(prior, t)
            z_t = ddim_step(z_s, eps_s, alpha_bar(prior, s), abar_t)  # inversion step s → t
            eps_hat = guided_eps(prior, z_t, t, inp, c.guidance_scale, c.view_dependent,
                                 c.perp_neg_curves if c.perp_neg else None)  # ε̂_cfg(z_t; y) or ε̂_PN
        w = ((1.0 - abar_t) / abar_t).sqrt()[:, None, None, None]
        grad = w * (eps_hat - eps_s)
        evals = (steps + 1) * b + guided_rows(c.perp_neg) * b
        return finish(grad, t, steps + 2, evals)
