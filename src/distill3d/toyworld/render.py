"""The toy world's ground-truth renderer: batched sphere tracing of SDFs in pure torch.

Shading is Lambertian under a light fixed in the world (not to the camera), so a surface point has the
same colour from every view: exactly what a 3D representation with view-independent colour can
reproduce. Background is white. Images are supersampled (2x by default) and box-filtered.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill3d.core.cameras import Cameras
from distill3d.toyworld.grammar import SceneSpec
from distill3d.toyworld.sdf import (
    BOUND_RADIUS,
    EYE_COLOR,
    SceneTensors,
    eye_distance,
    object_distances,
    scene_sdf,
    scene_tensors,
)

LIGHT_DIR = (0.45, 0.35, 0.82)  # world-space direction toward the light (normalised on use)
AMBIENT = 0.5
DIFFUSE = 0.5
#: The front of a face counts as visible when at least this many pixels of a 32 px view see its eyes
#: (scale by (size / 32)^2 for other sizes): eyes are then seen for |azimuth| up to about 100 degrees.
FRONT_VISIBLE_MIN_EYE_PIXELS_32 = 5


def front_visible_min_eye_pixels(size: int) -> int:
    """Eye pixels from which a face's front counts as visible in a ``size`` px view (area-scaled)."""
    return max(1, round(FRONT_VISIBLE_MIN_EYE_PIXELS_32 * (size / 32) ** 2))

_STEPS = 64
_HIT_EPS = 2e-3
_NORMAL_EPS = 2e-3


@dataclass(frozen=True)
class ToyRender:
    """Ground-truth views. ``material`` is 0 for background, k+1 for object k, and -1 for eyes."""

    image: Tensor  # [B, 3, S, S] in [0, 1]
    alpha: Tensor  # [B, 1, S, S] coverage in [0, 1]
    material: Tensor  # [B, S, S] long, at the centre sample of each pixel
    eye_pixels: Tensor  # [B] long: pixels whose centre sample sees an eye

    def front_visible(self) -> Tensor:
        """Whether each view sees the front (the eyes) of a face. [B] bool"""
        return self.eye_pixels >= front_visible_min_eye_pixels(self.image.shape[-1])


def _trace(origins: Tensor, dirs: Tensor, scenes: SceneTensors) -> tuple[Tensor, Tensor]:
    """Sphere-trace rays (origins, dirs [R, 3]; scene fields per ray [R, K]). Only rays that meet the
    bounding sphere are marched, and only those still active at each step. Returns hit [R], t [R]."""
    b = (origins * dirs).sum(-1)
    disc = b * b - ((origins * origins).sum(-1) - BOUND_RADIUS**2)  # |o + t d| = BOUND_RADIUS
    sq = disc.clamp_min(0).sqrt()
    t = (-b - sq).clamp_min(0)
    far = -b + sq
    hit = torch.zeros(dirs.shape[0], dtype=torch.bool, device=dirs.device)
    active = (disc > 0).nonzero()[:, 0]
    for _ in range(_STEPS):
        if active.numel() == 0:
            break
        ta = t[active]
        d = scene_sdf(origins[active] + ta[:, None] * dirs[active], scenes.index(active))
        done = d < _HIT_EPS
        hit[active[done]] = True
        ta = ta + d.clamp_min(_HIT_EPS * 0.5)
        t[active] = ta
        active = active[~done & (ta < far[active])]
    return hit, t


def _normals(points: Tensor, scenes: SceneTensors) -> Tensor:
    offsets = torch.eye(3, device=points.device) * _NORMAL_EPS
    n = torch.stack([scene_sdf(points + o, scenes) - scene_sdf(points - o, scenes) for o in offsets], dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)


@torch.no_grad()
def render_scenes(scenes: SceneTensors, cameras: Cameras, size: int, supersample: int = 2) -> ToyRender:
    """Render B scenes, scene i from camera i, at ``size`` x ``size`` pixels."""
    b = len(cameras)
    hi = size * supersample
    origins, dirs = cameras.rays(hi)  # [B, 3], [B, hi, hi, 3]
    per_ray = torch.arange(b, device=dirs.device).repeat_interleave(hi * hi)  # scene of each ray
    dirs = dirs.reshape(-1, 3)
    origins = origins[per_ray]
    hit, t = _trace(origins, dirs, scenes.index(per_ray))

    idx = hit.nonzero()[:, 0]  # shade the hits only
    sc = scenes.index(per_ray[idx])
    pts = origins[idx] + t[idx, None] * dirs[idx]
    obj = object_distances(pts, sc).argmin(dim=-1)  # [H]
    albedo = sc.color.gather(1, obj[:, None, None].expand(-1, 1, 3))[:, 0]
    is_eye = eye_distance(pts, sc) <= _HIT_EPS * 4
    albedo = torch.where(is_eye[:, None], torch.tensor(EYE_COLOR, device=pts.device), albedo)
    light = F.normalize(torch.tensor(LIGHT_DIR, device=pts.device), dim=0)
    lambert = (_normals(pts, sc) @ light).clamp_min(0.0)
    rgb = torch.ones(dirs.shape[0], 3, device=dirs.device)
    rgb[idx] = albedo * (AMBIENT + DIFFUSE * lambert[:, None])
    material = torch.zeros(dirs.shape[0], dtype=torch.long, device=dirs.device)
    material[idx] = torch.where(is_eye, -1, obj + 1)

    image = rgb.reshape(b, hi, hi, 3).permute(0, 3, 1, 2)
    alpha = hit.float().reshape(b, 1, hi, hi)
    material = material.reshape(b, hi, hi)
    if supersample > 1:
        image = F.avg_pool2d(image, supersample)
        alpha = F.avg_pool2d(alpha, supersample)
        c = supersample // 2
        material = material[:, c::supersample, c::supersample]
    eye_pixels = (material == -1).flatten(1).sum(dim=1)
    return ToyRender(image.clamp(0, 1).contiguous(), alpha.contiguous(), material.contiguous(), eye_pixels)


def render(specs: SceneSpec | list[SceneSpec], cameras: Cameras, size: int = 64, supersample: int = 2,
           chunk: int = 64) -> ToyRender:
    """Render scenes: one spec for every camera, or one spec per camera. [B, 3, size, size] images."""
    if isinstance(specs, SceneSpec):
        specs = [specs] * len(cameras)
    if len(specs) != len(cameras):
        raise ValueError(f"{len(specs)} scenes for {len(cameras)} cameras")
    parts = []
    for i in range(0, len(specs), chunk):
        scenes = scene_tensors(specs[i : i + chunk]).to(cameras.device)
        parts.append(render_scenes(scenes, cameras[i : i + chunk], size, supersample))
    return ToyRender(*(torch.cat([getattr(p, f) for p in parts]) for f in ("image", "alpha", "material", "eye_pixels")))
