"""ControlNet maps computed exactly from a render (its depth and alpha), instead of by an estimator network.

A ControlNet was trained on maps an annotator network estimated from photos. A 3D representation knows its
own geometry, so the same maps can be computed from its render, for Gaussians and radiance fields alike:
both give ``RenderOutput.depth`` (the expected camera-space depth z) and ``alpha``.

- ``depth_control_map``: the map of ``lllyasviel/control_v11f1p_sd15_depth``, trained on MiDaS-like
  *relative inverse depth* (MiDaS, LeReS and Zoe annotators) normalised per image. ControlNet's MiDaS
  annotator (ControlNet-v1-1-nightly ``annotator/midas/__init__.py``) min-max normalises the predicted
  inverse depth over the whole image: near = bright, far = dark. Our background is at infinity (inverse
  depth 0), so the image's minimum is 0 and min-max normalisation is ``value = (1/z) / max(1/z) = z_min / z``
  on the surface and 0 (black) on the background: parameter free and independent of the scene's units.
- ``normal_control_map``: the map of ``lllyasviel/control_v11p_sd15_normalbae``. Its annotator
  (ControlNet-v1-1-nightly ``annotator/normalbae/__init__.py``, the same in controlnet_aux
  ``normalbae/__init__.py``) writes NormalBAE's (ScanNet-trained) camera-space unit normal n as
  ``rgb = (n + 1) / 2`` in the BAE/ScanNet frame: x toward the image's LEFT, y UP, z TOWARD the viewer, so
  red = facing left, green = facing up, blue = facing the camera. dream-textures
  (carson-katri/dream-textures ``engine/annotations/normal.py``) builds maps for this checkpoint from
  Blender's view-space normals v (x right, y up, z toward the viewer) as
  ``rgb = ((1 - v_x) / 2, (1 + v_y) / 2, (1 + v_z) / 2)``: the same frame. Our OpenCV camera frame (x right,
  y down, z forward) has all three axes flipped, so ``rgb = (1 - n_cv) / 2``. The background is
  (0.5, 0.5, 1.0), the colour of a plane facing the camera: what ControlNet's depth-derived normal
  annotator writes where it zeroes the gradients (its background, leaving n = (0, 0, 1)), and
  dream-textures' clear colour.

Normals: every surface pixel is back-projected to its camera-space point
P = z · ((u − S/2)/f, (v − S/2)/f, 1) (pixel centres u = j + 0.5, v = i + 0.5, focal f from
``Cameras.focal``), and n = ∂P/∂v × ∂P/∂u from finite differences: per axis a central difference where the
surface is smooth (forward and backward depth steps within ``SMOOTH_RATIO`` of each other), else the
one-sided difference with the smaller depth step, so no difference straddles a silhouette or an occlusion
edge. Exact for planes, up to the discretisation for curved surfaces. A pixel is surface when ``alpha >= SURFACE_ALPHA``. The maps carry no gradient (every
method conditions on stop-gradient renders).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.scene.render_output import RenderOutput

ControlKind = Literal["normal", "depth"]
CONTROL_KINDS: tuple[str, ...] = ("normal", "depth")

#: Coverage from which a pixel counts as surface (below: background).
SURFACE_ALPHA = 0.5
#: Central differences where the two depth steps differ by less than this factor, else the smaller step.
SMOOTH_RATIO = 3.0
#: NormalBAE colour of the background: a plane facing the camera, n_cv = (0, 0, -1).
NORMAL_BACKGROUND = (0.5, 0.5, 1.0)


def surface_mask(depth: Tensor, alpha: Tensor) -> Tensor:
    """Pixels that show a surface: covered (alpha >= SURFACE_ALPHA) at a positive depth. [B, 1, H, W] bool"""
    return (alpha >= SURFACE_ALPHA) & (depth > 0)


@torch.no_grad()
def depth_control_map(depth: Tensor, alpha: Tensor) -> Tensor:
    """Relative inverse depth z_min / z on the surface, 0 on the background, per image. depth, alpha
    [B, 1, H, W] -> [B, 3, H, W] in [0, 1] (three equal channels)."""
    hit = surface_mask(depth, alpha)
    inverse = torch.where(hit, 1.0 / depth.clamp_min(1e-8), torch.zeros_like(depth))  # 1/z, 0 at infinity
    peak = inverse.amax(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1] = 1 / z_min
    value = torch.where(peak > 0, inverse / peak.clamp_min(1e-12), torch.zeros_like(inverse))
    return value.expand(-1, 3, -1, -1).contiguous()


def camera_points(depth: Tensor, cameras: Cameras) -> Tensor:
    """Back-project every pixel of a square z-depth map to OpenCV camera space.
    depth [B, 1, S, S] -> points [B, S, S, 3]"""
    b, _, h, w = depth.shape
    if h != w:
        raise UserError(f"control maps need square renders, got {h}x{w}")
    if len(cameras) != b:
        raise UserError(f"{len(cameras)} cameras for {b} depth maps")
    f = cameras.focal(w).to(depth.device, depth.dtype)[:, None, None]  # [B, 1, 1]
    centre = torch.arange(w, device=depth.device, dtype=depth.dtype) + 0.5 - 0.5 * w  # pixel centres
    z = depth[:, 0]  # [B, S, S]
    x = centre[None, None, :] / f * z
    y = centre[None, :, None] / f * z
    return torch.stack([x, y, z], dim=-1)


def _tangent(points: Tensor, hit: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Per pixel, the difference of ``points`` [B, S, S, 3] over one pixel along ``dim`` (1: rows, 2: columns)
    between surface pixels: central where forward and backward depth steps are alike, else the one-sided
    step with the smaller depth change. -> tangent [B, S, S, 3], valid [B, S, S]."""
    n = points.shape[dim]
    step = points.narrow(dim, 1, n - 1) - points.narrow(dim, 0, n - 1)  # step i: p[i+1] - p[i]
    pair = hit.narrow(dim, 1, n - 1) & hit.narrow(dim, 0, n - 1)
    pad_shape = list(points.shape)
    pad_shape[dim] = 1
    pad = points.new_zeros(pad_shape)
    no = torch.zeros(pad_shape[:-1], dtype=torch.bool, device=hit.device)
    forward, forward_ok = torch.cat([step, pad], dim), torch.cat([pair, no], dim)  # p[i+1] - p[i]
    backward, backward_ok = torch.cat([pad, step], dim), torch.cat([no, pair], dim)  # p[i] - p[i-1]
    inf = torch.full_like(forward[..., 2], float("inf"))
    jump_f = torch.where(forward_ok, forward[..., 2].abs(), inf)
    jump_b = torch.where(backward_ok, backward[..., 2].abs(), inf)
    one_sided = torch.where((jump_f <= jump_b)[..., None], forward, backward)
    smooth = (jump_f <= SMOOTH_RATIO * jump_b + 1e-6) & (jump_b <= SMOOTH_RATIO * jump_f + 1e-6)  # inf: no
    central = 0.5 * (forward + backward)
    return torch.where(smooth[..., None], central, one_sided), forward_ok | backward_ok


