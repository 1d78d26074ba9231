"""The dense, obviously-correct Gaussian renderer: every Gaussian against every pixel, one full depth sort,
no tiles, no truncation of contributors. Memory grows as pixels x Gaussians: small scenes only.

It shares no code with the fast path except the SH basis (tested on its own) and the constants that
define the image formation model (3DGS, Kerbl et al. 2023):

    Sigma = R S S^T R^T;   Sigma' = J W Sigma W^T J^T + 0.3 I           (EWA, 3DGS Eq. 5 plus dilation)
    alpha_i(p) = min(0.99, o_i exp(-1/2 d^T Sigma'^-1 d)), 0 where d^T Sigma'^-1 d > 9   (3-sigma)
    C(p) = sum_i c_i alpha_i prod_{j<i} (1 - alpha_j) + T_final bg      (3DGS Eq. 3)

Works in any float dtype (float64 for gradcheck).
"""

from __future__ import annotations

import torch
from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.projection import DILATION, JACOBIAN_CLAMP, MAX_POWER, NEAR_PLANE
from distill3d.scene.rasterize import MAX_ALPHA
from distill3d.scene.render_output import RenderOutput
from distill3d.scene.sh import eval_sh


def render_gaussians_reference(model: GaussianModel, cameras: Cameras, size: int,
                               background: Tensor) -> RenderOutput:
    """Dense render of ``model`` (any dtype). background [3] -> RenderOutput, image [B, 3, size, size]."""
    sh = torch.cat([model.sh_dc[:, None], model.sh_rest], dim=1)
    return reference_render(model.means, model.quats, model.log_scales, model.opacity_logits, sh,
                            cameras, size, background)


def reference_render(means: Tensor, quats: Tensor, log_scales: Tensor, opacity_logits: Tensor,
                     sh: Tensor, cameras: Cameras, size: int, background: Tensor) -> RenderOutput:
    """means [N, 3], quats [N, 4] (w, x, y, z), log_scales [N, 3], opacity_logits [N], sh [N, K, 3]."""
    dtype = means.dtype
    w2c = cameras.world_to_camera().to(dtype)
    focal = cameras.focal(size).to(dtype)
    cam_pos = cameras.positions().to(dtype)
    images, alphas, depths, means2d, radii = [], [], [], [], []
    for b in range(len(cameras)):
        out = _render_one(means, _covariance(quats, log_scales), torch.sigmoid(opacity_logits), sh,
                          w2c[b], focal[b], cam_pos[b], size, background.to(dtype))
        for lst, t in zip((images, alphas, depths, means2d, radii), out):
            lst.append(t)
    return RenderOutput(torch.stack(images), torch.stack(alphas), torch.stack(depths),
                        torch.stack(means2d), torch.stack(radii))


def _covariance(quats: Tensor, log_scales: Tensor) -> Tensor:
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    rot = torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # [N, 3, 3]
    scale = torch.diag_embed(torch.exp(log_scales))
    return rot @ scale @ scale @ rot.transpose(-1, -2)


def _render_one(means, cov, opacity, sh, w2c, focal, cam_pos, size, background):
    n = means.shape[0]
    cam = means @ w2c[:3, :3].T + w2c[:3, 3]  # [N, 3]
    z = cam[:, 2]
    mean2d = torch.stack([focal * cam[:, 0] / z, focal * cam[:, 1] / z], -1) + size / 2  # [N, 2]
    lim = JACOBIAN_CLAMP * (size / 2) / focal
    jac = torch.zeros(n, 2, 3, dtype=means.dtype)
    jac[:, 0, 0] = focal / z
    jac[:, 1, 1] = focal / z
    jac[:, 0, 2] = -focal * (cam[:, 0] / z).clamp(-lim, lim) / z
    jac[:, 1, 2] = -focal * (cam[:, 1] / z).clamp(-lim, lim) / z
    t = jac @ w2c[:3, :3]
    cov2d = t @ cov @ t.transpose(-1, -2) + DILATION * torch.eye(2, dtype=means.dtype)  # [N, 2, 2]
    inv2d = torch.linalg.inv(cov2d)
    eig_max = torch.linalg.eigvalsh(cov2d.detach())[:, -1]
    radius = torch.ceil(3 * eig_max.sqrt()).long()
    u, v = mean2d.detach().unbind(-1)
    seen = (z > NEAR_PLANE) & (u + radius > 0) & (u - radius < size) & (v + radius > 0) & (v - radius < size)
    radius = torch.where(seen, radius, 0)

    dirs = means - cam_pos
    color = (0.5 + eval_sh(sh, dirs / dirs.norm(dim=-1, keepdim=True))).clamp(0, 1)  # [N, 3]

    coords = torch.arange(size, dtype=means.dtype) + 0.5
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    pix = torch.stack([px.reshape(-1), py.reshape(-1)], -1)  # [P, 2]
    d = pix[:, None, :] - mean2d[None]  # [P, N, 2]
    power = 0.5 * torch.einsum("pni,nij,pnj->pn", d, inv2d, d)
    alpha = torch.clamp(opacity * torch.exp(-power), max=MAX_ALPHA)
    alpha = torch.where((power <= MAX_POWER) & seen, alpha, torch.zeros_like(alpha))  # [P, N]
    order = torch.argsort(z.detach())
    alpha, color, zs = alpha[:, order], color[order], z[order]
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], 1), 1)
    weight = alpha * trans  # [P, N]
    acc = weight.sum(1)
    rgb = weight @ color + (1 - acc)[:, None] * background
    depth = (weight @ zs) / acc.clamp_min(1e-10)
    return (rgb.T.reshape(3, size, size), acc.reshape(1, size, size), depth.reshape(1, size, size),
            mean2d, radius)
