"""Marching cubes, the GLB and OBJ writers: geometry, winding, frames and colours read back with trimesh
and pygltflib, and the GLB checked by the Khronos validator when node and the module are present."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import torch
import trimesh

from distill3d.core.errors import UserError
from distill3d.export.gltf import srgb_to_linear, write_glb
from distill3d.export.mesh import Mesh, extract_mesh, isosurface, to_y_up
from distill3d.export.obj import write_obj

CENTER = torch.tensor([0.2, -0.1, 0.3])
RADIUS = 0.5


class SphereField:
    """An analytic density: 2 inside a ball, falling to 0 over 0.2 outside; colour = position mapped."""

    def density_grid(self, resolution: int) -> torch.Tensor:
        c = torch.linspace(-1.0, 1.0, resolution)
        pts = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)  # [R, R, R, 3]
        return self.density(pts)

    def density(self, pts: torch.Tensor) -> torch.Tensor:
        d = (pts - CENTER).norm(dim=-1)
        return 2.0 * (1.0 - (d - RADIUS) / 0.2).clamp(0.0, 1.0)  # level 1.0 at d = RADIUS + 0.1

    def color_at(self, points: torch.Tensor) -> torch.Tensor:
        return (points * 0.5 + 0.5).clamp(0, 1)


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    return extract_mesh(SphereField(), resolution=40, threshold=1.0)


def test_sphere_surface_normals_and_colours(mesh):
    dist = np.linalg.norm(mesh.vertices - CENTER.numpy(), axis=1)
    assert np.abs(dist - (RADIUS + 0.1)).max() < 0.02  # the level set, found to a fraction of a voxel
    out = mesh.vertices - CENTER.numpy()
    assert (np.sum(mesh.normals * out, axis=1) > 0).all()  # outward
    v = mesh.vertices[mesh.faces]  # [F, 3, 3]
    face_n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    assert (np.sum(face_n * (v.mean(1) - CENTER.numpy()), axis=1) > 0).all()  # counter-clockwise outside
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(mesh.colors, np.clip(mesh.vertices * 0.5 + 0.5, 0, 1), atol=1e-6)
    assert trimesh.Trimesh(mesh.vertices, mesh.faces, process=True).is_watertight


def test_grid_axes_map_to_world_axes():
    """grid[i, j, k] is (x_i, y_j, z_k): a blob off-centre along +z only must come out at +z."""
    r = 33
    c = np.linspace(-1, 1, r)
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    grid = np.exp(-(x**2 + y**2 + (z - 0.5) ** 2) / 0.05)
    verts, _ = isosurface(grid, 0.5)
    np.testing.assert_allclose(verts.mean(0), [0.0, 0.0, 0.5], atol=0.02)


def test_shape_touching_the_cube_is_closed():
    grid = np.ones((16, 16, 16), dtype=np.float32)
    grid[:, :, :8] = 0.0  # the solid upper half touches five faces of the cube
    verts, faces = isosurface(grid, 0.5)
    assert trimesh.Trimesh(verts, faces, process=True).is_watertight
    assert verts.min() < -1.0 and verts.max() > 1.0  # closed just outside the cube


def test_threshold_outside_range_is_a_user_error():
    with pytest.raises(UserError, match="outside the density range"):
        extract_mesh(SphereField(), resolution=16, threshold=5.0)


def test_y_up_rotation_keeps_upright_and_front():
    pts = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]], dtype=np.float32)  # up, front (+x), left (+y)
    np.testing.assert_array_equal(to_y_up(pts), [[0, 1, 0], [0, 0, 1], [1, 0, 0]])  # +y up, +z front


def _accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int, dtype: str, width: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    assert view.byteOffset % 4 == 0
    data = np.frombuffer(blob, dtype=dtype, count=acc.count * width, offset=view.byteOffset)
    return data.reshape(acc.count, width) if width > 1 else data


def test_glb_read_back_with_pygltflib_and_trimesh(tmp_path, mesh):
    path = write_glb(mesh, tmp_path / "mesh.glb")
    raw = path.read_bytes()
    assert raw[:4] == b"glTF" and len(raw) % 4 == 0 and int.from_bytes(raw[8:12], "little") == len(raw)
    gltf = pygltflib.GLTF2.load_binary(str(path))
    assert gltf.asset.version == "2.0"
    prim = gltf.meshes[0].primitives[0]
    blob = gltf.binary_blob()
    pos = _accessor(gltf, blob, prim.attributes.POSITION, "<f4", 3)
    np.testing.assert_array_equal(pos, to_y_up(mesh.vertices))
    assert gltf.accessors[prim.attributes.POSITION].min == pos.min(0).tolist()
    assert gltf.accessors[prim.attributes.POSITION].max == pos.max(0).tolist()
    normals = _accessor(gltf, blob, prim.attributes.NORMAL, "<f4", 3)
    np.testing.assert_array_equal(normals, to_y_up(mesh.normals))
    colors = _accessor(gltf, blob, prim.attributes.COLOR_0, "<f4", 3)
    np.testing.assert_allclose(colors, srgb_to_linear(mesh.colors), atol=1e-6)
    idx = _accessor(gltf, blob, prim.indices, "<u4", 1)
    np.testing.assert_array_equal(idx.reshape(-1, 3), mesh.faces)
    loaded = trimesh.load(str(path), force="mesh", process=False)
    assert len(loaded.vertices) == len(mesh.vertices) and len(loaded.faces) == len(mesh.faces)
    np.testing.assert_allclose(loaded.vertices, to_y_up(mesh.vertices), atol=1e-6)
    # upright: the world's top (max z) is glTF's top (max y)
    assert np.argmax(pos[:, 1]) == np.argmax(mesh.vertices[:, 2])


def test_srgb_to_linear_known_values():
    np.testing.assert_allclose(srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0])),
                               [0.0, 0.04045 / 12.92, 0.21404114, 1.0], rtol=1e-6)


def test_obj_read_back_with_trimesh(tmp_path, mesh):
    path = write_obj(mesh, tmp_path / "mesh.obj")
    loaded = trimesh.load(str(path), process=False)
    assert len(loaded.vertices) == len(mesh.vertices) and len(loaded.faces) == len(mesh.faces)
    np.testing.assert_allclose(loaded.vertices, to_y_up(mesh.vertices), atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    rgb = loaded.visual.vertex_colors[:, :3].astype(np.float32) / 255.0
    np.testing.assert_allclose(rgb, mesh.colors, atol=1.0 / 255.0)


def _node_path() -> str:
    paths = [p for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    if shutil.which("npm"):
        root = subprocess.run(["npm", "root", "-g"], check=False, capture_output=True, text=True, timeout=20)
        paths.append(root.stdout.strip())
    return os.pathsep.join(paths)


def test_glb_passes_the_khronos_validator(tmp_path, mesh):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run the Khronos glTF validator")
    path = write_glb(mesh, tmp_path / "mesh.glb")
    script = Path(__file__).with_name("validate_gltf.js")
    env = {**os.environ, "NODE_PATH": _node_path()}
    res = subprocess.run([node, str(script), str(path)], check=False, capture_output=True, text=True,
                         env=env, timeout=60)
    if res.returncode == 3:
        pytest.skip(res.stdout.strip())
    assert res.returncode == 0, res.stdout + res.stderr
    print("glTF validator:", res.stdout.strip())
