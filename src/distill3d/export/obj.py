"""A mesh as a Wavefront OBJ file with per-vertex colours.

Lines ``v x y z r g b`` (the vertex-colour extension read by MeshLab, Blender, trimesh and Open3D),
``vn`` normals and ``f a//a b//b c//c`` faces (1-based, counter-clockwise seen from outside).
Frame and colours match the ``.glb`` writer's choices where OBJ has a convention: vertices and normals
are in the same +y-up frame (``mesh.Z_UP_TO_Y_UP``, front toward +z), so the .obj and the .glb of one run
line up (+y up is also the usual OBJ convention). OBJ vertex colours are display (sRGB) values, so
they are written as rendered (the .glb stores them linearised, as glTF requires).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from distill3d.core.io import write_text_atomic
from distill3d.export.mesh import Mesh, to_y_up


def obj_text(mesh: Mesh) -> str:
    """The whole ``.obj`` file for ``mesh`` as text."""
    out = io.StringIO()
    out.write("# written by distill3d: v x y z r g b, +y up, front toward +z\n")
    np.savetxt(out, np.hstack([to_y_up(mesh.vertices), mesh.colors]), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    np.savetxt(out, to_y_up(mesh.normals), fmt="vn %.6f %.6f %.6f")
    f = mesh.faces + 1
    np.savetxt(out, np.repeat(f, 2, axis=1), fmt="f %d//%d %d//%d %d//%d")
    return out.getvalue()


def write_obj(mesh: Mesh, path: str | os.PathLike[str]) -> Path:
    """Write ``mesh`` as an OBJ file with vertex colours (atomically); returns the path."""
    write_text_atomic(path, obj_text(mesh))
    return Path(path)
