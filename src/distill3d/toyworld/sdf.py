"""Signed distance functions of the toy world's shapes and the layout of a scene.

Shapes are defined in a local frame with half-extent at most 1 and placed by a centre and a uniform
scale. Every SDF here is exact or a lower bound with Lipschitz constant <= 1, as sphere tracing needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill3d.toyworld.grammar import COLORS, SHAPES, SceneSpec

# Local half-extents along z (top, bottom) of each shape, used to stack objects.
_Z_EXTENT = {"sphere": (1.0, 1.0), "cube": (0.8, 0.8), "cone": (0.95, 0.95), "cylinder": (0.85, 0.85),
             "torus": (0.3, 0.3), "face": (1.0, 1.0)}
# The face's eyes: two dark spheres on its +x side (large enough to survive 32 px).
EYE_RADIUS = 0.27
EYE_CENTERS = ((0.78, 0.30, 0.24), (0.78, -0.30, 0.24))
EYE_COLOR = (0.06, 0.06, 0.06)
MAX_OBJECTS = 2
#: Radius of a sphere around the origin that contains every toy scene.
BOUND_RADIUS = 1.25


def _sd_box(p: Tensor, half: float, rounding: float) -> Tensor:
    q = p.abs() - (half - rounding)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0) - rounding


def _sd_cylinder(p: Tensor, radius: float, half_height: float) -> Tensor:
    d = torch.stack([p[..., :2].norm(dim=-1) - radius, p[..., 2].abs() - half_height], dim=-1)
    return d.max(dim=-1).values.clamp_max(0) + d.clamp_min(0).norm(dim=-1)


def _sd_cone(p: Tensor, half_height: float = 0.95, r_bottom: float = 0.9, r_top: float = 0.0) -> Tensor:
    """Capped cone along z (Quilez' exact formula), apex up."""
    qx, qy = p[..., :2].norm(dim=-1), p[..., 2]
    h = half_height
    k1x, k1y = r_top, h
    k2x, k2y = r_top - r_bottom, 2.0 * h
    ca_x = qx - torch.minimum(qx, torch.where(qy < 0, torch.full_like(qx, r_bottom), torch.full_like(qx, r_top)))
    ca_y = qy.abs() - h
    tt = (((k1x - qx) * k2x + (k1y - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0.0, 1.0)
    cb_x, cb_y = qx - k1x + k2x * tt, qy - k1y + k2y * tt
    sign = torch.where((cb_x < 0) & (ca_y < 0), -1.0, 1.0)
    return sign * torch.minimum(ca_x**2 + ca_y**2, cb_x**2 + cb_y**2).sqrt()


def _sd_torus(p: Tensor, major: float = 0.7, minor: float = 0.3) -> Tensor:
    q = torch.stack([p[..., :2].norm(dim=-1) - major, p[..., 2]], dim=-1)
    return q.norm(dim=-1) - minor


def _sd_eyes(p: Tensor) -> Tensor:
    eyes = torch.tensor(EYE_CENTERS, dtype=p.dtype, device=p.device)  # [2, 3]
    return ((p[..., None, :] - eyes).norm(dim=-1) - EYE_RADIUS).min(dim=-1).values


def _sd_face(p: Tensor) -> Tensor:
    return torch.minimum(p.norm(dim=-1) - 1.0, _sd_eyes(p))


_LOCAL_SDF = {
    "sphere": lambda p: p.norm(dim=-1) - 1.0,
    "cube": lambda p: _sd_box(p, 0.8, 0.06),
    "cone": _sd_cone,
    "cylinder": lambda p: _sd_cylinder(p, 0.8, 0.85),
    "torus": _sd_torus,
    "face": _sd_face,  # the body (a unit sphere) united with its eyes
}


def local_sdfs(p: Tensor) -> Tensor:
    """Distances of local points [..., 3] to every shape, in SHAPES order. [..., len(SHAPES)]"""
    return torch.stack([_LOCAL_SDF[name](p) for name in SHAPES], dim=-1)


def local_sdf_by_id(p: Tensor, shape_id: Tensor) -> Tensor:
    """Distance of each local point [..., 3] to the shape ``shape_id`` [...] names (inf for -1).
    Evaluates each shape only on its own points: the fast twin of ``local_sdfs(p).gather(...)``."""
    out = torch.full(shape_id.shape, float("inf"), dtype=p.dtype, device=p.device)
    for i, name in enumerate(SHAPES):
        mask = shape_id == i
        if mask.any():
            out[mask] = _LOCAL_SDF[name](p[mask])
    return out


@dataclass(frozen=True)
class SceneTensors:
    """A batch of laid-out scenes. Missing objects have shape id -1."""

    shape_id: Tensor  # [B, K] long
    center: Tensor  # [B, K, 3]
    scale: Tensor  # [B, K]
    color: Tensor  # [B, K, 3]

    def to(self, device: torch.device | str) -> SceneTensors:
        return SceneTensors(*(x.to(device) for x in (self.shape_id, self.center, self.scale, self.color)))

    def index(self, idx: Tensor) -> SceneTensors:
        """Select scenes by a [R] index (one scene per ray): fields become [R, K, ...]."""
        return SceneTensors(self.shape_id[idx], self.center[idx], self.scale[idx], self.color[idx])


def layout(spec: SceneSpec) -> list[tuple[str, str, tuple[float, float, float], float]]:
    """Place a scene's objects: (shape, colour, centre, scale) each, the scene inside [-1, 1]^3."""
    objs = spec.objects
    if spec.relation is None:
        return [(objs[0].shape, objs[0].color, (0.0, 0.0, 0.0), 0.62)]
    if spec.relation == "next to":
        s = 0.45
        return [(objs[0].shape, objs[0].color, (0.0, -0.55, 0.0), s),
                (objs[1].shape, objs[1].color, (0.0, 0.55, 0.0), s)]
    top, bottom = objs
    s_top, s_bot = 0.42, 0.48
    z_bot = 0.0
    z_top = z_bot + s_bot * _Z_EXTENT[bottom.shape][0] + s_top * _Z_EXTENT[top.shape][1]
    lo = z_bot - s_bot * _Z_EXTENT[bottom.shape][1]
    hi = z_top + s_top * _Z_EXTENT[top.shape][0]
    shift = -(lo + hi) / 2  # centre the stack vertically
    return [(top.shape, top.color, (0.0, 0.0, z_top + shift), s_top),
            (bottom.shape, bottom.color, (0.0, 0.0, z_bot + shift), s_bot)]


def scene_tensors(specs: list[SceneSpec]) -> SceneTensors:
    b = len(specs)
    shape_id = torch.full((b, MAX_OBJECTS), -1, dtype=torch.long)
    center = torch.zeros(b, MAX_OBJECTS, 3)
    scale = torch.ones(b, MAX_OBJECTS)
    color = torch.zeros(b, MAX_OBJECTS, 3)
    for i, spec in enumerate(specs):
        for k, (shape, col, c, s) in enumerate(layout(spec)):
            shape_id[i, k] = SHAPES.index(shape)
            center[i, k] = torch.tensor(c)
            scale[i, k] = s
            color[i, k] = torch.tensor(COLORS[col])
    return SceneTensors(shape_id, center, scale, color)


def object_distances(points: Tensor, scenes: SceneTensors) -> Tensor:
    """Distance from world points [..., 3] to each object. Scene fields broadcast against the points'
    leading dims (e.g. points [B, P, 3] with fields [B, 1, K], or per-point fields [R, K]). [..., K]"""
    local = (points[..., None, :] - scenes.center) / scenes.scale[..., None]  # [..., K, 3]
    sid = scenes.shape_id.expand(local.shape[:-1])
    return local_sdf_by_id(local, sid) * scenes.scale


def scene_sdf(points: Tensor, scenes: SceneTensors) -> Tensor:
    """Signed distance of world points [..., 3] to the whole scene (fields broadcast). [...]"""
    return object_distances(points, scenes).min(dim=-1).values


def eye_distance(points: Tensor, scenes: SceneTensors) -> Tensor:
    """Distance to the nearest eye of any face in the scene (inf without a face). [...]"""
    local = (points[..., None, :] - scenes.center) / scenes.scale[..., None]
    d = _sd_eyes(local) * scenes.scale
    is_face = scenes.shape_id == SHAPES.index("face")
    return torch.where(is_face, d, torch.full_like(d, float("inf"))).min(dim=-1).values
