"""UDS: Unified Distillation Sampling (papers/uds.md), generation and editing.

Classifier term δ_cls(z_t; y) = ε̂(z_t; y) − ε̂(z_t; ∅) (Eq. 5). The reconstruction term is a difference of
Tweedie clean-latent estimates from UNCONDITIONAL predictions (Eq. 10 with ε̂(·; ∅), Sec. 4.3).

Generation (Eq. 16-18, Alg. 1 lines 13-19): one ε, z_t and z_{t−c} noised from the same z,
    g = w(t)·[(x̂0(z_{t−c}, ε̂(z_{t−c}; ∅)) − x̂0(z_t, ε̂(z_t; ∅))) + s·δ_cls(z_t; y)]          (default)
    g = w(t)·[(x̂0^{t−c} − x̂0^t) + s·(δ_cls(z_t; y) − δ_cls(z_t; y_neg))]          (Eq. 17, with y_neg)
with s = 7.5 and interval c (ISM-like, 80-100). The order of the reconstruction term is NOT Eq. 16's as
printed (x̂0^t − x̂0^{t−c}, Alg. 1 line 17; ``reconstruction="paper"``): x̂0^t − x̂0^{t−c} =
η_t(ε − ε̂_t) − η_{t−c}(ε − ε̂_{t−c}) with η = √((1−ᾱ)/ᾱ), whose leading part has the opposite sign of SDS's and
ISM's reconstruction term ε̂(∅) − ε. The paper's prose (Sec. 4.3: "the difference between the predicted
x_0^{t−c} ... and the predicted x_0^t") reads as the default x̂0^{t−c} − x̂0^t (``reconstruction="reversed"``);
Eq. 16 probably kept the order of the noise form (Eq. 13) without flipping the sign. Measured (issue 20):
- exact scores of N(2, 1) data, reconstruction term alone, x from −3, 200 steps of lr 0.2
  (tests/guidance/test_uds.py): SDS ends at 2.00, "reversed" at 1.18 (toward the mode), "paper" at −28.1
  (diverges; E[x̂0^t − x̂0^{t−c}] = −(ᾱ_{t−c} − ᾱ_t)(x − m));
- toy-core + toy-hard dev prompts (8), seeds 0-2, embedded prior, paired paper − reversed with 95% bootstrap
  intervals over 24 (prompt, seed) pairs: judged match +4% [−7%, 16%] (a tie; "paper" wins single objects,
  75% vs 17%: "reversed" rounds a cube's edges), silhouette IoU −0.065 [−0.102, −0.032], colour error
  +0.034 [0.021, 0.047] (both favour "reversed"); command and table: benchmarks/results/methods20/uds.md.
t − c is clamped at 0. x̂0 is the one-step Tweedie estimate (Eq. 10), or with ``x0_steps = K > 1`` the DDIM
process of Eq. 15 (Alg. 1 line 17: "via Eq. (10) or Eq. (15)"), run for both z_t and z_{t−c}. All rows
[z_t: y, ∅, (y_neg)] + [z_{t−c}: ∅] go in one call, then K − 1 more calls for the DDIM x̂0.

Editing (Eq. 14, Alg. 1 lines 4-10): the source render z_src of the original asset and the current render
z_tgt from the same camera, same ε and t:
    g = w(t)·[(x̂0^tgt − x̂0^src) + s·(δ_cls(z_t^tgt; y_tgt) − δ_cls(z_t^src; y_src))]
x̂0 from unconditional predictions: Tweedie's one step (Eq. 10, default), or with ``x0_steps = K > 1`` the
paper's deterministic DDIM process (Eq. 15) run from t to 0 in K steps (τ_k = ⌊t (K−k)/K⌋, the last step
to ᾱ = 1, which is Tweedie at τ_{K−1}); its first step reuses ε̂(z_t; ∅), each further step is one call
over the target and source rows together (K calls per step in all). Eq. 15 is written for unit steps
t → t − 1; a step τ_k → τ_{k+1} here is the same update, x_{τ'} = √ᾱ_{τ'} x̂0(x_τ, ε̂(x_τ; τ, ∅)) +
√(1−ᾱ_{τ'}) ε̂(x_τ; τ, ∅), on a grid of K steps (K = t is Eq. 15 step by step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from distill3d.core.errors import UserError
from distill3d.guidance.base import (
    Diagnostics,
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    TimestepSchedule,
    UniformTimesteps,
    Weighting,
    add_noise,
    alpha_bar,
    ddim_step,
    finish,
    noise_latents,
    per_view_norm,
    predict_edit_rows,
    predict_groups,
    predict_x0,
    prompt_conditions,
    weight,
)
from distill3d.priors.base import Condition, Prior


@dataclass(frozen=True)
class UDSConfig:
    guidance_scale: float = 7.5  # s of the classifier term (paper: 7.5)
    interval: int = 80  # c, in timesteps (paper: ISM-like, 80-100)
    negative_prompt: str | None = None  # y_neg of Eq. 17; none: Eq. 16
    #: Order of the reconstruction term: x̂0^{t−c} − x̂0^t ("reversed", default: Sec. 4.3's prose, the sign of
    #: SDS's ε̂(∅) − ε; measured in benchmarks/results/methods20/uds.md) or x̂0^t − x̂0^{t−c} ("paper": Eq. 16
    #: and Alg. 1 line 17 as printed, which walks away from the data's mode on exact scores).
    reconstruction: Literal["reversed", "paper"] = "reversed"
    x0_steps: int = 1  # x̂0 in this many DDIM steps to 0 (Eq. 15); 1 is Tweedie's one step (Eq. 10)
    view_dependent: bool = True  # view suffix on y
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t) of Eq. 19

    def __post_init__(self) -> None:
        if self.x0_steps < 1:
            raise UserError(f"x0_steps must be at least 1, got {self.x0_steps}")


@dataclass
class UDSDiagnostics(Diagnostics):
    recon_norm: Tensor  # [B] ‖Δx̂0‖, the reconstruction term
    cls_norm: Tensor  # [B] ‖s·Δδ_cls‖, the classifier term


class UDS(GuidanceMethod):
    """UDS for text-to-3D generation (Eq. 16/17)."""

    def __init__(self, config: UDSConfig | None = None) -> None:
        self.config = config or UDSConfig()
        self.prior_calls_per_step = self.config.x0_steps

    def extra_texts(self) -> list[str]:
        return [self.config.negative_prompt] if self.config.negative_prompt is not None else []

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)  # t, ε: Alg. 1 line 3; z_t: line 13
        b, t, z_t = n.z.shape[0], n.t, n.z_t
        t_prev = (t - c.interval).clamp(min=0)
        abar_prev = alpha_bar(prior, t_prev)
        z_prev = add_noise(n.z, n.eps, abar_prev)  # line 15, the same ε
        groups = [(z_t, t, prompt_conditions(inp, c.view_dependent)),  # ε̂(z_t; y)
                  (z_t, t, [Condition("")] * b),  # ε̂(z_t; ∅)
                  (z_prev, t_prev, [Condition("")] * b)]  # ε̂(z_{t−c}; ∅)
        if c.negative_prompt is not None:
            groups.append((z_t, t, [Condition(c.negative_prompt)] * b))  # ε̂(z_t; y_neg)
        preds = predict_groups(prior, groups)
        eps_y, eps_null, eps_prev_null = preds[0], preds[1], preds[2]
        x0_t, x0_prev = _ddim_x0(prior, torch.cat([z_t, z_prev]), torch.cat([eps_null, eps_prev_null]),
                                 torch.cat([t, t_prev]), c.x0_steps).chunk(2)  # Eq. 10 (K = 1) or Eq. 15
        recon = x0_prev - x0_t if c.reconstruction == "reversed" else x0_t - x0_prev  # Δx̂0 (Eq. 16: x̂0^t − x̂0^{t−c})
        delta_cls = eps_y - eps_null  # δ_cls(z_t; y), Eq. 5
        if c.negative_prompt is not None:
            delta_cls = delta_cls - (preds[3] - eps_null)  # − δ_cls(z_t; y_neg), Eq. 17
        cls_term = c.guidance_scale * delta_cls
        grad = weight(c.weighting, n.abar) * (recon + cls_term)  # Eq. 18-19
        evals = len(groups) * b + (c.x0_steps - 1) * 2 * b
        return finish(grad, t, c.x0_steps, evals, UDSDiagnostics(per_view_norm(recon), per_view_norm(cls_term)))


@dataclass(frozen=True)
class UDSEditConfig:
    guidance_scale: float = 7.5  # s of the classifier terms (paper: 7.5, where DDS and PDS use 100)
    x0_steps: int = 1  # x̂0 in this many DDIM steps t → 0 (Eq. 15); 1 is Tweedie's one step (Eq. 10)
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t) of Eq. 19

    def __post_init__(self) -> None:
        if self.x0_steps < 1:
            raise UserError(f"x0_steps must be at least 1, got {self.x0_steps}")


class UDSEdit(GuidanceMethod):
    """UDS for 3D editing (Eq. 14): needs ``inp.source_latents`` (source asset, same cameras) and
    ``inp.source_prompt``; ``inp.prompt`` is the target prompt y_tgt."""

    def __init__(self, config: UDSEditConfig | None = None) -> None:
        self.config = config or UDSEditConfig()
        self.prior_calls_per_step = self.config.x0_steps

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        r = predict_edit_rows(prior, c.timesteps, inp, generator, "UDS editing")
        b, t, abar = r.z_src.shape[0], r.tgt.t, r.tgt.abar
        x0_tgt, x0_src = _ddim_x0(prior, torch.cat([r.tgt.z_t, r.zt_src]),
                                  torch.cat([r.eps_tgt_null, r.eps_src_null]), torch.cat([t, t]),
                                  c.x0_steps).chunk(2)  # Eq. 10 (K = 1) or Eq. 15
        recon = x0_tgt - x0_src  # x̂0^tgt − x̂0^src
        cls_term = c.guidance_scale * ((r.eps_tgt - r.eps_tgt_null) - (r.eps_src - r.eps_src_null))  # s(δ^tgt − δ^src)
        grad = weight(c.weighting, abar) * (recon + cls_term)  # Eq. 14
        evals = 4 * b + (c.x0_steps - 1) * 2 * b
        return finish(grad, t, c.x0_steps, evals, UDSDiagnostics(per_view_norm(recon), per_view_norm(cls_term)))


def _ddim_x0(prior: Prior, z_t: Tensor, eps_t: Tensor, t: Tensor, steps: int) -> Tensor:
    """x̂0 of z_t [N, C, h, w] at t [N] by ``steps`` deterministic DDIM steps to 0 with unconditional
    predictions (Eq. 15), ``eps_t`` = ε̂(z_t; ∅) given; steps = 1 is Tweedie's x̂0 (Eq. 10)."""
    z, eps, tau = z_t, eps_t, t
    for k in range(1, steps):
        tau_next = torch.div(t * (steps - k), steps, rounding_mode="floor")
        z = ddim_step(z, eps, alpha_bar(prior, tau), alpha_bar(prior, tau_next))  # Eq. 15
        with torch.no_grad():
            eps = prior.predict_noise(z, tau_next, [Condition("")] * z.shape[0])
        tau = tau_next
    return predict_x0(z, eps, alpha_bar(prior, tau))  # the last step, to ᾱ = 1
