"""The optimisation loop of ``distill3d generate`` and ``distill3d edit``: plain, readable top to bottom.

    before the first step: the method's set-up (ISD's reference image), or on resume the checkpoint
    for each step:
        cameras  = random views                         (render time)
        x        = render(representation, cameras)
        z        = prior.encode(x)
        editing: z_src = prior.encode(render(source, cameras))  — the frozen source, same cameras, same
                 mode and the same random samples as the copy's render (a radiance field's jitter)
        g        = method(prior, z, x, cameras, prompt) (prior time)
        loss     = ½‖z − sg(z − g)‖² / views            (backward time)
        optimizer step, method's own inner step, densification
        every N steps: checkpoint (atomic) and preview
        every converge_every steps: the convergence check (stop once fixed-camera renders stay still)

The loop sees the representation only through ``distill3d.scene.representation.Representation`` (built
from the registry entry ``cfg.representation``, or a copy of the edit's source) and the method only through
``GuidanceMethod``: it never asks which one it holds.

Everything random comes from one ``torch.Generator`` seeded from the run's seed, whose state is saved in
checkpoints, so a CPU run is bit-for-bit repeatable and ``resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.core.seed import seed_everything
from distill3d.core.state import load_state, save_state
from distill3d.export.views import render_views
from distill3d.guidance import GuidanceInput, GuidanceMethod, find_method, surrogate_loss
from distill3d.pipeline.config import RunConfig, method_config, representation_config
from distill3d.priors.base import Prior
from distill3d.scene.control import control_maps
from distill3d.scene.registry import representation_entry
from distill3d.scene.render import render
from distill3d.scene.representation import Representation
from distill3d.scene.sampling import CameraSampleConfig, sample_cameras

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class Timings:
    """Wall-clock seconds spent in each part of the loop, summed over steps."""

    render: float = 0.0  # the edited or generated asset, and an edit's source
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
    converged_at: int | None = None  # the step the early stop ended the run at (None: ran every step)


#: Fixed cameras of the convergence check: four sides at the judge's elevation.
CHECK_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
CHECK_ELEVATION = 20.0


@dataclass
class Convergence:
    """The documented early-stop criterion (``RunConfig.converge_*``): every ``converge_every`` steps the
    asset is rendered (no gradient, no random draw, so the run's random stream is untouched) from
    ``CHECK_AZIMUTHS`` at the prior's resolution; ``change`` is the mean absolute difference from the
    previous check's renders. The run stops once ``converge_patience`` consecutive checks have
    ``change < converge_tol`` and at least ``min_steps`` steps ran. Its state is checkpointed."""

    previous: torch.Tensor | None = None  # [4, 3, S, S] the last check's renders
    calm: int = 0  # consecutive checks below the tolerance

    def check(self, rep: Representation, size: int, tol: float) -> float | None:
        # render_views: no gradient and eval mode, so a radiance field samples bin midpoints and draws nothing
        images = render_views(rep, Cameras.from_angles(list(CHECK_AZIMUTHS), CHECK_ELEVATION), size).clamp(0, 1)
        change = None if self.previous is None else float((images - self.previous).abs().mean())
        self.previous = images
        self.calm = self.calm + 1 if change is not None and change < tol else 0
        return change

    def state_dict(self) -> dict:
        return {"previous": self.previous, "calm": self.calm}


@dataclass(frozen=True)
class EditSource:
    """What an edit starts from: a frozen asset (the edited copy starts as a copy of it) and its text y_src."""

    representation: Representation
    prompt: str


def build_method(cfg: RunConfig, method_overrides: dict[str, str], kind: str = "generate") -> GuidanceMethod:
    """The registered ``cfg.method`` of ``kind`` built from ``cfg.method_config`` (or its preset) with the
    method-level ``--set`` overrides applied (``distill3d.pipeline.config.method_config``)."""
    entry = find_method(cfg.method, kind)  # type: ignore[arg-type]
    return entry.cls(method_config(cfg, method_overrides, kind))  # type: ignore[arg-type]


def build_optimizer(rep: Representation, cfg: RunConfig) -> torch.optim.Optimizer:
    groups = rep.param_groups(representation_config(cfg))
    return torch.optim.Adam([{"params": g.params, "lr": g.lr, "eps": g.eps, "name": g.name} for g in groups])


def camera_sampling(cfg: RunConfig) -> CameraSampleConfig:
    return CameraSampleConfig(elevation_range=(cfg.elevation_min, cfg.elevation_max),
                              distance_range=(cfg.distance_min, cfg.distance_max),
                              fov_range=(cfg.fov_min, cfg.fov_max), front_bias=cfg.front_bias,
                              even_azimuths=cfg.view_azimuths == "even", azimuth_group=cfg.views_per_group or 0)


def _initial(cfg: RunConfig, source: EditSource | None, generator: torch.Generator) -> Representation:
    """A fresh asset from the registry, or for an edit a trainable copy of the frozen source."""
    if source is not None:
        return copy.deepcopy(source.representation).requires_grad_(True).train()
    return representation_entry(cfg.representation).cls.build(representation_config(cfg), generator)


def _save_checkpoint(path: Path, rep: Representation, opt: torch.optim.Optimizer, method: GuidanceMethod,
                     prior: Prior, generator: torch.Generator, state: LoopState, densify,
                     convergence: Convergence) -> None:
    save_state(path, {
        "convergence": convergence.state_dict(),
        "converged_at": state.converged_at,
        "densify": densify.state_dict() if densify is not None else None,
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
    })


StepCallback = Callable[[int, dict[str, float]], None]


def _draws_taken_back(device: torch.device) -> contextlib.AbstractContextManager:
    """Inside, torch's global generators draw as usual; after, they are back where they were (the CPU one and,
    on CUDA, ``device``'s), so the next render draws the same numbers."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def optimise(prompt: str, cfg: RunConfig, method: GuidanceMethod, prior: Prior, out_dir: Path,
             resume: bool = False, on_step: StepCallback | None = None,
             on_preview: Callable[[int, Representation], None] | None = None,
             source: EditSource | None = None) -> tuple[Representation, LoopState]:
    """Run (or resume) the optimisation toward ``prompt``; checkpoints go to ``out_dir/checkpoint.safetensors``.

    With ``source`` the run is an edit: the asset starts as a copy of ``source.representation`` (frozen,
    never changed), and every step hands the method the source's renders from the same cameras."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    generator = seed_everything(cfg.seed)
    ck_path = out_dir / CHECKPOINT
    if resume and not ck_path.exists():
        raise UserError(f"nothing to resume: {ck_path} does not exist")
    rep = _initial(cfg, source, generator)
    ck = load_state(ck_path) if resume else None
    if ck is not None:
        rep.restore(ck["representation"])
        method.load_state_dict(prior, ck["method"])
    else:
        method.setup(prior, prompt, cfg.seed)  # e.g. ISD's reference image, from the same prior
    rep.to(prior.device)
    opt = build_optimizer(rep, cfg)
    densify = rep.densifier(representation_config(cfg))
    state = LoopState()
    convergence = Convergence()
    if ck is not None:
        opt.load_state_dict(ck["optimizer"])
        if densify is not None and ck["densify"] is not None:
            densify.load_state_dict(ck["densify"])
        generator.set_state(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        state = LoopState(step=int(ck["step"]), timings=Timings(**ck["timings"]), prior_calls=int(ck["prior_calls"]),
                          prior_evals=int(ck["prior_evals"]), history=list(ck["history"]),
                          converged_at=ck.get("converged_at"))
        if ck.get("convergence") is not None:
            convergence = Convergence(ck["convergence"]["previous"], int(ck["convergence"]["calm"]))
    frozen = None
    if source is not None:  # rendered in the copy's mode: a radiance field samples alike on both
        frozen = source.representation.to(prior.device).requires_grad_(False).train(rep.training)
    sampling = camera_sampling(cfg)
    size = prior.image_size
    control_kind = getattr(prior, "control_kind", None)  # a ControlNet prior: exact maps of the renders

    while state.step < cfg.steps and state.converged_at is None:
        t0 = time.perf_counter()
        cams = sample_cameras(cfg.views_per_step, sampling, generator)
        source_images = None
        if frozen is not None:  # its random draws are taken back, so the copy's render below draws the same
            with torch.no_grad(), _draws_taken_back(prior.device):
                source_images = render(frozen, cams, size).image  # [B, 3, S, S]
        out = render(rep, cams, size)
        images = out.image  # [B, 3, S, S]
        latents = prior.encode(images)
        control = control_maps(out, cams, control_kind) if control_kind is not None else None
        source_latents = None
        if source_images is not None:
            with torch.no_grad():
                source_latents = prior.encode(source_images)  # [B, C, h, w]
        t1 = time.perf_counter()
        inp = GuidanceInput(latents=latents.detach(), images=images.detach(), cameras=cams, prompt=prompt,
                            step=state.step, total_steps=cfg.steps, control=control, source_latents=source_latents,
                            source_prompt=source.prompt if source is not None else None)
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
        checking = bool(cfg.converge_every) and state.step % cfg.converge_every == 0
        if checking:
            change = convergence.check(rep, size, cfg.converge_tol)
            if change is not None:
                log["change"] = change
            if convergence.calm >= cfg.converge_patience and state.step >= cfg.min_steps:
                state.converged_at = state.step
        if state.step % 10 == 0 or state.step == 1 or checking:
            if g.extras is not None:
                log |= g.extras.scalars()  # e.g. AnchorDS' L_rec and keep-rate
            state.history.append(log)
        if on_step is not None:
            on_step(state.step, log)
        if on_preview is not None and cfg.preview_every and state.step % cfg.preview_every == 0:
            on_preview(state.step, rep)
        if (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps
                and state.converged_at is None):
            _save_checkpoint(ck_path, rep, opt, method, prior, generator, state, densify, convergence)
        t4 = time.perf_counter()
        state.timings.render += t1 - t0
        state.timings.prior += t2 - t1
        state.timings.backward += t3 - t2
        state.timings.other += t4 - t3
    _save_checkpoint(ck_path, rep, opt, method, prior, generator, state, densify, convergence)
    return rep, state


def describe_config(cfg: RunConfig, method: GuidanceMethod) -> dict:
    """The preset actually used: the run's settings (the representation's config filled in) and the
    method's full config."""
    cfg = dataclasses.replace(cfg, representation_config=representation_config(cfg))
    mcfg = getattr(method, "config", None)
    return {"run": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
            "method_config": json.loads(json.dumps(dataclasses.asdict(mcfg), default=str)) if mcfg else {}}


__all__ = ["EditSource", "LoopState", "Timings", "build_method", "describe_config", "optimise"]
