"""3D Gaussians: the parameters of a Gaussian-splatting scene (Kerbl et al. 2023).

Parameters are stored in their unconstrained forms, as the standard 3DGS PLY layout does:
means [N, 3], log-scales [N, 3], quaternions [N, 4] (w, x, y, z; normalised on use), opacity logits [N],
colour as spherical-harmonics coefficients: DC [N, 3] and higher degrees [N, (D+1)^2 - 1, 3].
Colour of degree 0 is ``0.5 + SH_C0 * sh_dc`` (clamped to [0, 1] by renderers).

``GaussianModel`` is a ``Representation`` (``scene/representation.py``); ``GaussianRunConfig`` says how a
run initialises, trains and densifies it. Its file is the standard 3DGS PLY (``scene/ply.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.scene.knn import knn_distances, knn_indices
from distill3d.scene.projection import MAX_POWER, SIGMA_EXTENT
from distill3d.scene.render_output import RenderOutput
from distill3d.scene.representation import ParamGroup
from distill3d.scene.sh import SH_C0, eval_sh

if TYPE_CHECKING:
    from distill3d.scene.densify import DensifyStrategy

#: The trainable tensors, in the order of the constructor (and of a checkpoint's state dict).
PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(sh_dc: Tensor) -> Tensor:
    return 0.5 + SH_C0 * sh_dc


@dataclass(frozen=True)
class GaussianRunConfig:
    """How a run builds, trains and densifies Gaussians (``--set`` keys with ``representation=gaussians``)."""

    num_gaussians: int = 1500  # initial Gaussians, uniform in a ball
    init_radius: float = 0.6  # radius of that ball
    init_scale: float = 0.05  # initial Gaussian size
    init_opacity: float = 0.3  # initial opacity of every Gaussian, in (0, 1)
    #: Learning rates (Adam). 3x the earlier 0.002 / 0.005 / 0.05 / 0.01, with 200 steps instead of 600:
    #: same judged quality on the embedded prior in a third of the steps (benchmarks/results/generate_speed.md).
    lr_means: float = 0.006  # Adam learning rate of the centres
    lr_scales: float = 0.015  # Adam learning rate of the log-scales
    lr_quats: float = 0.001  # Adam learning rate of the rotations (quaternions)
    lr_opacity: float = 0.15  # Adam learning rate of the opacity logits
    lr_colors: float = 0.03  # Adam learning rate of the colours
    densify: str = "none"  # densification preset: "none", "toy", "gaussiandreamer", "luciddreamer"

    def validate(self) -> None:
        from distill3d.scene.densify import DENSIFY_PRESETS

        if self.num_gaussians < 1:
            raise UserError(f"num_gaussians must be at least 1, got {self.num_gaussians}")
        if not (self.init_radius > 0 and self.init_scale > 0):
            raise UserError("init_radius and init_scale must be positive")
        if not 0.0 < self.init_opacity < 1.0:
            raise UserError(f"init_opacity must lie in (0, 1), got {self.init_opacity}")
        for name in ("lr_means", "lr_scales", "lr_quats", "lr_opacity", "lr_colors"):
            if not getattr(self, name) >= 0:
                raise UserError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.densify not in DENSIFY_PRESETS:
            raise UserError(f"unknown densify preset {self.densify!r}; choose one of {', '.join(DENSIFY_PRESETS)}")


class GaussianModel(nn.Module):
    """A set of 3D Gaussians whose tensors are ``nn.Parameter``s (so optimisers see them)."""

    file_name: ClassVar[str] = "gaussians.ply"
    #: Half the peak of one opaque Gaussian (the density grid sums o exp(-1/2 d^T Sigma^-1 d)).
    mesh_threshold: ClassVar[float] = 0.5

    def __init__(self, means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor,
                 sh_dc: Tensor, sh_rest: Tensor | None = None) -> None:
        super().__init__()
        n = means.shape[0]
        if sh_rest is None:
            sh_rest = means.new_zeros(n, 0, 3)
        for name, t, shape in (("log_scales", log_scales, (n, 3)), ("quats", quats, (n, 4)),
                               ("opacity_logits", opacity_logits, (n,)), ("sh_dc", sh_dc, (n, 3))):
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
        self.means = nn.Parameter(means.float().contiguous())  # [N, 3]
        self.log_scales = nn.Parameter(log_scales.float().contiguous())  # [N, 3]
        self.quats = nn.Parameter(quats.float().contiguous())  # [N, 4] (w, x, y, z)
        self.opacity_logits = nn.Parameter(opacity_logits.float().contiguous())  # [N]
        self.sh_dc = nn.Parameter(sh_dc.float().contiguous())  # [N, 3]
        self.sh_rest = nn.Parameter(sh_rest.float().contiguous())  # [N, K, 3], K = (D+1)^2 - 1

    def __len__(self) -> int:
        return int(self.means.shape[0])

    # ------------------------------------------------------------------ the Representation protocol

    @classmethod
    def build(cls, config: GaussianRunConfig, generator: torch.Generator) -> GaussianModel:
        return cls.random_in_sphere(config.num_gaussians, radius=config.init_radius, scale=config.init_scale,
                                    opacity=config.init_opacity, generator=generator)

    def param_groups(self, config: GaussianRunConfig) -> list[ParamGroup]:
        eps = 1e-15  # as the 3DGS reference optimiser
        return [ParamGroup("means", [self.means], config.lr_means, eps),
                ParamGroup("log_scales", [self.log_scales], config.lr_scales, eps),
                ParamGroup("quats", [self.quats], config.lr_quats, eps),
                ParamGroup("opacity_logits", [self.opacity_logits], config.lr_opacity, eps),
                ParamGroup("colors", [self.sh_dc, self.sh_rest], config.lr_colors, eps)]

    def densifier(self, config: GaussianRunConfig) -> DensifyStrategy | None:
        from distill3d.scene.densify import DENSIFY_PRESETS, DensifyStrategy

        preset = DENSIFY_PRESETS[config.densify]
        return None if preset is None else DensifyStrategy(preset, len(self), self.means.device)

    def restore(self, state: dict[str, Tensor]) -> None:
        device = self.means.device
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(state[name].float().to(device).contiguous()))

    def render(self, cameras: Cameras, size: int, background: Tensor, backend: str = "auto") -> RenderOutput:
        """gsplat when ``backend`` is "gsplat", or "auto" on CUDA with gsplat importable; else the
        pure-PyTorch rasterizer."""
        from distill3d.scene.gsplat_backend import gsplat_available, render_gaussians_gsplat
        from distill3d.scene.splat import render_gaussians_torch

        cuda = self.means.device.type == "cuda"
        if backend == "gsplat" or (backend == "auto" and cuda and gsplat_available()):
            return render_gaussians_gsplat(self, cameras, size, background)
        return render_gaussians_torch(self, cameras, size, background)

    def save(self, path: str | os.PathLike[str]) -> Path:
        from distill3d.scene.ply import save_gaussians_ply

        return save_gaussians_ply(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GaussianModel:
        from distill3d.scene.ply import load_gaussians_ply

        return load_gaussians_ply(path)

    # ------------------------------------------------------------------ Gaussian quantities

    @property
    def sh_degree(self) -> int:
        return round((self.sh_rest.shape[1] + 1) ** 0.5) - 1

    def scales(self) -> Tensor:
        return self.log_scales.exp()  # [N, 3]

    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)  # [N]

    def rotation_matrices(self) -> Tensor:
        """[N, 3, 3] rotation matrices from the normalised quaternions."""
        q = self.quats / self.quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        w, x, y, z = q.unbind(-1)
        return torch.stack([
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ], dim=-1).reshape(-1, 3, 3)

    def covariances(self) -> Tensor:
        """World-space covariances R S S^T R^T. [N, 3, 3]"""
        rs = self.rotation_matrices() * self.scales()[:, None, :]
        return rs @ rs.transpose(1, 2)

    def base_colors(self) -> Tensor:
        """View-independent colour from the DC term, clamped to [0, 1]. [N, 3]"""
        return sh_dc_to_rgb(self.sh_dc).clamp(0.0, 1.0)

    def sh_coeffs(self) -> Tensor:
        """All SH coefficients, DC first. [N, (D+1)^2, 3]"""
        return torch.cat([self.sh_dc[:, None], self.sh_rest], dim=1)

    def colors(self, view_dirs: Tensor) -> Tensor:
        """Colour seen along unit directions from the camera to each Gaussian (3DGS: 0.5 + SH, clamped).
        view_dirs [..., N, 3] -> [..., N, 3] in [0, 1]"""
        return (0.5 + eval_sh(self.sh_coeffs(), view_dirs)).clamp(0.0, 1.0)

    @torch.no_grad()
    def color_at(self, points: Tensor, k: int = 16) -> Tensor:
        """Base colour of the ``k`` nearest Gaussians weighted by their density o exp(-1/2 d^T Sigma^-1 d)
        at each point (grey where none reaches within 3 sigma). points [M, 3] -> [M, 3]"""
        w, idx = self._weights_at(points, k)  # [M, k]
        rgb = (w[..., None] * self.base_colors()[idx]).sum(1) / w.sum(-1, keepdim=True).clamp_min(1e-12)
        return torch.where(w.sum(-1, keepdim=True) > 0, rgb, torch.full_like(rgb, 0.5))

    @torch.no_grad()
    def density_grid(self, resolution: int, max_pairs: int = 4_000_000) -> Tensor:
        """Density splatted onto the points of a ``resolution``^3 grid spanning [-1, 1]^3: every Gaussian
        adds o exp(-1/2 d^T Sigma^-1 d) to the grid points inside its 3-sigma box. [R, R, R], [x, y, z]"""
        res, spacing = resolution, 2.0 / (resolution - 1)
        reach = SIGMA_EXTENT * self.scales().max(-1).values[:, None]  # [N, 1]
        lo = torch.ceil((self.means - reach + 1.0) / spacing).clamp(0, res - 1).long()  # [N, 3]
        hi = torch.floor((self.means + reach + 1.0) / spacing).clamp(0, res - 1).long()
        ext = (hi - lo + 1).clamp_min(0)  # [N, 3]
        counts = ext.prod(-1)
        grid = self.means.new_zeros(res**3)
        inv_cov = torch.linalg.inv(self.covariances().double()).float()  # [N, 3, 3]
        start = 0
        for end in _chunk_ends(counts, max_pairs):
            ids = torch.arange(start, end, device=grid.device)
            n = counts[ids]
            gid = torch.repeat_interleave(ids, n)
            local = torch.arange(gid.numel(), device=grid.device) - torch.repeat_interleave(n.cumsum(0) - n, n)
            e = ext[gid]
            ijk = lo[gid] + torch.stack([local // (e[:, 1] * e[:, 2]), (local // e[:, 2]) % e[:, 1],
                                         local % e[:, 2]], dim=-1)
            d = ijk.float() * spacing - 1.0 - self.means[gid]  # [P, 3]
            power = 0.5 * torch.einsum("pi,pij,pj->p", d, inv_cov[gid], d)
            w = torch.where(power <= MAX_POWER, self.opacities()[gid] * torch.exp(-power), 0.0)
            grid.index_add_(0, (ijk[:, 0] * res + ijk[:, 1]) * res + ijk[:, 2], w)
            start = end
        return grid.reshape(res, res, res)

    @torch.no_grad()
    def _weights_at(self, points: Tensor, k: int) -> tuple[Tensor, Tensor]:
        idx = knn_indices(points, self.means, min(k, len(self)))  # [M, k]
        d = points[:, None, :] - self.means[idx]  # [M, k, 3]
        rot = self.rotation_matrices()[idx]  # [M, k, 3, 3]
        local = torch.einsum("mkji,mkj->mki", rot, d) / self.scales()[idx]  # R^T d / s
        power = 0.5 * (local * local).sum(-1)
        w = self.opacities()[idx] * torch.exp(-power)
        return torch.where(power <= MAX_POWER, w, torch.zeros_like(w)), idx

    @staticmethod
    def from_points(points: Tensor, colors: Tensor, scale: float | None = None,
                    opacity: float = 0.1, sh_degree: int = 0) -> GaussianModel:
        """Isotropic Gaussians at ``points`` [N, 3] with RGB ``colors`` [N, 3] in [0, 1]. ``scale`` None:
        each Gaussian's radius is the mean distance to its 3 nearest neighbours (as 3DGS initialises)."""
        n = points.shape[0]
        if points.shape != (n, 3) or colors.shape != (n, 3) or n == 0:
            raise ValueError(f"need points [N, 3] and colors [N, 3], got {tuple(points.shape)}, "
                             f"{tuple(colors.shape)}")
        if scale is None:
            s = knn_distances(points.float(), min(3, n - 1)).mean(-1).clamp_min(1e-4) if n > 1 else \
                torch.full((n,), 0.01)
        else:
            s = torch.full((n,), float(scale))
        return GaussianModel(
            means=points,
            log_scales=s.log()[:, None].expand(n, 3),
            quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
            opacity_logits=torch.full((n,), float(torch.logit(torch.tensor(opacity)))),
            sh_dc=rgb_to_sh_dc(colors.float()),
            sh_rest=torch.zeros(n, (sh_degree + 1) ** 2 - 1, 3),
        )

    @staticmethod
    def random_in_sphere(n: int, radius: float = 0.8, scale: float = 0.04, opacity: float = 0.3,
                         sh_degree: int = 0, generator: torch.Generator | None = None) -> GaussianModel:
        """``n`` isotropic Gaussians uniformly inside a ball of ``radius``, grey-ish random colours."""
        g = generator
        d = torch.randn(n, 3, generator=g)
        d = d / d.norm(dim=-1, keepdim=True)
        r = radius * torch.rand(n, 1, generator=g) ** (1.0 / 3.0)
        means = d * r
        rgb = 0.5 + 0.1 * (torch.rand(n, 3, generator=g) - 0.5)
        k = (sh_degree + 1) ** 2 - 1
        return GaussianModel(
            means=means,
            log_scales=torch.full((n, 3), float(torch.log(torch.tensor(scale)))),
            quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
            opacity_logits=torch.full((n,), float(torch.logit(torch.tensor(opacity)))),
            sh_dc=rgb_to_sh_dc(rgb),
            sh_rest=torch.zeros(n, k, 3),
        )


def _chunk_ends(counts: Tensor, max_total: int) -> list[int]:
    """Split indices 0..len(counts) into consecutive chunks whose counts sum to at most ``max_total``
    (a single larger item gets a chunk of its own). Returns each chunk's end index."""
    ends, acc = [], 0
    for i, c in enumerate(counts.tolist()):
        if acc and acc + c > max_total:
            ends.append(i)
            acc = 0
        acc += c
    if len(counts):
        ends.append(len(counts))
    return ends
