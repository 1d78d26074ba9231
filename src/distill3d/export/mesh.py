"""A coloured triangle mesh from any representation with a density: marching cubes on a dense grid.

The representation is seen only through :class:`DensityField` (a part of ``scene.representation``'s
protocol): ``density_grid(R)`` samples the density at the R^3 points ``(x_i, y_j, z_k)`` with
``x_i = -1 + 2 i / (R - 1)`` (grid[i, j, k], the world cube [-1, 1]^3 including its faces), ``color_at(points)``
gives the colour at world points, and ``mesh_threshold`` is the density level cut when none is given.
Meshes here stay in the world frame (+z up); the writers convert to their file's frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from distill3d.core.errors import UserError


class DensityField(Protocol):
    #: The density level a mesh is cut at when the user gives none; densities have different units
    #: (Gaussians 0.5, half the peak of one opaque Gaussian; the radiance field's sigma 2).
    mesh_threshold: float

    def density_grid(self, resolution: int) -> Tensor:
        """Density at the grid points of [-1, 1]^3, indexed [x, y, z]. [R, R, R]"""
        ...

    def color_at(self, points: Tensor) -> Tensor:
        """RGB in [0, 1] at world points [N, 3]. [N, 3]"""
        ...


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh in the world frame (+z up). Faces wind counter-clockwise seen from outside."""

    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int64 indices into vertices
    normals: np.ndarray  # [V, 3] float32, unit length, pointing outward
    colors: np.ndarray  # [V, 3] float32 in [0, 1] (display values, as rendered)


def grid_to_world(index_coords: np.ndarray, resolution: int) -> np.ndarray:
    """Map fractional grid indices [..., 3] to world coordinates in [-1, 1]^3."""
    return -1.0 + 2.0 * index_coords / (resolution - 1)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals from counter-clockwise faces; [0, 0, 1] where undefined. [V, 3]"""
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    face_n = np.cross(v1 - v0, v2 - v0)  # [F, 3], length = 2 * area
    normals = np.zeros_like(vertices, dtype=np.float64)
    for i in range(3):
        np.add.at(normals, faces[:, i], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-12, normals / np.maximum(length, 1e-12), [0.0, 0.0, 1.0])
    return normals.astype(np.float32)


def isosurface(grid: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on ``grid`` [R, R, R] at ``threshold``: world vertices [V, 3] and faces [F, 3].

    The grid is padded with one layer of its minimum (or 0 if lower) so the surface closes where the
    shape touches the cube's faces. Faces wind counter-clockwise seen from the low-density side.
    """
    from skimage import measure

    r = grid.shape[0]
    if grid.shape != (r, r, r) or r < 2:
        raise ValueError(f"density grid must be [R, R, R] with R >= 2, got {grid.shape}")
    lo, hi = float(grid.min()), float(grid.max())
    if not lo < threshold < hi:
        raise UserError(f"density threshold {threshold:g} is outside the density range ({lo:.4g}, {hi:.4g}); "
                        "pass a --threshold inside it")
    padded = np.pad(grid.astype(np.float32), 1, constant_values=min(lo, 0.0))
    # skimage winds its triangles by the left-hand rule: "ascent" makes them counter-clockwise seen
    # from the low-density side (outward by the right-hand rule, as glTF wants); the test checks it.
    verts, faces, _, _ = measure.marching_cubes(padded, level=threshold, gradient_direction="ascent",
                                                allow_degenerate=False)
    world = grid_to_world(verts - 1.0, r).astype(np.float32)  # undo the padding's index shift
    return world, faces.astype(np.int64)


def extract_mesh(field: DensityField, resolution: int = 128, threshold: float | None = None,
                 chunk: int = 65536) -> Mesh:
    """Marching cubes on ``field.density_grid(resolution)`` at ``threshold`` (None: ``field.mesh_threshold``),
    coloured by ``field.color_at``."""
    if threshold is None:
        threshold = field.mesh_threshold
    if resolution < 8:
        raise UserError(f"mesh resolution must be at least 8, got {resolution}")
    with torch.no_grad():
        grid = field.density_grid(resolution).detach()  # [R, R, R]
        vertices, faces = isosurface(grid.float().cpu().numpy(), threshold)
        pts = torch.from_numpy(vertices).to(grid.device)
        colors = torch.cat([field.color_at(pts[i:i + chunk]).detach().float().cpu()
                            for i in range(0, len(pts), chunk)])  # [V, 3]
    return Mesh(vertices=vertices, faces=faces, normals=vertex_normals(vertices, faces),
                colors=colors.clamp(0.0, 1.0).numpy().astype(np.float32))


# Our world is +z up with the front facing +x; glTF is +y up with the front facing +z (and the model's
# right toward -x). The cyclic permutation (x, y, z) -> (y, z, x) is a proper rotation that maps up to
# up and front to front, so the model stands upright and faces a viewer's default camera.
Z_UP_TO_Y_UP = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)


def to_y_up(points: np.ndarray) -> np.ndarray:
    """World (+z up, front +x) points or directions [N, 3] in the glTF frame (+y up, front +z). [N, 3]"""
    return (points @ Z_UP_TO_Y_UP.T).astype(np.float32)
