"""Projection of 3D Gaussians to screen-space ellipses (EWA splatting, Zwicker et al. 2002, as 3DGS does).

Pixel coordinates follow ``Cameras.project``: u = f x / z + size / 2 (x right, y down); pixel (i, j) has
its centre at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.core.cameras import Cameras

NEAR_PLANE = 0.01  # Gaussians closer than this to the camera plane are culled (gsplat's default)
DILATION = 0.3  # px^2 added to the 2D covariance's diagonal (3DGS forward.cu, gsplat eps2d)
SIGMA_EXTENT = 3.0  # footprint radius in standard deviations ("3-sigma extents")
MAX_POWER = 0.5 * SIGMA_EXTENT**2  # a pixel farther than 3 sigma (Mahalanobis) gets no alpha
JACOBIAN_CLAMP = 1.3  # 3DGS clamps x/z, y/z to 1.3 * tan(fov / 2) before building the Jacobian


@dataclass(frozen=True)
class Projected:
    """Screen-space Gaussians for a batch of cameras; culled ones have radius 0."""

    means2d: Tensor  # [B, N, 2] pixels (x, y)
    conics: Tensor  # [B, N, 3] inverse 2D covariance (a, b, c) = [[a, b], [b, c]]
    depths: Tensor  # [B, N] camera-space z
    radii: Tensor  # [B, N] int64, ceil(3 sqrt(largest eigenvalue)), 0 where culled


def project_gaussians(means: Tensor, covs: Tensor, cameras: Cameras, size: int) -> Projected:
    """EWA projection: Sigma' = J W Sigma W^T J^T + 0.3 I. means [N, 3], covs [N, 3, 3]."""
    w2c = cameras.world_to_camera().to(means.dtype)  # [B, 4, 4]
    rot = w2c[:, :3, :3]  # W  [B, 3, 3]
    t = torch.einsum("bij,nj->bni", rot, means) + w2c[:, None, :3, 3]  # [B, N, 3]
    focal = cameras.focal(size).to(means.dtype)[:, None]  # [B, 1]
    tx, ty, tz = t.unbind(-1)
    safe_z = tz.clamp_min(NEAR_PLANE)
    means2d = torch.stack([focal * tx / safe_z, focal * ty / safe_z], dim=-1) + 0.5 * size  # [B, N, 2]

    lim = JACOBIAN_CLAMP * 0.5 * size / focal  # [B, 1]
    x = (tx / safe_z).clamp(-lim, lim) * safe_z
    y = (ty / safe_z).clamp(-lim, lim) * safe_z
    zeros = torch.zeros_like(tz)
    jac = torch.stack([focal / safe_z, zeros, -focal * x / safe_z**2,
                       zeros, focal / safe_z, -focal * y / safe_z**2], dim=-1).reshape(*tz.shape, 2, 3)
    jw = jac @ rot[:, None]  # J W  [B, N, 2, 3]
    cov2d = jw @ covs[None] @ jw.transpose(-1, -2)  # [B, N, 2, 2]
    a = cov2d[..., 0, 0] + DILATION
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + DILATION
    det = a * c - b * b
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / safe_det, -b / safe_det, a / safe_det], dim=-1)  # [B, N, 3]

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam_max = mid + (mid * mid - det).clamp_min(0.1).sqrt()
        radii = torch.ceil(SIGMA_EXTENT * lam_max.sqrt()).to(torch.int64)
        u, v = means2d.unbind(-1)
        on_screen = (u + radii > 0) & (u - radii < size) & (v + radii > 0) & (v - radii < size)
        keep = (tz > NEAR_PLANE) & (det > 0) & on_screen & torch.isfinite(lam_max)
        radii = torch.where(keep, radii, torch.zeros_like(radii))
    return Projected(means2d=means2d, conics=conics, depths=tz, radii=radii)

