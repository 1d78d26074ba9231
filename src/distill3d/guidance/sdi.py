"""SDI, Score Distillation via Inversion (Lukoianov et al., "Score Distillation via Reparametrized DDIM",
NeurIPS 2024, arXiv 2405.15891).

The paper shows that SDS is DDIM in the space of one-step denoised images with the noise term drawn afresh
at every step; DDIM instead infers it from the trajectory. SDI infers it by conditional DDIM inversion of the
current render and uses it in place of SDS' random ε:

    z_{τ_{i+1}} = DDIM(z_{τ_i} → τ_{i+1}) with ε̂_inv = ε̂_cfg(z_{τ_i}; τ_i, y) at scale s_inv,   z_{τ_0} = z
                  (+ η·σ_{τ_i→τ_{i+1}}·ξ after each step: σ² the DDPM posterior variance between the levels)
    ε_inv = (z_t − √ᾱ_t z) / √(1−ᾱ_t)          so that  z_t = √ᾱ_t z + √(1−ᾱ_t) ε_inv exactly
    g     = w(t) · (ε̂_cfg(z_t; t, y) − ε_inv)  at scale s                      (SDS' form, ε → ε_inv)

ε̂_cfg is Perp-Neg's ε̂_PN by default (:mod:`distill3d.guidance.perp_neg`, threestudio's view weights), in the
inversion and in the final prediction alike, as the release runs it. t is annealed linearly from 0.98 to 0.25
over the run (not drawn), the same for every view, plus a jitter δ ~ U{0, …, T/n − 1} per view (the released
code's last inversion step lands on t + δ).

Sources: the release's ``configs/sdi.yaml`` and ``threestudio/models/guidance/stable_diffusion_sdi_guidance.py``
(read as merged into threestudio-project/threestudio; the authors' repository vlukoianov/score-distillation-via-
inversion could not be read here): ``prompt_processor.use_perp_neg: true``, ``guidance_scale: 7.5``,
``inversion_guidance_scale: -7.5``, ``inversion_n_steps: 10``, ``inversion_eta: 0.3``, ``t_anneal: true`` with
``min_step_percent: 0.25``, ``max_step_percent: 0.98`` (t = max − (max − min)·step/trainer_max_steps, 10000
= trainer.max_steps). With Perp-Neg on, that code's ``predict_noise`` combines ε̂(∅) + s(e_pos + Σ w_i e_i^⊥),
the standard form: s = 7.5 and s_inv = −7.5 here. Its plain path (``use_perp_neg: false``) is threestudio's
form ε̂(y) + s'(ε̂(y) − ε̂(∅)), where the same numbers would be 8.5 and −6.5 here. The paper's equation numbers
could not be read (only its abstract and project page were found), so the lines below cite the formulas
above, not equation numbers.

Deviations kept on purpose, each documented:
- The released code steps on a fixed grid of stride T/n (so ⌈t·n/T⌉ steps, 1 to n); here the n steps are
  spread evenly over [0, t] for every view (τ_i = ⌊t·i/n⌋), so each step makes the same n + 1 prior calls
  whatever t is, and small t are inverted more finely.
- The released code evaluates the final prediction at t on latents inverted to t + δ; here it is evaluated
  at the level the latent is at (t + δ), which keeps z_t = √ᾱ_t z + √(1−ᾱ_t) ε_inv exact.
- Its loss ½‖z − sg(x̂0(z_t, ε̂_cfg))‖² (mean-reduced) is the gradient √((1−ᾱ_t)/ᾱ_t)(ε̂_cfg − ε_inv);
  ``weighting="x0"`` gives that weighting, the default is SDS' 1 − ᾱ_t so SDI compares with SDS at equal
  scale (the yaml's ``weighting_strategy: sds`` names it; the loss is not weighted by it).
- Perp-Neg's positive is the view's own prompt, not threestudio's interpolated embeddings
  (:mod:`distill3d.guidance.perp_neg`).

Calls per step: n inversion calls, then one call at t, each of [y, ∅] rows (2B) or with Perp-Neg
[y_v, ∅, y_1, y_2] rows (4B).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from distill3d.guidance.base import (
    AnnealedTimesteps,
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    TimestepSchedule,
    alpha_bar,
    ddim_step,
    finish,
    sample_t_and_noise,
    weighting,
)
from distill3d.guidance.perp_neg import PerpNegCurves, check_perp_neg, guided_eps, guided_rows
from distill3d.priors.base import Prior


@dataclass(frozen=True)
class SDIConfig:
    #: s of the final ε̂_cfg(z_t; y), standard form (configs/sdi.yaml guidance_scale 7.5, Perp-Neg's form).
    guidance_scale: float = 7.5
    #: s_inv of the inversion's ε̂_cfg, standard form (configs/sdi.yaml inversion_guidance_scale −7.5).
    inversion_guidance_scale: float = -7.5
    #: n, DDIM inversion steps from 0 to t (the released code's inversion_n_steps).
    inversion_steps: int = 10
    #: η, the fraction of the DDPM posterior std added as noise after each inversion step (released: 0.3).
    inversion_eta: float = 0.3
    #: View suffix on y (both the inversion and the final prediction).
    view_dependent: bool = True
    #: Perp-Neg in the inversion and the final prediction (configs/sdi.yaml use_perp_neg: true); off, the
    #: release's plain path is threestudio's CFG form, whose 7.5 / −7.5 are 8.5 / −6.5 here.
    perp_neg: bool = True
    perp_neg_curves: PerpNegCurves = field(default_factory=PerpNegCurves)  # Perp-Neg's view weights (threestudio's)
    #: t: annealed linearly 0.98 → 0.25 (configs/sdi.yaml t_anneal, max/min_step_percent), plus the jitter δ.
    timesteps: TimestepSchedule = field(default_factory=lambda: AnnealedTimesteps(0.25, 0.98, "linear"))
    #: w(t): "sds" 1 − ᾱ_t (default), "x0" √((1−ᾱ_t)/ᾱ_t) (the released code's x̂0-space loss), "uniform",
    #: "fantasia3d".
    weighting: Literal["sds", "x0", "uniform", "fantasia3d"] = "sds"

    def __post_init__(self) -> None:
        if self.inversion_steps < 1:
            raise ValueError("inversion_steps must be at least 1")
        check_perp_neg(self.perp_neg, self.view_dependent)


def posterior_std(abar_from: Tensor, abar_to: Tensor) -> Tensor:
    """σ between noise levels ᾱ_from > ᾱ_to: σ² = (1−ᾱ_from)/(1−ᾱ_to)·(1 − ᾱ_to/ᾱ_from), the DDPM posterior
    variance (DDIM paper Eq. 16 with η = 1), as the released code adds it. [B]"""
    var = (1.0 - abar_from) / (1.0 - abar_to).clamp(min=1e-12) * (1.0 - abar_to / abar_from)
    return var.clamp(min=0.0).sqrt()


class SDI(GuidanceMethod):
    def __init__(self, config: SDIConfig | None = None) -> None:
        self.config = config or SDIConfig()
        self.prior_calls_per_step = self.config.inversion_steps + 1

    def _w(self, abar: Tensor) -> Tensor:
        if self.config.weighting == "x0":
            return ((1.0 - abar) / abar).sqrt()[:, None, None, None]  # the released code's x̂0-space loss
        return weighting(self.config.weighting, abar)[:, None, None, None]

    def _guided(self, prior: Prior, z: Tensor, t: Tensor, inp: GuidanceInput, scale: float) -> Tensor:
        c = self.config
        return guided_eps(prior, z, t, inp, scale, c.view_dependent, c.perp_neg_curves if c.perp_neg else None)

    def invert(self, prior: Prior, z: Tensor, t: Tensor, inp: GuidanceInput, generator: torch.Generator) -> Tensor:
        """Conditional DDIM inversion of z [B, C, h, w] from 0 to t [B] toward the views of ``inp`` in
        ``inversion_steps`` steps (τ_i = ⌊t·i/n⌋), each followed by η·σ noise drawn from ``generator``.
        Returns z_t."""
        c = self.config
        n = c.inversion_steps
        z_k = z
        for i in range(n):
            tau = torch.div(t * i, n, rounding_mode="floor")
            tau_next = torch.div(t * (i + 1), n, rounding_mode="floor")
            a, a_next = alpha_bar(prior, tau), alpha_bar(prior, tau_next)
            eps_hat = self._guided(prior, z_k, tau, inp, c.inversion_guidance_scale)  # ε̂_cfg(z_τ; τ, y), s_inv
            z_k = ddim_step(z_k, eps_hat, a, a_next)  # DDIM inversion step τ_i → τ_{i+1}
            if c.inversion_eta > 0:
                xi = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
                z_k = z_k + c.inversion_eta * posterior_std(a, a_next)[:, None, None, None] * xi
        return z_k

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        z = inp.latents.detach()
        b = z.shape[0]
        t, _ = sample_t_and_noise(prior, c.timesteps, inp, generator)  # t, then an ε SDI does not use
        stride = max(prior.num_timesteps // c.inversion_steps, 1)
        jitter = torch.randint(0, stride, (b,), generator=generator, dtype=torch.long).to(t.device)
        t = (t + jitter).clamp(max=prior.num_timesteps - 1)  # the released code's last step lands on t + δ
        z_t = self.invert(prior, z, t, inp, generator)
        abar = alpha_bar(prior, t)
        eps_inv = (z_t - abar.sqrt()[:, None, None, None] * z) / (1.0 - abar).sqrt()[:, None, None, None]
        eps_hat = self._guided(prior, z_t, t, inp, c.guidance_scale)  # ε̂_cfg(z_t; t, y), s
        grad = self._w(abar) * (eps_hat - eps_inv)  # SDS with ε → ε_inv
        return finish(grad, t, self.prior_calls_per_step, self.prior_calls_per_step * guided_rows(c.perp_neg) * b)


__all__ = ["SDI", "SDIConfig", "posterior_std"]
