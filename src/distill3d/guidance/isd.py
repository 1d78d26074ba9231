"""ISD: Image-prompt Score Distillation (ModeDreamer, papers/modedreamer_isd.txt).

A reference image x_ref, generated from the prompt by the same text-to-image prior (made in :meth:`ISD.setup`
before the first step, kept in the method's state dict; or given to the constructor / :meth:`ISD.set_reference`),
selects one mode through the image adapter; the plain text prediction at the same t replaces ε as control
variate:

    g_ISD  = w(t) · (ε̂_IP,cfg(z_t; y, x_ref) − ε̂_cfg(z_t; y))                   (Eq. 7)
    g_IPSDS = w(t) · (ε̂_IP,cfg(z_t; y, x_ref) − ε)                              (Eq. 4, ``mode="ip-sds"``)
    g_MV   = w(t) · (ε̂_MV,cfg(z_t; y, π) − ε)                                   (Eq. 8)
    g      = α(τ) · g_ISD + β(τ) · g_MV,   α 0.4 → 0.8,  β 0.6 → 0.02 over training   (Eq. 9)

CFG 7.5 for the ISD term, 50 for the multi-view term, IP scale 0.5 (Sec. 5 implementation details).
The paper's ε̂_MV is MVDream's, which denoises the 4 views of a step jointly. On a multi-view prior
(``ViewCapabilities.joint_views`` = N > 1: ``toy-mv``, or MVDream itself through ``--prior mvdream``) whose step's
views come in groups of N at 360°/N (``views_per_step=4, view_azimuths=even``) the two g_MV rows of a group are
one ``view_group`` each and the step's t is shared within a group (as MVDream trains and samples): then it is the
paper's method. Otherwise each view is denoised alone with its camera in the Condition (a multi-view prior's
rows outside a group are its single-view network), so the term needs a prior that conditions on cameras (``ViewCapabilities.conditions_on_cameras`` of
``distill3d.priors.base``: the toy prior does, Stable Diffusion does not). By default (``beta=auto``) the term is
on with β 0.6 → 0.02 where the prior conditions on cameras and off where it does not, which the run states in
one printed line when the method is set up: on such a prior it would be a view-agnostic SDS at CFG 50, the
opposite of its anti-Janus role. An explicit β schedule on such a prior is refused. The term shares t and ε
with the ISD term so all rows go in one call. The IP branch's unconditional prediction is, by default (``unconditional="text"``), the
empty text with the image dropped, which through the Prior protocol is the same condition as the text
model's ∅: so the four predictions of Eq. 7 are three distinct rows per view, [ε̂(y, x_ref), ε̂(∅), ε̂(y)],
plus [ε̂(y, π), ε̂(∅, π)] for g_MV. ``unconditional="zero-image"`` follows diffusers' IP-Adapter CFG instead,
whose negative branch keeps the adapter on with a zero image: ε̂_IP,cfg = ε̂(∅, 0) + s(ε̂(y, x_ref) − ε̂(∅, 0))
with one more row ε̂(∅, 0) at the same λ_ip (the text branch keeps ε̂(∅)). Through the Prior protocol the zero
image is the all-black render [3, S, S]; diffusers zeroes the CLIP-normalised pixels for IP-Adapter-Plus (a
mean-grey image) and the image embedding itself for the plain IP-Adapter, which the protocol cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from distill3d.guidance.base import (
    Diagnostics,
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    LinearRamp,
    Schedule,
    TimestepSchedule,
    UniformTimesteps,
    Weighting,
    cfg,
    finish,
    multi_view_rows,
    noise_latents,
    per_view_norm,
    predict_groups,
    view_prompts,
    weight,
)
from distill3d.priors.base import Condition, Prior, require_camera_conditioning, views_of

PAPER_BETA = LinearRamp(0.6, 0.02)  # Sec. 5: β 0.6 → 0.02 as training progresses


@dataclass(frozen=True)
class AutoBeta:
    """β(τ) of Eq. 9 as the prior allows: Sec. 5's 0.6 → 0.02 over the run on a prior that conditions on
    cameras; the multi-view term off (β = 0, said once when the method is set up) on one that does not."""

    name: ClassVar[str] = "auto"

    def __call__(self, step: int, total_steps: int) -> float:
        return PAPER_BETA(step, total_steps)


@dataclass(frozen=True)
class ISDConfig:
    mode: Literal["isd", "ip-sds"] = "isd"  # control variate: ε̂_cfg(z_t; y) (Eq. 7) or ε (Eq. 4)
    guidance_scale: float = 7.5  # CFG of the IP and text branches (Sec. 5: 7.5)
    image_scale: float = 0.5  # IP scale λ_ip of x_ref (Sec. 5: 0.5)
    #: Unconditional of the IP branch's CFG: the empty text without image ("text") or the empty text with a
    #: zero image through the adapter ("zero-image", diffusers' IP-Adapter CFG): one more row.
    unconditional: Literal["text", "zero-image"] = "text"
    alpha: Schedule = field(default_factory=lambda: LinearRamp(0.4, 0.8))  # weight α(τ) of g_ISD, Eq. 9
    #: Weight β(τ) of g_MV (Eq. 9): auto = 0.6 → 0.02 (Sec. 5) on a prior that conditions on cameras, off (with a
    #: note) on one that does not; ramp/constant: that schedule (refused on a prior without cameras); none: off.
    beta: Schedule | AutoBeta | None = field(default_factory=AutoBeta)
    mv_guidance_scale: float = 50.0  # CFG of the multi-view term (Sec. 5: 50)
    view_dependent: bool = True  # view suffix on y for the ISD term (the MV term gets the camera instead)
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t is drawn at each step
    weighting: Weighting = "sds"  # w(t)


@dataclass
class ISDDiagnostics(Diagnostics):
    alpha: float
    beta: float  # 0 when the multi-view term is off
    isd_norm: Tensor  # [B] ‖g_ISD‖
    mv_norm: Tensor  # [B] ‖g_MV‖ (zeros when off)


class ISD(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: ISDConfig | None = None, reference: Tensor | None = None) -> None:
        self.config = config or ISDConfig()
        self.reference = reference  # [3, S, S] in [0, 1]

    def set_reference(self, image: Tensor) -> None:
        """The mode-selecting reference image x_ref [3, S, S] in [0, 1]."""
        self.reference = image.detach()

    def multi_view_weight(self, prior: Prior) -> Schedule | AutoBeta | None:
        """β(τ) on ``prior``, None when the multi-view term is off; an explicit schedule on a prior that does
        not condition on cameras is a ``UserError``."""
        beta = self.config.beta
        if beta is None or views_of(prior).conditions_on_cameras:
            return beta
        if isinstance(beta, AutoBeta):
            return None
        require_camera_conditioning(prior, "ISD", "multi-view term g_MV (Eq. 8-9, --set beta=...)",
                                    "drop --set beta (auto turns the term off on this prior) or set beta=none")
        return beta

    def _announce(self, prior: Prior) -> None:
        """The one line a run prints when the multi-view term is off because the prior ignores cameras."""
        if self.config.beta is not None and self.multi_view_weight(prior) is None:
            print(f"note: ISD's multi-view term g_MV (Eq. 8-9) is off: the prior {type(prior).__name__} does not "
                  "condition on cameras (the paper uses MVDream: on Stable Diffusion add --mv-prior PATH), so the gradient "
                  "is α·g_ISD alone", flush=True)

    def setup(self, prior: Prior, prompt: str, seed: int) -> None:
        """Check β against the prior (a note when the multi-view term is off), then x_ref sampled from the same
        prior for the prompt (DDIM, CFG ``guidance_scale``), unless given."""
        self._announce(prior)
        if self.reference is None:
            from distill3d.priors.sampling import sample

            self.set_reference(sample(prior, prompt, n=1, cfg=self.config.guidance_scale, seed=seed)[0])

    def state_dict(self, prior: Prior) -> dict:
        return {"reference": self.reference}

    def load_state_dict(self, prior: Prior, state: dict) -> None:
        self._announce(prior)  # a resumed run checks β and says it too
        if state.get("reference") is not None:
            self.set_reference(state["reference"])

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        if self.reference is None:
            raise ValueError("ISD needs a reference image: pass reference= or call set_reference()")
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)
        beta_schedule = self.multi_view_weight(prior)
        if beta_schedule is not None:  # ε̂_MV's rows; a group of views is denoised jointly, at one t
            n, mv_rows, mv_null_rows = multi_view_rows(prior, n, inp.prompt, inp.cameras)
        b, eps = n.z.shape[0], n.eps
        texts = view_prompts(inp.prompt, inp.cameras, c.view_dependent)
        ref = self.reference.to(n.z.device)
        groups = {"ip": [Condition(y, ref, c.image_scale) for y in texts],  # ε̂_IP(z_t; y, x_ref)
                  "null": [Condition("")] * b}  # ε̂(z_t; ∅), shared by both CFGs ("text")
        if c.unconditional == "zero-image":
            groups["ip_null"] = [Condition("", torch.zeros_like(ref), c.image_scale)] * b  # ε̂_IP(z_t; ∅, 0)
        if c.mode == "isd":
            groups["text"] = [Condition(y) for y in texts]  # ε̂(z_t; y)
        if beta_schedule is not None:
            groups["mv"], groups["mv_null"] = mv_rows, mv_null_rows  # ε̂_MV(z_t; y, π), ε̂_MV(z_t; ∅, π)
        pred = dict(zip(groups, predict_groups(prior, [(n.z_t, n.t, conds) for conds in groups.values()])))
        w = weight(c.weighting, n.abar)
        eps_ip = cfg(pred.get("ip_null", pred["null"]), pred["ip"], c.guidance_scale)  # ε̂_IP,cfg(z_t; y, x_ref)
        control = cfg(pred["null"], pred["text"], c.guidance_scale) if c.mode == "isd" else eps  # ε̂_cfg(y) | ε
        g_isd = w * (eps_ip - control)  # Eq. 7 (Eq. 4 for ip-sds)
        alpha = c.alpha(inp.step, inp.total_steps)
        grad = alpha * g_isd  # Eq. 9
        beta, g_mv = 0.0, torch.zeros_like(g_isd)
        if beta_schedule is not None:
            beta = beta_schedule(inp.step, inp.total_steps)
            g_mv = w * (cfg(pred["mv_null"], pred["mv"], c.mv_guidance_scale) - eps)  # Eq. 8
            grad = grad + beta * g_mv  # Eq. 9
        diag = ISDDiagnostics(alpha, beta, per_view_norm(g_isd), per_view_norm(g_mv))
        return finish(grad, n.t, 1, len(groups) * b, diag)
