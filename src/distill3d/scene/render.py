"""The one rendering entry: ``render(representation, cameras, size)`` for every representation."""

from __future__ import annotations

from typing import Literal

import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.scene.render_output import RenderOutput
from distill3d.scene.representation import Representation

Backend = Literal["auto", "torch", "gsplat"]


def render(representation: Representation, cameras: Cameras, size: int,
           background: tuple[float, float, float] = (1.0, 1.0, 1.0), backend: Backend = "auto") -> RenderOutput:
    """Render ``representation`` from every camera: image [B, 3, size, size], alpha, depth [B, 1, size, size].

    ``backend`` "auto" lets the representation choose (Gaussians use gsplat on CUDA when it is importable),
    "torch" forces the pure-PyTorch renderer, "gsplat" asks for gsplat (Gaussians only).
    """
    if backend not in ("auto", "torch", "gsplat"):
        raise UserError(f"unknown render backend {backend!r}: use auto, torch or gsplat")
    if size < 1:
        raise UserError(f"image size must be positive, got {size}")
    if not isinstance(representation, Representation):
        raise UserError(f"cannot render a {type(representation).__name__}: it is not a Representation "
                        "(distill3d.scene.representation)")
    device = next(representation.parameters()).device
    bg = torch.tensor(background, dtype=torch.float32, device=device)
    return representation.render(cameras.to(device), size, bg, backend)