def camera_normals(depth: Tensor, alpha: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Unit surface normals in the OpenCV camera frame, facing the camera (n · P < 0), from the rendered
    z-depth. depth, alpha [B, 1, S, S] -> normals [B, 3, S, S] (zero where invalid), valid [B, 1, S, S]."""
    points = camera_points(depth, cameras)  # [B, S, S, 3]
    hit = surface_mask(depth, alpha)[:, 0]  # [B, S, S]
    d_u, ok_u = _tangent(points, hit, dim=2)  # ∂P/∂u (one pixel right)
    d_v, ok_v = _tangent(points, hit, dim=1)  # ∂P/∂v (one pixel down)
    normal = torch.linalg.cross(d_v, d_u, dim=-1)  # right x down would face away; down x right faces us
    length = normal.norm(dim=-1, keepdim=True)
    valid = hit & ok_u & ok_v & (length[..., 0] > 0)
    normal = normal / length.clamp_min(1e-12)
    normal = torch.where((normal * points).sum(-1, keepdim=True) > 0, -normal, normal)  # toward the camera
    normal = torch.where(valid[..., None], normal, torch.zeros_like(normal))
    return normal.permute(0, 3, 1, 2), valid[:, None]


@torch.no_grad()
def normal_control_map(depth: Tensor, alpha: Tensor, cameras: Cameras) -> Tensor:
    """NormalBAE-coloured camera-space normals, rgb = (1 - n_cv) / 2, background (0.5, 0.5, 1.0).
    depth, alpha [B, 1, S, S] -> [B, 3, S, S] in [0, 1]."""
    normal, valid = camera_normals(depth, alpha, cameras)
    rgb = (1.0 - normal) / 2.0  # OpenCV (right, down, forward) -> BAE (left, up, toward the viewer)
    background = torch.tensor(NORMAL_BACKGROUND, device=rgb.device, dtype=rgb.dtype)[None, :, None, None]
    return torch.where(valid, rgb, background).clamp(0.0, 1.0)


def control_maps(out: RenderOutput, cameras: Cameras, kind: ControlKind) -> Tensor:
    """The ControlNet map of every render in ``out`` taken from ``cameras``. -> [B, 3, S, S], detached."""
    if kind == "normal":
        return normal_control_map(out.depth.detach(), out.alpha.detach(), cameras.to(out.depth.device))
    if kind == "depth":
        return depth_control_map(out.depth.detach(), out.alpha.detach())
    raise UserError(f"unknown control map kind {kind!r}; choose one of {', '.join(CONTROL_KINDS)}")


__all__ = ["CONTROL_KINDS", "NORMAL_BACKGROUND", "SURFACE_ALPHA", "ControlKind", "camera_normals",
           "camera_points", "control_maps", "depth_control_map", "normal_control_map", "surface_mask"]
