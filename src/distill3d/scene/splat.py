"""Rendering a ``GaussianModel`` with the pure-PyTorch rasterizer (``rasterize.py``)."""

from __future__ import annotations

from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.projection import project_gaussians
from distill3d.scene.rasterize import RasterConfig, rasterize
from distill3d.scene.render_output import RenderOutput


def view_colors(model: GaussianModel, cameras: Cameras) -> Tensor:
    """Each Gaussian's colour seen from each camera (view direction = centre - camera). [B, N, 3]"""
    cam = cameras.positions().to(model.means)  # [B, 3]
    dirs = model.means[None] - cam[:, None]  # [B, N, 3]
    return model.colors(dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def render_gaussians_torch(model: GaussianModel, cameras: Cameras, size: int, background: Tensor,
                           config: RasterConfig | None = None) -> RenderOutput:
    """Project, colour and rasterize. background [3] -> RenderOutput with image [B, 3, size, size]."""
    proj = project_gaussians(model.means, model.covariances(), cameras, size)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    image, alpha, depth = rasterize(proj, model.opacities(), view_colors(model, cameras), size,
                                    background.to(model.means), config or RasterConfig())
    return RenderOutput(image=image, alpha=alpha, depth=depth, means2d=proj.means2d, radii=proj.radii)


__all__ = ["render_gaussians_torch", "view_colors"]
