"""A β-weighted multi-view term added to another method's gradient: ModeDreamer's regulariser (papers/
modedreamer_isd.txt, Eq. 8-9) lent to methods that do not have one, so that AnchorDS and UDS can be measured
with and without it (issue 22). ISD keeps its own (``guidance/isd.py``, where the term shares the ISD term's t and ε).

    g_MV = w(t') · (ε̂_MV,cfg(z_t'; y, π) − ε')                                          (Eq. 8)
    g    = g_base + β(τ) · g_MV,   β 0.6 → 0.02 over the run                               (Eq. 9, α = 1)

Wrapped: AnchorDS (``anchords-mv``), UDS (``uds-mv``) and SDS (``sds-mv``). g_base is the wrapped method's
gradient, unchanged (its own t, ε and prior calls). t' and ε' are drawn after it from the same generator, one
more prior call of 2B rows: [y, π_i] and [∅, π_i]. On a multi-view prior
(``ViewCapabilities.joint_views`` = N > 1) whose step's views come in groups of N at 360°/N
(``views_per_step=4, view_azimuths=even``) each group is one ``view_group`` at one t' (MVDream's joint
denoising); otherwise each view is denoised alone with its camera. The term needs a prior that conditions on
cameras (checked when the method is set up): without one it would be a view-agnostic SDS.
CFG of the term: the toy prior's SDS scale by default (the registry's; the paper's 50 is for MVDream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from distill3d.guidance.anchords import AnchorDS, AnchorDSConfig
from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    InnerStepOutput,
    LinearRamp,
    Schedule,
    TimestepSchedule,
    UniformTimesteps,
    Weighting,
    cfg,
    multi_view_rows,
    noise_latents,
    per_view_norm,
    predict_groups,
    weight,
)
from distill3d.guidance.sds import SDS, SDSConfig
from distill3d.guidance.uds import UDS, UDSConfig
from distill3d.priors.base import Prior, require_camera_conditioning


@dataclass(frozen=True)
class MultiViewTermConfig:
    beta: Schedule = field(default_factory=lambda: LinearRamp(0.6, 0.02))  # β(τ), Eq. 9 (Sec. 5: 0.6 → 0.02)
    guidance_scale: float = 50.0  # CFG of ε̂_MV (Sec. 5: 50, on MVDream)
    timesteps: TimestepSchedule = field(default_factory=UniformTimesteps)  # how t' is drawn
    weighting: Weighting = "sds"  # w(t')


class WithMultiViewTerm(GuidanceMethod):
    """``base``'s gradient plus β(τ)·g_MV; every other hook is the base method's."""

    #: Set-up refuses a prior that ignores cameras (``ViewCapabilities.conditions_on_cameras``).
    needs_camera_conditioning: ClassVar[bool] = True

    def __init__(self, base: GuidanceMethod, term: MultiViewTermConfig, name: str) -> None:
        self.base, self.term, self.name = base, term, name
        self.prior_calls_per_step = base.prior_calls_per_step + 1

    def extra_texts(self) -> list[str]:
        return self.base.extra_texts()

    def grammar_fallbacks(self) -> dict[str, str]:
        return {f"base.{k}": v for k, v in self.base.grammar_fallbacks().items()}

    def setup(self, prior: Prior, prompt: str, seed: int) -> None:
        require_camera_conditioning(prior, self.name, "multi-view term g_MV (Eq. 8)",
                                    "use --prior toy-mv (or toy), or the method without -mv")
        self.base.setup(prior, prompt, seed)

    def trainable_parameters(self, prior: Prior) -> list[nn.Parameter]:
        return self.base.trainable_parameters(prior)

    def inner_step(self, prior: Prior, inp: GuidanceInput, out: GuidanceOutput,
                   generator: torch.Generator) -> InnerStepOutput | None:
        return self.base.inner_step(prior, inp, out, generator)

    def state_dict(self, prior: Prior) -> dict:
        return self.base.state_dict(prior)

    def load_state_dict(self, prior: Prior, state: dict) -> None:
        self.base.load_state_dict(prior, state)

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        out = self.base(prior, inp, generator)
        c = self.term
        n = noise_latents(prior, c.timesteps, inp, generator)  # t', ε', z_t' after the base method's draws
        n, rows_y, rows_null = multi_view_rows(prior, n, inp.prompt, inp.cameras)  # a group: one t', jointly
        b = n.z.shape[0]
        eps_y, eps_null = predict_groups(prior, [(n.z_t, n.t, rows_y), (n.z_t, n.t, rows_null)])  # ε̂_MV(y|∅, π)
        g_mv = weight(c.weighting, n.abar) * (cfg(eps_null, eps_y, c.guidance_scale) - n.eps)  # Eq. 8
        grad = (out.grad + c.beta(inp.step, inp.total_steps) * g_mv).detach()  # Eq. 9 with α = 1
        return GuidanceOutput(grad, out.t, per_view_norm(grad), out.num_prior_calls + 1,
                              out.num_prior_evals + 2 * b, out.extras)


@dataclass(frozen=True)
class AnchorDSMVConfig:
    base: AnchorDSConfig = field(default_factory=AnchorDSConfig)  # AnchorDS as it is (--set base.KEY=...)
    mv: MultiViewTermConfig = field(default_factory=MultiViewTermConfig)  # the added term (--set mv.KEY=...)


class AnchorDSMV(WithMultiViewTerm):
    """AnchorDS (Eq. 11) + β(τ)·g_MV."""

    def __init__(self, config: AnchorDSMVConfig | None = None) -> None:
        self.config = config or AnchorDSMVConfig()
        super().__init__(AnchorDS(self.config.base), self.config.mv, "anchords-mv")


@dataclass(frozen=True)
class UDSMVConfig:
    base: UDSConfig = field(default_factory=UDSConfig)  # UDS generation as it is (--set base.KEY=...)
    mv: MultiViewTermConfig = field(default_factory=MultiViewTermConfig)  # the added term (--set mv.KEY=...)


class UDSMV(WithMultiViewTerm):
    """UDS generation (Eq. 16) + β(τ)·g_MV."""

    def __init__(self, config: UDSMVConfig | None = None) -> None:
        self.config = config or UDSMVConfig()
        super().__init__(UDS(self.config.base), self.config.mv, "uds-mv")


@dataclass(frozen=True)
class SDSMVConfig:
    base: SDSConfig = field(default_factory=SDSConfig)  # SDS as it is (--set base.KEY=...)
    mv: MultiViewTermConfig = field(default_factory=MultiViewTermConfig)  # the added term (--set mv.KEY=...)


class SDSMV(WithMultiViewTerm):
    """SDS (DreamFusion) + β(τ)·g_MV: ModeDreamer's Eq. 9 with g_SDS for g_ISD, the term's own effect on the
    plainest base (what the -mv variants of AnchorDS and UDS add beyond it)."""

    def __init__(self, config: SDSMVConfig | None = None) -> None:
        self.config = config or SDSMVConfig()
        super().__init__(SDS(self.config.base), self.config.mv, "sds-mv")
