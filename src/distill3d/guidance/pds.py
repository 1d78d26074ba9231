"""PDS, Posterior Distillation Sampling (Koo, Park, Sung, CVPR 2024, arXiv 2311.13831), for editing.

PDS matches the *stochastic latents* of the DDPM posterior of the source and the edited asset, not only
their noise predictions. With the same ε_t and ε_{t'} for both (t' < t):

    x_t  = √ᾱ_t x0 + √(1−ᾱ_t) ε_t,      x_{t'} = √ᾱ_{t'} x0 + √(1−ᾱ_{t'}) ε_{t'}
    μ(x_t, y) = c0 x̂0(x_t, ε̂_cfg(x_t; y)) + c1 x_t,
        c0 = √ᾱ_{t'} β_t / (1−ᾱ_t),  c1 = √α_t (1−ᾱ_{t'}) / (1−ᾱ_t),  σ_t² = (1−ᾱ_{t'}) β_t / (1−ᾱ_t)
    z_t(x0, y) = (x_{t'} − μ(x_t, y)) / σ_t                                       (stochastic latent)
    g = w(t) · (z_t(x0^tgt, y_tgt) − z_t(x0^src, y_src))                           (∇ of ‖z^tgt − z^src‖²)

with ε̂_cfg the standard CFG at scale 100 (the UDS paper's comparison, the authors' default) and w(t) = 1
(the authors' code weights nothing).

Forms (``form``):
- "code" (default): the authors' ``pds.py`` (KAIST-Visual-AI-Group/PDS, ``PDS.__call__`` and
  ``compute_posterior_mean``): a DDIMScheduler at 500 inference steps, t' = timesteps[idx − 1] = t − 2 (here
  ``T // 500``) but ``scheduler.betas[t]``, the ONE-step β_t = 1 − ᾱ_t/ᾱ_{t−1}, and α_t = 1 − β_t in c0, c1 and
  σ_t. Then c0 + c1√ᾱ_t ≠ √ᾱ_{t'}, which leaves the term ψ(t)(x0^tgt − x0^src),
  ψ(t) = (√ᾱ_{t'} − c0 − c1√ᾱ_t)/σ_t > 0, pulling the edit toward the source: the identity-preservation
  term UDS (its Eq. 9) reads in PDS, and what PDS is for. On SD's scaled-linear schedule ψ(30) ≈ 1.12,
  ψ(200) ≈ 0.14, ψ(600) ≈ 0.02; on the embedded toy prior's cosine schedule ψ(30) ≈ 3.97, ψ(200) ≈ 0.29.
- "paper": t' = t − 1 and β_t = 1 − ᾱ_t/ᾱ_{t−1}, α_t = 1 − β_t, the exact one-step posterior
  q(x_{t−1} | x_t, x0). Then c0 + c1√ᾱ_t = √ᾱ_{t−1}, so the x0 parts cancel and
  z^tgt − z^src = χ(t)·(ε̂_cfg^tgt − ε̂_cfg^src), χ = c0 √((1−ᾱ_t)/ᾱ_t) / σ_t ≈ 0.08-0.23 on SD's schedule:
  a t-weighted DDS with no identity term (checked in the tests).
Measured (issue 20, benchmarks/results/methods20/pds.md: ``distill3d bench edit``, 2 pairs x seeds 0-2, 200
steps, embedded prior), paired code − paper with 95% bootstrap intervals over the 6 edits: outside-mask MSE
to the source −0.038 [−0.069, −0.012] (0.009 against 0.048), inside MSE to the target truth −0.038
[−0.057, −0.020], judged "changed" +17% [−6%, 42%], "kept" 0% [−29%, 27%]: the identity term keeps the rest
of the scene and the edit is no weaker.
The timestep t is drawn by the usual schedule (the code draws it on its 500-step grid: t = 2·idx + 1,
idx ~ U{10, …, 489}, so t odd in [21, 979]); t' is clamped at 0 and t must be at least 1. Rows
[tgt: y_tgt, ∅] + [src: y_src, ∅] in one call; t, ε_t, then ε_{t'} are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

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
    predict_edit_rows,
    predict_x0,
    weight,
)
from distill3d.priors.base import Prior


@dataclass(frozen=True)
class PDSConfig:
    guidance_scale: float = 100.0  # CFG s (the UDS paper's comparison: 100)
    #: "code" (default; KAIST-Visual-AI-Group/PDS pds/pds.py): t → t−2 on its 500-step grid with the one-step
    #: β, which keeps the identity term ψ(t)(x0^tgt − x0^src); "paper": the exact x_{t−1} posterior as the
    #: paper writes it, a t-weighted DDS without that term.
    form: Literal["code", "paper"] = "code"
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "uniform"  # w(t): 1−ᾱ ("sds"), 1 ("uniform"), √ᾱ(1−ᾱ) ("fantasia3d")


def _bcast(v: Tensor) -> Tensor:
    return v[:, None, None, None]


class PDS(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: PDSConfig | None = None) -> None:
        self.config = config or PDSConfig()

    def posterior(self, prior: Prior, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """t' [B], c0, c1 and σ_t [B] of the form's DDPM posterior step t → t'."""
        if (t < 1).any():
            raise ValueError("PDS needs t >= 1 (the posterior step t -> t' goes below t)")
        stride = 1 if self.config.form == "paper" else max(prior.num_timesteps // 500, 1)
        t_prev = (t - stride).clamp(min=0)
        abar_t, abar_prev = alpha_bar(prior, t), alpha_bar(prior, t_prev)
        if self.config.form == "paper":
            beta = 1.0 - abar_t / abar_prev  # one step t -> t−1
        else:
            beta = 1.0 - abar_t / alpha_bar(prior, t - 1)  # the code's one-step β_t, whatever t' is
        alpha = 1.0 - beta
        c0 = abar_prev.sqrt() * beta / (1.0 - abar_t)
        c1 = alpha.sqrt() * (1.0 - abar_prev) / (1.0 - abar_t)
        sigma = ((1.0 - abar_prev) / (1.0 - abar_t) * beta).sqrt()
        return t_prev, c0, c1, sigma

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        r = predict_edit_rows(prior, c.timesteps, inp, generator, "PDS")  # draws t, then ε_t
        t, abar = r.tgt.t, r.tgt.abar
        eps_prev = torch.randn(r.z_src.shape, generator=generator, dtype=r.z_src.dtype).to(r.z_src.device)
        t_prev, c0, c1, sigma = self.posterior(prior, t)
        abar_prev = alpha_bar(prior, t_prev)

        def stochastic_latent(z0: Tensor, z_t: Tensor, eps_null: Tensor, eps_y: Tensor) -> Tensor:
            x0_hat = predict_x0(z_t, cfg(eps_null, eps_y, c.guidance_scale), abar)
            mu = _bcast(c0) * x0_hat + _bcast(c1) * z_t  # posterior mean μ(x_t, y)
            return (add_noise(z0, eps_prev, abar_prev) - mu) / _bcast(sigma)  # (x_{t'} − μ) / σ_t

        z_tgt = stochastic_latent(r.tgt.z, r.tgt.z_t, r.eps_tgt_null, r.eps_tgt)
        z_src = stochastic_latent(r.z_src, r.zt_src, r.eps_src_null, r.eps_src)
        grad = weight(c.weighting, abar) * (z_tgt - z_src)
        return finish(grad, t, 1, 4 * r.z_src.shape[0])
