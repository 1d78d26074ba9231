"""The one rendering entry: ``render(representation, cameras, size)`` for every representation."""

from __future__ import annotations

from typing import Literal

import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.gsplat_backend import gsplat_available, render_gaussians_gsplat
from distill3d.scene.radiance_field import VoxelRadianceField
from distill3d.scene.render_output import RenderOutput
from distill3d.scene.splat import render_gaussians_torch

Backend = Literal["auto", "torch", "gsplat"]


def render(representation: GaussianModel | VoxelRadianceField, cameras: Cameras, size: int,
           background: tuple[float, float, float] = (1.0, 1.0, 1.0), backend: Backend = "auto") -> RenderOutput:
    """Render ``representation`` from every camera: image [B, 3, size, size], alpha, depth [B, 1, size, size].

    Gaussians use gsplat when ``backend`` is "gsplat", or "auto" with the Gaussians on CUDA and gsplat
    importable; otherwise the pure-PyTorch rasterizer. Radiance fields are always volume-rendered in torch.
    """
    if backend not in ("auto", "torch", "gsplat"):
        raise UserError(f"unknown render backend {backend!r}: use auto, torch or gsplat")
    if size < 1:
        raise UserError(f"image size must be positive, got {size}")
    device = next(representation.parameters()).device
    bg = torch.tensor(background, dtype=torch.float32, device=device)
    cams = cameras.to(device)
    if isinstance(representation, GaussianModel):
        use_gsplat = backend == "gsplat" or (backend == "auto" and device.type == "cuda" and gsplat_available())
        if use_gsplat:
            return render_gaussians_gsplat(representation, cams, size, bg)
        return render_gaussians_torch(representation, cams, size, bg)
    if isinstance(representation, VoxelRadianceField):
        if backend == "gsplat":
            raise UserError("the gsplat backend renders Gaussians only; use backend='torch' for radiance fields")
        return representation.render(cams, size, bg)
    raise UserError(f"cannot render a {type(representation).__name__}: expected GaussianModel or "
                    "VoxelRadianceField")
