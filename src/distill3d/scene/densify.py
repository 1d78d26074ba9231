"""Adaptive density control for Gaussians (3DGS, Kerbl et al. 2023, Sec. 5.2): clone small Gaussians and
split large ones whose mean screen-space gradient is large, prune transparent or oversized ones, and
periodically reset opacities. Adam's moments follow every change, row by row.

Usage, once per optimisation step:

    out = render(model, cameras, size); loss(out).backward()
    strategy.update(out)                  # after backward: reads out.means2d.grad and out.radii
    optimizer.step(); optimizer.zero_grad()   # 3DGS steps the optimiser after densifying; either works
    strategy.step(model, optimizer, step)

Gradient norms are measured in NDC units (pixels * size / 2), as 3DGS's ``viewspace_points`` gradient is,
so the thresholds of the published configs apply unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from distill3d.scene.gaussians import PARAM_NAMES, GaussianModel
from distill3d.scene.render_output import RenderOutput

RESET_OPACITY = 0.01  # 3DGS reset_opacity: opacity <- min(opacity, 0.01)


@dataclass(frozen=True)
class DensifyConfig:
    """A densification schedule. Steps count from 1 as in the 3DGS-style training loops."""

    densify_from: int = 500  # clone/split/prune when step > densify_from ...
    densify_until: int = 15_000  # ... and step < densify_until, every ``interval`` steps
    interval: int = 100
    grad_threshold: float = 0.0002  # on the mean NDC-space 2D gradient norm
    percent_dense: float = 0.01  # max scale <= percent_dense * scene_extent: clone, else split
    scene_extent: float = 3.2  # world size of the scene (3DGS: camera radius); our orbit distance
    prune_opacity: float = 0.005  # prune Gaussians more transparent than this
    opacity_reset_interval: int | None = 3000  # None: never reset opacities
    screen_size_from: int | None = 3000  # prune big Gaussians once step > this; None: never
    max_screen_size: float = 20.0  # pixels (largest radius seen since the last densification)
    max_world_size: float = 0.1  # times scene_extent, pruned together with the screen size
    split_count: int = 2  # a split replaces one Gaussian by this many, scaled by 1 / (0.8 * split_count)


# The 3DGS defaults (graphdeco-inria/gaussian-splatting arguments/__init__.py, train.py).
GAUSSIAN_SPLATTING = DensifyConfig()

# GaussianDreamer (hustvl/GaussianDreamer threestudio/systems/GaussianDreamer.py, on_before_optimizer_step):
# statistics while step < 900, densify_and_prune(0.0002, 0.05, cameras_extent=4.0, size_threshold) when
# step > 300 and step % 100 == 0, size threshold 20 px once step > 500, no opacity reset; percent_dense
# 0.01 (its gaussiansplatting/arguments). Its extent 4.0 is its camera distance: ours is 3.2.
GAUSSIAN_DREAMER = DensifyConfig(densify_from=300, densify_until=900, interval=100, grad_threshold=0.0002,
                                 percent_dense=0.01, scene_extent=3.2, prune_opacity=0.05,
                                 opacity_reset_interval=None, screen_size_from=500)

# LucidDreamer (EnVision-Research/LucidDreamer arguments/__init__.py OptimizationParams and train.py):
# densify_from_iter 100, densify_until_iter 3000, densification_interval 100, densify_grad_threshold
# 0.00075, percent_dense 0.003, min opacity 0.005, opacity_reset_interval 300, size threshold 20 px once
# step > opacity_reset_interval. Its cameras_extent is not in the config; we use our camera distance.
LUCID_DREAMER = DensifyConfig(densify_from=100, densify_until=3000, interval=100, grad_threshold=0.00075,
                              percent_dense=0.003, scene_extent=3.2, prune_opacity=0.005,
                              opacity_reset_interval=300, screen_size_from=300)


#: Densification presets by name (``GaussianRunConfig.densify``). "toy" compresses the GaussianDreamer
#: schedule into a short CPU run.
DENSIFY_PRESETS: dict[str, DensifyConfig | None] = {
    "none": None,
    "toy": DensifyConfig(densify_from=100, densify_until=500, interval=100, grad_threshold=0.0002,
                         percent_dense=0.01, scene_extent=3.2, prune_opacity=0.02, opacity_reset_interval=None,
                         screen_size_from=None),
    "gaussiandreamer": GAUSSIAN_DREAMER,
    "luciddreamer": LUCID_DREAMER,
}


@dataclass
class DensifyState:
    """Statistics accumulated since the last densification, one row per Gaussian."""

    grad_accum: Tensor  # [N] sum of NDC-space 2D gradient norms over the views that saw it
    count: Tensor  # [N] number of such views
    max_radii: Tensor  # [N] largest screen radius (pixels) seen

    @staticmethod
    def zeros(n: int, device: torch.device | str = "cpu") -> DensifyState:
        return DensifyState(torch.zeros(n, device=device), torch.zeros(n, device=device),
                            torch.zeros(n, device=device))


@dataclass(frozen=True)
class DensifyReport:
    cloned: int = 0
    split: int = 0
    pruned: int = 0
    opacity_reset: bool = False


class DensifyStrategy:
    """Clone / split / prune / opacity reset on a ``GaussianModel`` and the Adam optimiser over it."""

    def __init__(self, config: DensifyConfig, num_gaussians: int, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.state = DensifyState.zeros(num_gaussians, device)

    def state_dict(self) -> dict:
        return dataclasses.asdict(self.state)

    def load_state_dict(self, state: dict) -> None:
        device = self.state.count.device
        self.state = DensifyState(**{k: v.to(device) for k, v in state.items()})

    @torch.no_grad()
    def update(self, out: RenderOutput) -> None:
        """Accumulate screen-space gradient norms and radii of one render, after ``backward()``."""
        if out.means2d is None or out.radii is None:
            raise ValueError("densification needs a Gaussian render (means2d and radii)")
        if out.means2d.grad is None:
            raise ValueError("means2d has no gradient: call update() after loss.backward()")
        if out.means2d.shape[1] != self.state.count.shape[0]:
            raise ValueError("the model changed size without this strategy: use strategy.step()")
        size = out.image.shape[-1]
        for grad, radii in zip(out.means2d.grad, out.radii):  # one camera at a time, as 3DGS
            seen = radii > 0
            self.state.grad_accum[seen] += (grad[seen] * 0.5 * size).norm(dim=-1)
            self.state.count[seen] += 1
            self.state.max_radii[seen] = torch.maximum(self.state.max_radii[seen], radii[seen].float())

    @torch.no_grad()
    def step(self, model: GaussianModel, optimizer: torch.optim.Optimizer | None, step: int) -> DensifyReport:
        """Apply the schedule at ``step``; returns what changed."""
        cfg = self.config
        if step >= cfg.densify_until:
            return DensifyReport()
        cloned = split = pruned = 0
        if step > cfg.densify_from and step % cfg.interval == 0:
            check_screen = cfg.screen_size_from is not None and step > cfg.screen_size_from
            cloned, split, pruned = self.densify_and_prune(model, optimizer, check_screen)
        reset = cfg.opacity_reset_interval is not None and step % cfg.opacity_reset_interval == 0
        if reset:
            reset_opacity(model, optimizer)
        return DensifyReport(cloned, split, pruned, reset)

    def densify_and_prune(self, model: GaussianModel, optimizer: torch.optim.Optimizer | None,
                          check_screen: bool) -> tuple[int, int, int]:
        cfg = self.config
        grads = torch.nan_to_num(self.state.grad_accum / self.state.count, nan=0.0)
        hot = grads >= cfg.grad_threshold
        small = model.scales().max(-1).values <= cfg.percent_dense * cfg.scene_extent
        clone, split = hot & small, hot & ~small
        new = _split_values(model, split, cfg.split_count)
        for name, values in _clone_values(model, clone).items():
            new[name] = torch.cat([values, new[name]])
        keep = (~split).nonzero().squeeze(1)
        _rebuild(model, optimizer, keep, new)
        radii = torch.cat([self.state.max_radii[keep], self.state.max_radii.new_zeros(len(model) - len(keep))])
        prune = model.opacities() < cfg.prune_opacity
        if check_screen:
            prune |= radii > cfg.max_screen_size
            prune |= model.scales().max(-1).values > cfg.max_world_size * cfg.scene_extent
        _rebuild(model, optimizer, (~prune).nonzero().squeeze(1), None)
        self.state = DensifyState.zeros(len(model), model.means.device)
        return int(clone.sum()), int(split.sum()), int(prune.sum())


@torch.no_grad()
def reset_opacity(model: GaussianModel, optimizer: torch.optim.Optimizer | None) -> None:
    """opacity <- min(opacity, 0.01), with the opacity rows of Adam's moments zeroed (3DGS)."""
    capped = torch.logit(model.opacities().clamp_max(RESET_OPACITY))
    keep = torch.arange(len(model), device=capped.device)
    _rebuild(model, optimizer, keep, None, replace={"opacity_logits": capped})


