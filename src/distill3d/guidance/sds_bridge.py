"""SDS-Bridge (McAllister et al. 2024, "Rethinking score distillation as a bridge between image
distributions"): the source is a handcrafted description of SDS's typical failures instead of ∅.

    g = w(t) · (ε̂_cfg(z_t; y) − ε̂_cfg(z_t; y_src))                                   (METHODS.md)

Both CFG predictions share ε̂(z_t; ∅): rows [y, y_src, ∅] in one call. Since ∅ cancels, g is
w(t)·s·(ε̂(y) − ε̂(y_src)): the authors' stage-two gradient (``sds_bridge_guidance.py``, phase 2) with s in
the place of their stage-two weight.

Defaults are the authors' release config (davidmcall/SDS-Bridge ``threestudio-sds-bridge/configs/sds-bridge.yaml``):
``guidance_scale: 100``, ``weighting_strategy: uniform``, ``min_step_percent: 0.02``, ``max_step_percent:
[5000, 0.98, 0.5, 5001]`` (t_max 0.98 → 0.5 at step 5000 of its 25000; here at the same fifth of the default
200-step run, step 40). Their two stages: plain SDS (CFG 100, w = 1 − ᾱ baked in) until ``stage2_start_step``
20000 of 25000, then the bridge: ``sds_until`` (default 0: the bridge from the first step) runs stage one
for that fraction of the run. ``prompt_in_source`` makes y_src = "y, <source_prompt>" as the release
config's prompt processor does (``use_modifier_only: false``); by default y_src is ``source_prompt`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distill3d.core.errors import UserError
from distill3d.guidance.base import (
    GuidanceInput,
    GuidanceMethod,
    GuidanceOutput,
    MaxSwitchTimesteps,
    TimestepSchedule,
    Weighting,
    cfg,
    finish,
    noise_latents,
    predict_groups,
    prompt_conditions,
    view_prompts,
    weight,
)
from distill3d.priors.base import Condition, Prior

SOURCE_PROMPT = ("oversaturated, smooth, pixelated, cartoon, foggy, hazy, blurry, bad structure, noisy, "
                 "malformed")


@dataclass(frozen=True)
class SDSBridgeConfig:
    guidance_scale: float = 100.0  # CFG s of both branches (release config guidance_scale: 100)
    source_prompt: str = SOURCE_PROMPT  # y_src, the handcrafted failure description (release src_modifier)
    prompt_in_source: bool = False  # y_src = "y, <source_prompt>" (the release config) instead of source_prompt
    view_dependent: bool = True  # view suffix on y (and on y_src when it contains y)
    #: Release config: t ~ U[0.02, 0.98], the maximum 0.5 from step 5000 of 25000 (here: step 40 of the
    #: default 200-step run).
    timesteps: TimestepSchedule = field(default_factory=lambda: MaxSwitchTimesteps(0.02, 0.98, 0.5, 40))
    weighting: Weighting = "uniform"  # w(t) of the bridge (release weighting_strategy: uniform)
    #: Fraction of the run optimised by plain SDS first, w = 1−ᾱ (release: stage two from step 20000 of
    #: 25000, i.e. 0.8); 0: the bridge from the first step.
    sds_until: float = 0.0

    def validate(self) -> None:
        if not 0.0 <= self.sds_until < 1.0:
            raise UserError(f"sds_until must lie within [0, 1), got {self.sds_until:g}")


class SDSBridge(GuidanceMethod):
    prior_calls_per_step = 1

    def __init__(self, config: SDSBridgeConfig | None = None) -> None:
        self.config = config or SDSBridgeConfig()

    def extra_texts(self) -> list[str]:
        c = self.config
        return [] if c.prompt_in_source or not c.source_prompt else [c.source_prompt]

    def _source_conditions(self, inp: GuidanceInput) -> list[Condition]:
        c = self.config
        if c.prompt_in_source:
            return [Condition(y) for y in view_prompts(f"{inp.prompt}, {c.source_prompt}", inp.cameras,
                                                       c.view_dependent)]
        return [Condition(c.source_prompt)] * inp.latents.shape[0]

    def __call__(self, prior: Prior, inp: GuidanceInput, generator: torch.Generator) -> GuidanceOutput:
        c = self.config
        n = noise_latents(prior, c.timesteps, inp, generator)
        b = n.z.shape[0]
        eps_y, eps_src, eps_null = predict_groups(prior, [(n.z_t, n.t, prompt_conditions(inp, c.view_dependent)),
                                                          (n.z_t, n.t, self._source_conditions(inp)),
                                                          (n.z_t, n.t, [Condition("")] * b)])
        if inp.step < c.sds_until * inp.total_steps:  # stage one: SDS
            grad = weight("sds", n.abar) * (cfg(eps_null, eps_y, c.guidance_scale) - n.eps)
        else:
            diff = cfg(eps_null, eps_y, c.guidance_scale) - cfg(eps_null, eps_src, c.guidance_scale)
            grad = weight(c.weighting, n.abar) * diff  # w(ε̂_cfg(y) − ε̂_cfg(y_src))
        return finish(grad, n.t, 1, 3 * b)
