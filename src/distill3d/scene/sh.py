"""Real spherical harmonics of degree 0..3 as 3D Gaussian Splatting evaluates them (Kerbl et al. 2023).

Constants and signs follow the 3DGS reference code (``utils/sh_utils.py``; the same in gsplat's
``spherical_harmonics``): the colour of a Gaussian seen along the unit direction d = (x, y, z) from
the camera to its centre is ``0.5 + sum_lm C_lm Y_lm(d) k_lm``, clamped by the renderer.
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """The (degree+1)^2 real SH basis functions at unit directions. dirs [..., 3] -> [..., (degree+1)^2]"""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [dirs.new_full(x.shape, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)


def eval_sh(coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Colour before the +0.5 offset: coeffs [N, K, 3] (K = (D+1)^2, DC first), dirs [..., N, 3] -> [..., N, 3]"""
    degree = round(coeffs.shape[-2] ** 0.5) - 1
    basis = sh_basis(degree, dirs)  # [..., N, K]
    return (basis[..., None] * coeffs).sum(-2)
