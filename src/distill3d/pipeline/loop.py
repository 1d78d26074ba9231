"""The optimisation loop of ``distill3d generate``: plain, readable top to bottom.

    for each step:
        cameras  = random views                         (render time)
        x        = render(representation, cameras)
        z        = prior.encode(x)
        g        = method(prior, z, x, cameras, prompt) (prior time)
        loss     = ½‖z − sg(z − g)‖² / views            (backward time)
        optimizer step, method's own inner step, densification
        every N steps: checkpoint (atomic) and preview

Everything random comes from one ``torch.Generator`` seeded from the run's seed, whose state is saved in
checkpoints, so a CPU run is bit-for-bit repeatable and ``resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distill3d.core.errors import UserError
from distill3d.core.seed import seed_everything
from distill3d.core.state import load_state, save_state
from distill3d.guidance import METHODS, GuidanceInput, GuidanceMethod, surrogate_loss
from distill3d.guidance.isd import ISD
from distill3d.pipeline.config import RunConfig, method_config_overrides
from distill3d.priors.base import Prior
from distill3d.scene.control import control_maps
from distill3d.scene.densify import (
    GAUSSIAN_DREAMER,
    LUCID_DREAMER,
    DensifyConfig,
    DensifyState,
    DensifyStrategy,
)
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.radiance_field import RadianceFieldConfig, VoxelRadianceField
from distill3d.scene.render import render
from distill3d.scene.sampling import CameraSampleConfig, sample_cameras

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class Timings:
    """Wall-clock seconds spent in each part of the loop, summed over steps."""

    render: float = 0.0
    prior: float = 0.0  # guidance: prior calls and the method's own arithmetic
    backward: float = 0.0
    other: float = 0.0  # optimiser, densification, inner steps, checkpoints, previews

    def total(self) -> float:
        return self.render + self.prior + self.backward + self.other


@dataclass
class LoopState:
    step: int = 0
    timings: Timings = field(default_factory=Timings)
    prior_calls: int = 0
    prior_evals: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # per logged step: loss, grad norm, t


def build_method(cfg: RunConfig, method_overrides: dict[str, str]) -> GuidanceMethod:
    entry = METHODS.get(cfg.method)
    if entry is None:
        raise UserError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    probe = entry.factory()
    typed = method_config_overrides(type(probe.config), method_overrides) if method_overrides else {}
    return entry.factory(**typed) if typed else probe


def build_representation(cfg: RunConfig, generator: torch.Generator) -> nn.Module:
    if cfg.representation == "gaussians":
        return GaussianModel.random_in_sphere(cfg.num_gaussians, radius=cfg.init_radius, scale=cfg.init_scale,
                                              opacity=cfg.init_opacity, generator=generator)
    return VoxelRadianceField(RadianceFieldConfig(resolution=cfg.grid_resolution))


def build_optimizer(rep: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    if isinstance(rep, GaussianModel):
        groups = [
            {"params": [rep.means], "lr": cfg.lr_means, "name": "means"},
            {"params": [rep.log_scales], "lr": cfg.lr_scales, "name": "log_scales"},
            {"params": [rep.quats], "lr": cfg.lr_quats, "name": "quats"},
            {"params": [rep.opacity_logits], "lr": cfg.lr_opacity, "name": "opacity_logits"},
            {"params": [rep.sh_dc, rep.sh_rest], "lr": cfg.lr_colors, "name": "colors"},
        ]
        return torch.optim.Adam(groups, eps=1e-15)
    return torch.optim.Adam(rep.parameters(), lr=cfg.lr_radiance)


def camera_sampling(cfg: RunConfig) -> CameraSampleConfig:
    return CameraSampleConfig(elevation_range=(cfg.elevation_min, cfg.elevation_max),
                              distance_range=(cfg.distance_min, cfg.distance_max),
                              fov_range=(cfg.fov_min, cfg.fov_max), front_bias=cfg.front_bias)


#: Densification presets by name. "toy" compresses the GaussianDreamer schedule into a short CPU run.
DENSIFY_PRESETS: dict[str, DensifyConfig | None] = {
    "none": None,
    "toy": DensifyConfig(densify_from=100, densify_until=500, interval=100, grad_threshold=0.0002,
                         percent_dense=0.01, scene_extent=3.2, prune_opacity=0.02, opacity_reset_interval=None,
                         screen_size_from=None),
    "gaussiandreamer": GAUSSIAN_DREAMER,
    "luciddreamer": LUCID_DREAMER,
}


def build_densify(cfg: RunConfig, rep: nn.Module) -> DensifyStrategy | None:
    if cfg.densify not in DENSIFY_PRESETS:
        raise UserError(f"unknown densify preset {cfg.densify!r}; choose one of {', '.join(DENSIFY_PRESETS)}")
    preset = DENSIFY_PRESETS[cfg.densify]
    if preset is None or not isinstance(rep, GaussianModel):
        return None
    return DensifyStrategy(preset, len(rep), rep.means.device)


def _save_checkpoint(path: Path, rep: nn.Module, opt: torch.optim.Optimizer, method: GuidanceMethod,
                     prior: Prior, generator: torch.Generator, state: LoopState,
                     densify: DensifyStrategy | None, extra: dict) -> None:
    save_state(path, {
        "densify": dataclasses.asdict(densify.state) if densify is not None else None,
        "step": state.step,
        "representation": rep.state_dict(),
        "optimizer": opt.state_dict(),
        "method": method.state_dict(prior),
        "rng": generator.get_state(),
        "torch_rng": torch.get_rng_state(),  # global draws (e.g. a radiance field's stratified samples)
        "timings": dataclasses.asdict(state.timings),
        "prior_calls": state.prior_calls,
        "prior_evals": state.prior_evals,
        "history": state.history,
        **extra,
    })


def _restore(path: Path, cfg: RunConfig, method: GuidanceMethod, prior: Prior,
             generator: torch.Generator) -> tuple[nn.Module, torch.optim.Optimizer, LoopState, dict]:
    ck = load_state(path)
    rep_state = ck["representation"]
    if cfg.representation == "gaussians":
        rep: nn.Module = GaussianModel(**{k: rep_state[k] for k in
                                          ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")})
    else:
        rep = VoxelRadianceField(RadianceFieldConfig(resolution=cfg.grid_resolution))
        rep.load_state_dict(rep_state)
    opt = build_optimizer(rep, cfg)
    opt.load_state_dict(ck["optimizer"])
    method.load_state_dict(prior, ck["method"])
    generator.set_state(ck["rng"])
    torch.set_rng_state(ck["torch_rng"])
    state = LoopState(step=int(ck["step"]), timings=Timings(**ck["timings"]), prior_calls=int(ck["prior_calls"]),
                      prior_evals=int(ck["prior_evals"]), history=list(ck["history"]))
    return rep, opt, state, ck


def _restore_densify(densify: DensifyStrategy | None, ck: dict) -> None:
    if densify is not None and ck.get("densify") is not None:
        densify.state = DensifyState(**ck["densify"])


StepCallback = Callable[[int, dict[str, float]], None]


def optimise(prompt: str, cfg: RunConfig, method: GuidanceMethod, prior: Prior, out_dir: Path,
             resume: bool = False, on_step: StepCallback | None = None,
             on_preview: Callable[[int, nn.Module], None] | None = None) -> tuple[nn.Module, LoopState]:
    """Run (or resume) the optimisation; checkpoints go to ``out_dir/checkpoint.safetensors``."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    generator = seed_everything(cfg.seed)
    ck_path = out_dir / CHECKPOINT
    extra: dict = {}
    ck: dict = {}
    if resume and ck_path.exists():
        rep, opt, state, ck = _restore(ck_path, cfg, method, prior, generator)
        if isinstance(method, ISD):
            method.set_reference(ck["reference"])
    else:
        if resume:
            raise UserError(f"nothing to resume: {ck_path} does not exist")
        rep = build_representation(cfg, generator)
        opt = build_optimizer(rep, cfg)
        state = LoopState()
        if isinstance(method, ISD):  # ISD's mode-selecting reference image, from the same prior
            from distill3d.priors.sampling import sample as sample_prior

            method.set_reference(sample_prior(prior, prompt, n=1, cfg=method.config.guidance_scale,
                                              seed=cfg.seed)[0])
    densify = build_densify(cfg, rep)
    _restore_densify(densify, ck)
    if isinstance(method, ISD):
        extra["reference"] = method.reference
    sampling = camera_sampling(cfg)
    size = prior.image_size
    rep.to(prior.device)

    while state.step < cfg.steps:
        t0 = time.perf_counter()
        cams = sample_cameras(cfg.views_per_step, sampling, generator)
        out = render(rep, cams, size)
        images = out.image  # [B, 3, S, S]
        latents = prior.encode(images)
        control_kind = getattr(prior, "control_kind", None)  # a ControlNet prior: exact maps of the renders
        control = control_maps(out, cams, control_kind) if control_kind is not None else None
        t1 = time.perf_counter()
        inp = GuidanceInput(latents=latents.detach(), images=images.detach(), cameras=cams, prompt=prompt,
                            step=state.step, total_steps=cfg.steps, control=control)
        g = method(prior, inp, generator)
        t2 = time.perf_counter()
        loss = surrogate_loss(latents, g.grad) / cfg.views_per_step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        if densify is not None:
            densify.update(out)
        opt.step()
        if densify is not None:
            densify.step(rep, opt, state.step + 1)
        inner = method.inner_step(prior, inp, g, generator)
        state.prior_calls += g.num_prior_calls + (inner.num_prior_calls if inner else 0)
        state.prior_evals += g.num_prior_evals + (inner.num_prior_evals if inner else 0)
        state.step += 1
        log = {"step": state.step, "loss": float(loss.detach()), "grad_norm": float(g.grad_norm.mean()),
               "t": float(g.t.float().mean())}
        if state.step % 10 == 0 or state.step == 1:
            state.history.append(log)
        if on_step is not None:
            on_step(state.step, log)
        if on_preview is not None and cfg.preview_every and state.step % cfg.preview_every == 0:
            on_preview(state.step, rep)
        if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
            _save_checkpoint(ck_path, rep, opt, method, prior, generator, state, densify, extra)
        t4 = time.perf_counter()
        state.timings.render += t1 - t0
        state.timings.prior += t2 - t1
        state.timings.backward += t3 - t2
        state.timings.other += t4 - t3
    _save_checkpoint(ck_path, rep, opt, method, prior, generator, state, densify, extra)
    return rep, state


def describe_config(cfg: RunConfig, method: GuidanceMethod) -> dict:
    """The preset actually used: the run's settings and the method's full config."""
    mcfg = getattr(method, "config", None)
    return {"run": dataclasses.asdict(cfg),
            "method_config": json.loads(json.dumps(dataclasses.asdict(mcfg), default=str)) if mcfg else {}}


__all__ = ["LoopState", "Timings", "build_method", "describe_config", "optimise"]
