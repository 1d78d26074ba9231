"""Gaussian rendering with gsplat's CUDA rasterizer, returning the same ``RenderOutput`` as the torch path.

gsplat is optional (``pip install 'distill3d[gpu]'``) and imported only here, inside the function; its
CPU path cannot rasterize, so this backend needs CUDA tensors. Colours are evaluated by us (0.5 + SH,
clamped) and passed per camera so that both backends shade identically; the background is composited
here from the returned alpha, and depth is gsplat's "ED" (expected depth), as in ``rasterize.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.projection import DILATION, NEAR_PLANE
from distill3d.scene.render_output import RenderOutput
from distill3d.scene.splat import view_colors


def gsplat_available() -> bool:
    """True when CUDA is usable and gsplat imports."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def camera_matrices(cameras: Cameras, size: int) -> tuple[Tensor, Tensor]:
    """gsplat's viewmats [B, 4, 4] (world to OpenCV camera, as ours) and intrinsics Ks [B, 3, 3]."""
    f = cameras.focal(size)
    ks = torch.zeros(len(cameras), 3, 3, device=cameras.device)
    ks[:, 0, 0] = f
    ks[:, 1, 1] = f
    ks[:, 0, 2] = 0.5 * size  # principal point: pixel centres are at j + 0.5, as in Cameras.project
    ks[:, 1, 2] = 0.5 * size
    ks[:, 2, 2] = 1.0
    return cameras.world_to_camera(), ks


def render_gaussians_gsplat(model: GaussianModel, cameras: Cameras, size: int,
                            background: Tensor) -> RenderOutput:
    """Render with gsplat.rasterization; background [3] -> RenderOutput, image [B, 3, size, size]."""
    try:
        from gsplat import rasterization
    except ImportError as e:
        raise UserError("the gsplat backend needs gsplat: pip install 'distill3d[gpu]'") from e
    if not model.means.is_cuda:
        raise UserError("the gsplat backend needs the Gaussians on a CUDA device (model.cuda())")
    cams = cameras.to(model.means.device)
    viewmats, ks = camera_matrices(cams, size)
    quats = model.quats / model.quats.norm(dim=-1, keepdim=True)
    colors = view_colors(model, cams)  # [B, N, 3]
    out, alpha, meta = rasterization(
        model.means, quats, model.scales(), model.opacities(), colors, viewmats, ks, size, size,
        near_plane=NEAR_PLANE, eps2d=DILATION, packed=False, render_mode="RGB+ED")
    rgb, depth = out[..., :3], out[..., 3:4]  # [B, H, W, 3], [B, H, W, 1]
    image = rgb + (1.0 - alpha) * background.to(rgb)
    means2d = meta["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = meta["radii"]
    if radii.dim() == 3:  # gsplat >= 1.5 returns per-axis radii [B, N, 2]
        radii = radii.max(dim=-1).values
    return RenderOutput(image=image.permute(0, 3, 1, 2), alpha=alpha.permute(0, 3, 1, 2),
                        depth=depth.permute(0, 3, 1, 2), means2d=means2d, radii=radii.long())