def _clone_values(model: GaussianModel, mask: Tensor) -> dict[str, Tensor]:
    return {name: getattr(model, name).detach()[mask] for name in PARAM_NAMES}


def _split_values(model: GaussianModel, mask: Tensor, k: int) -> dict[str, Tensor]:
    """k samples per selected Gaussian, drawn from it, with scales divided by 0.8 k (3DGS densify_and_split)."""
    vals = {name: getattr(model, name).detach()[mask].repeat_interleave(k, dim=0) for name in PARAM_NAMES}
    scales = model.scales().detach()[mask].repeat_interleave(k, dim=0)
    rot = model.rotation_matrices().detach()[mask].repeat_interleave(k, dim=0)
    offsets = torch.randn_like(scales) * scales
    vals["means"] = vals["means"] + (rot @ offsets[..., None])[..., 0]
    vals["log_scales"] = torch.log(scales / (0.8 * k))
    return vals


def _rebuild(model: GaussianModel, optimizer: torch.optim.Optimizer | None, keep: Tensor,
             appended: dict[str, Tensor] | None, replace: dict[str, Tensor] | None = None) -> None:
    """Replace every parameter by ``old[keep]`` followed by ``appended`` rows (or by ``replace``), and move
    the optimiser's per-row state along: kept rows keep their moments, new or replaced rows start at 0."""
    for name in PARAM_NAMES:
        old = getattr(model, name)
        if replace is not None and name in replace:
            data, fresh = replace[name], None
        else:
            extra = appended[name] if appended is not None else old.new_zeros(0, *old.shape[1:])
            data, fresh = torch.cat([old.detach()[keep], extra]), extra.shape[0]
        new = nn.Parameter(data.contiguous())
        if optimizer is not None:
            _move_optimizer_state(optimizer, old, new, keep, fresh)
        setattr(model, name, new)


def _move_optimizer_state(optimizer: torch.optim.Optimizer, old: nn.Parameter, new: nn.Parameter,
                          keep: Tensor, fresh: int | None) -> None:
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is not old:
                continue
            group["params"][i] = new
            state = optimizer.state.pop(old, None)
            if state is None:
                continue
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape[:1] == old.shape[:1] and value.dim() > 0:
                    if fresh is None:  # replaced values: restart their moments
                        state[key] = torch.zeros_like(value)
                    else:
                        state[key] = torch.cat([value[keep], value.new_zeros(fresh, *value.shape[1:])])
            optimizer.state[new] = state
