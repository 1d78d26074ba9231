"""MVDream's score distillation (Shi et al. 2024, "MVDream: Multi-view Diffusion for 3D Generation"), as
threestudio-mvdream runs it: github.com/bytedance/MVDream-threestudio, ``configs/mvdream-sd21.yaml`` (the numbers)
and ``threestudio/models/guidance/multiview_diffusion_guidance.py`` (the gradient).

A step's B views come in groups of N = 4 views of the asset 90° apart in azimuth (the config's
``data.n_view: 4``; run with ``--set views_per_step=4 --set view_azimuths=even``, checked at every call). A
multi-view prior (``ViewCapabilities.joint_views`` = 4, checked when the method is set up and at every call)
denoises each group jointly, each view with its camera π; no view-dependent prompts
(``view_dependent_prompting: false``), the cameras carry the view:

    z_t = √ᾱ_t z + √(1−ᾱ_t) ε,   ONE t for the whole step, ε per view     (their ``t = randint(.., [1])``)
    ε̂ = ε̂(z_t; ∅, π) + s·(ε̂(z_t; y, π) − ε̂(z_t; ∅, π)),  s = 50    (``guidance_scale: 50.0``, standard form)

``recon_loss: true`` (the default): the x0-reconstruction form ("x0-reconstruction loss from Sec 3.2 and
Appendix", their comment)

    x̂0 = (z_t − √(1−ᾱ_t) ε̂) / √ᾱ_t                                                           (Tweedie)
    x̂0 ← r·(σ(x̂0_y) / σ(x̂0))·x̂0 + (1−r)·x̂0,   σ the std over a group's 4 views,
          x̂0_y from ε̂(z_t; y, π) without CFG, r = ``recon_std_rescale`` 0.5 (CFG rescale, Lin et al. 2024)
    g = z − x̂0                                     (∂/∂z of their ½‖z − sg(x̂0)‖², ``loss_sds``)

which is SDS with w(t) = √((1−ᾱ_t)/ᾱ_t) when r = 0. ``recon_loss: false``: DreamFusion's g = (1 − ᾱ_t)(ε̂ − ε).

Timesteps: t ~ U{⌊t_min(τ)·T⌋, …, ⌊t_max(τ)·T⌋} with both ends linear in the step τ (threestudio's
``[start_step, start_value, end_value, end_step]`` schedules): ``min_step_percent: [0, 0.98, 0.02, 8000]``,
``max_step_percent: [0, 0.98, 0.50, 8000]`` of ``max_steps: 10000``, here over the same first 0.8 of a run of
any length. Deviations kept on purpose: the negative prompt is "" (their config's SD negative prompt is
words the toy grammar cannot read; set ``negative_prompt`` on a prior that reads it); the elevation of a
group's views is drawn per view by our camera sampler (theirs shares one per group).
One batched call of 2B rows: [y, π_i] group after group, then [∅, π_i] likewise, each group one ``view_group``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    TimestepSchedule,
    camera_rows,
    cfg,
    finish,
    in_even_groups,
    noise_latents,
    predict_groups,
    predict_x0,
    weight,
)
from distill3d.priors.base import Prior, require_joint_views

#: Views a group holds (threestudio-mvdream's ``n_view``), 360°/VIEWS apart in azimuth.
VIEWS = 4


@dataclass(frozen=True)
class RampedRangeTimesteps:
    """One t for every view of a step, uniform in [⌊t_min·T⌋, ⌊t_max·T⌋], both ends moving linearly from their
    start to their end value over the first ``ramp`` of the run, then kept (threestudio's min/max_step_percent
    schedules). No other method uses it; it moves to ``guidance/base.py`` when one does."""

    name: ClassVar[str] = "ramped-range"
    t_min_start: float = 0.98  # lowest t at step 0, a fraction of T
    t_min_end: float = 0.02  # lowest t from the end of the ramp on
    t_max_start: float = 0.98  # highest t at step 0
    t_max_end: float = 0.50  # highest t from the end of the ramp on
    ramp: float = 0.8  # share of the run's steps over which both ends move (threestudio-mvdream: 8000 of 10000)

    def bounds(self, step: int, total_steps: int) -> tuple[float, float]:
        """(t_min, t_max) at ``step``, fractions of T."""
        end = self.ramp * total_steps
        p = min(max(step / end, 0.0), 1.0) if end > 0 else 1.0
        return (self.t_min_start + (self.t_min_end - self.t_min_start) * p,
                self.t_max_start + (self.t_max_end - self.t_max_start) * p)

    def sample(self, step: int, total_steps: int, batch: int, num_timesteps: int,
               generator: torch.Generator) -> torch.Tensor:
        lo, hi = (int(num_timesteps * f) for f in self.bounds(step, total_steps))  # int(): their floor
        return torch.randint(lo, hi + 1, (1,), generator=generator, dtype=torch.long).repeat(batch)  # [B]

    def validate(self) -> None:
        for v in (self.t_min_start, self.t_min_end, self.t_max_start, self.t_max_end):
            if not 0.0 <= v < 1.0:
                raise UserError(f"timestep fractions must lie within [0, 1) of T, got {v:g}")
        if self.t_min_start > self.t_max_start or self.t_min_end > self.t_max_end:
            raise UserError("t_min_start/t_min_end must not exceed t_max_start/t_max_end")
        if self.ramp > 1.0:
            raise UserError(f"ramp is a share of the run's steps, within [0, 1]; got {self.ramp:g}")


@dataclass(frozen=True)
class MVDreamSDSConfig:
    guidance_scale: float = 50.0  # s, standard CFG form (threestudio-mvdream's guidance_scale 50, also standard)
    negative_prompt: str = ""  # the unconditional branch ∅ ("" = empty prompt; see the module's deviations)
    #: How t is drawn at each step: MVDream's one t per step ("ramped-range"), or a shared schedule (a t per view).
    timesteps: RampedRangeTimesteps | TimestepSchedule = field(default_factory=RampedRangeTimesteps)
    recon_loss: bool = True  # g = z − x̂0 (their recon_loss); false: SDS, (1 − ᾱ)(ε̂ − ε)
    recon_std_rescale: float = 0.5  # r: x̂0 rescaled toward the std of the CFG-free x̂0 per group (0: none)

    def validate(self) -> None:
        if self.recon_std_rescale > 1.0:
            raise UserError(f"recon_std_rescale must lie within [0, 1], got {self.recon_std_rescale:g}")


def check_groups(cameras: Cameras, views: int = VIEWS) -> None:
    """A one-line ``UserError`` unless the step's cameras come in consecutive groups of ``views``, each
    360°/views apart in azimuth (what ``views_per_step=4, view_azimuths=even`` draws)."""
    if not in_even_groups(cameras, views):
        az = cameras.azimuth.detach().double().cpu()
        step = 360.0 / views
        shown = ", ".join(f"{a:g}" for a in az.tolist()[:8]) + (", …" if len(az) > 8 else "")
        raise UserError(f"mvdream-sds guides groups of {views} views {step:g}° apart in azimuth, and this step's "
                        f"{len(az)} views are at {shown}: run it with --set views_per_step={views} --set "
                        f"view_azimuths=even (or a multiple of {views} views with --set views_per_group={views})")


class MVDreamSDS(GuidanceMethod):
    prior_calls_per_step = 1
    #: Views per group a multi-view prior denoises jointly: a run needs such a prior and its steps' views in
    #: groups of this many at 360°/N (views_per_step=4, view_azimuths=even).
    joint_views: ClassVar[int] = VIEWS

    def __init__(self, config: MVDreamSDSConfig | None = None) -> None:
        self.config = config or MVDreamSDSConfig()

    def extra_texts(self) -> list[str]:
        return [self.config.negative_prompt] if self.config.negative_prompt else []

    def setup(self, prior: Prior, prompt: str, seed: int) -> None:
        require_joint_views(prior, "mvdream-sds", self.joint_views)

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        require_joint_views(prior, "mvdream-sds", self.joint_views)  # a resumed run is not set up again
        check_groups(inp.cameras)
        n = noise_latents(prior, c.timesteps, inp, generator)  # one t, ε per view, z_t = √ᾱ z + √(1−ᾱ) ε
        b = n.z.shape[0]
        eps_y, eps_null = predict_groups(prior, [(n.z_t, n.t, camera_rows(inp.prompt, inp.cameras, VIEWS, 0)),
                                                 (n.z_t, n.t, camera_rows(c.negative_prompt, inp.cameras, VIEWS,
                                                                          b // VIEWS))])
        eps_hat = cfg(eps_null, eps_y, c.guidance_scale)  # CFG, s = 50
        if not c.recon_loss:
            return finish(weight("sds", n.abar) * (eps_hat - n.eps), n.t, 1, 2 * b)  # DreamFusion's SDS
        x0 = predict_x0(n.z_t, eps_hat, n.abar)  # Tweedie x̂0 of the guided prediction
        if c.recon_std_rescale > 0:
            x0_y = predict_x0(n.z_t, eps_y, n.abar)  # x̂0 without CFG
            per_group = lambda x: x.reshape(b // VIEWS, -1).std(dim=1)  # σ over a group's views [B/N]
            factor = ((per_group(x0_y) + 1e-8) / (per_group(x0) + 1e-8)).repeat_interleave(VIEWS)
            x0 = c.recon_std_rescale * factor[:, None, None, None] * x0 + (1 - c.recon_std_rescale) * x0
        return finish(n.z - x0, n.t, 1, 2 * b)  # g = z − x̂0, the gradient of ½‖z − sg(x̂0)‖²
