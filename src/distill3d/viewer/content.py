"""What the browser draws for a representation: its Gaussians as splats (viser sorts and draws them in
WebGL), or for any other representation a coloured point cloud on its mesh (marching cubes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from distill3d.core.errors import UserError
from distill3d.export.mesh import extract_mesh
from distill3d.scene.representation import Representation


@runtime_checkable
class Splats(Protocol):
    """The capability the viewer needs to draw a representation as Gaussian splats (``GaussianModel`` has it)."""

    means: Tensor  # [N, 3]

    def covariances(self) -> Tensor:  # [N, 3, 3] world-space
        ...

    def base_colors(self) -> Tensor:  # [N, 3] in [0, 1]
        ...

    def opacities(self) -> Tensor:  # [N] in [0, 1]
        ...


@dataclass(frozen=True)
class SplatArrays:
    centers: np.ndarray  # [N, 3] float32
    covariances: np.ndarray  # [N, 3, 3] float32
    rgbs: np.ndarray  # [N, 3] float32 in [0, 1]
    opacities: np.ndarray  # [N, 1] float32 in [0, 1]


@dataclass(frozen=True)
class PointArrays:
    points: np.ndarray  # [N, 3] float32 (N may be 0: nothing to show yet)
    colors: np.ndarray  # [N, 3] uint8


@dataclass(frozen=True)
class Content:
    """What to draw, and one line saying what it is."""

    shapes: SplatArrays | PointArrays
    note: str

    def radius(self) -> float:
        """Most of the content lies within this distance of the origin (the 90th percentile; 1 if empty)."""
        pts = self.shapes.centers if isinstance(self.shapes, SplatArrays) else self.shapes.points
        return float(np.percentile(np.linalg.norm(pts, axis=1), 90)) if len(pts) else 1.0


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy().astype(np.float32)


@torch.no_grad()
def scene_content(rep: Representation, mesh_resolution: int = 64) -> Content:
    """Gaussians as splats; any other representation as the vertices of its mesh, in the mesh's colours."""
    if isinstance(rep, Splats):
        splats = SplatArrays(_numpy(rep.means), _numpy(rep.covariances()), _numpy(rep.base_colors()),
                             _numpy(rep.opacities())[:, None])
        return Content(splats, f"{len(splats.centers)} Gaussians")
    name = type(rep).__name__
    try:
        mesh = extract_mesh(rep, resolution=mesh_resolution)
    except UserError:  # no density crosses the mesh threshold (yet)
        empty = PointArrays(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
        return Content(empty, f"{name}: no surface to show yet (its density does not reach the mesh threshold)")
    colors = (np.clip(mesh.colors, 0.0, 1.0) * 255).round().astype(np.uint8)
    return Content(PointArrays(mesh.vertices.astype(np.float32), colors),
                   f"{name}: {len(mesh.vertices)} points on its mesh (marching cubes, {mesh_resolution}^3)")


__all__ = ["Content", "PointArrays", "SplatArrays", "Splats", "scene_content"]
