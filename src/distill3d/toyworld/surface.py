"""Points on a toy scene's surface with the colour the ground-truth renderer gives them.

The renderer shades with a light fixed in the world, so a surface point has one colour from every view:
albedo (the object's colour, or the eyes') times ``AMBIENT + DIFFUSE · max(n·l, 0)``. Points are drawn
uniformly in the scene's bounding cube and moved onto the surface by Newton steps along the SDF gradient;
those that do not converge are dropped. Used to build assets whose truth is known (``distill3d bench edit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill3d.toyworld.grammar import SceneSpec
from distill3d.toyworld.render import AMBIENT, DIFFUSE, LIGHT_DIR
from distill3d.toyworld.sdf import EYE_COLOR, eye_distance, object_distances, scene_sdf, scene_tensors

_EPS = 2e-3  # central-difference step, as the renderer's normals
_HIT = 2e-3


@dataclass(frozen=True)
class SurfacePoints:
    points: Tensor  # [P, 3] world, on the surface (|sdf| < 2e-3)
    colors: Tensor  # [P, 3] in [0, 1], as the ground-truth renderer shades them
    normals: Tensor  # [P, 3] unit, outward
    object_index: Tensor  # [P] long: which of the scene's objects (0 or 1) the point lies on


def _gradient(points: Tensor, scenes) -> Tensor:
    offsets = torch.eye(3) * _EPS
    return torch.stack([(scene_sdf(points + o, scenes) - scene_sdf(points - o, scenes)) / (2 * _EPS)
                        for o in offsets], dim=-1)  # [P, 3]


@torch.no_grad()
def surface_points(spec: SceneSpec, n: int, generator: torch.Generator | None = None,
                   newton_steps: int = 12) -> SurfacePoints:
    """About ``n`` points on the surface of ``spec`` (fewer where Newton steps do not converge)."""
    scenes = scene_tensors([spec])
    p = torch.rand(n, 3, generator=generator) * 2.0 - 1.0
    for _ in range(newton_steps):
        d = scene_sdf(p, scenes)
        g = _gradient(p, scenes)
        p = p - d[:, None] * g / (g * g).sum(-1, keepdim=True).clamp_min(1e-8)
    keep = (scene_sdf(p, scenes).abs() < _HIT) & (p.abs() <= 1.0).all(-1)
    p = p[keep]
    normals = F.normalize(_gradient(p, scenes), dim=-1)
    obj = object_distances(p, scenes).argmin(dim=-1)
    albedo = scenes.color[0, obj]  # [P, 3]
    is_eye = eye_distance(p, scenes) <= _HIT * 4
    albedo = torch.where(is_eye[:, None], torch.tensor(EYE_COLOR), albedo)
    light = F.normalize(torch.tensor(LIGHT_DIR), dim=0)
    colors = albedo * (AMBIENT + DIFFUSE * (normals @ light).clamp_min(0.0))[:, None]
    return SurfacePoints(p, colors.clamp(0, 1), normals, obj)


__all__ = ["SurfacePoints", "surface_points"]
