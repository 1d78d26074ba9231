"""A mesh as a binary glTF 2.0 file (``.glb``), written with the standard library and numpy.

Layout (glTF 2.0 spec, "GLB File Format Specification"): a 12-byte header (magic ``glTF``, version 2,
total length), a JSON chunk padded with spaces and a BIN chunk padded with zeros, each to 4 bytes.
One mesh with one triangle primitive: POSITION (float32, with min/max), NORMAL (float32, unit),
COLOR_0 (float32 RGB) and uint32 indices, each in its own 4-byte-aligned buffer view.

Frame: glTF is +y up with the front facing +z; our world is +z up with the front facing +x, so vertices
and normals are rotated by ``mesh.Z_UP_TO_Y_UP`` ((x, y, z) -> (y, z, x)) and the model stands upright,
facing the viewer, in glTF viewers. Colours: glTF vertex colours are linear RGB, ours are display
(sRGB) values as rendered, so COLOR_0 holds ``srgb_to_linear(colors)``; viewers convert back on display.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from distill3d.core.io import write_bytes_atomic
from distill3d.export.mesh import Mesh, to_y_up

_FLOAT, _UINT = 5126, 5125  # accessor componentType
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963  # bufferView target
_TRIANGLES = 4


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function inverted (IEC 61966-2-1), elementwise on values in [0, 1]."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _pad4(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def glb_bytes(mesh: Mesh) -> bytes:
    """The whole ``.glb`` file for ``mesh`` as bytes."""
    if len(mesh.faces) == 0:
        raise ValueError("cannot write an empty mesh to glTF (accessors need at least one element)")
    arrays = [
        (to_y_up(mesh.vertices), "VEC3", _FLOAT, _ARRAY_BUFFER),
        (to_y_up(mesh.normals), "VEC3", _FLOAT, _ARRAY_BUFFER),
        (srgb_to_linear(mesh.colors).astype(np.float32), "VEC3", _FLOAT, _ARRAY_BUFFER),
        (mesh.faces.astype(np.uint32).reshape(-1), "SCALAR", _UINT, _ELEMENT_ARRAY_BUFFER),
    ]
    blob, views, accessors = b"", [], []
    for i, (array, kind, component, target) in enumerate(arrays):
        data = np.ascontiguousarray(array).astype("<" + array.dtype.str[1:]).tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), "target": target})
        accessor = {"bufferView": i, "componentType": component, "count": int(array.shape[0]), "type": kind}
        if i == 0:  # POSITION must carry its bounds
            accessor["min"] = [float(x) for x in array.min(axis=0)]
            accessor["max"] = [float(x) for x in array.max(axis=0)]
        accessors.append(accessor)
        blob = _pad4(blob + data, b"\0")
    doc = {
        "asset": {"version": "2.0", "generator": "distill3d"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "distill3d"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1, "COLOR_0": 2},
                                    "indices": 3, "material": 0, "mode": _TRIANGLES}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0],
                                                "metallicFactor": 0.0, "roughnessFactor": 1.0}}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    json_chunk = _pad4(json.dumps(doc, separators=(",", ":")).encode("utf-8"), b" ")
    chunks = (struct.pack("<II", len(json_chunk), 0x4E4F534A) + json_chunk  # "JSON"
              + struct.pack("<II", len(blob), 0x004E4942) + blob)  # "BIN\0"
    return struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks  # "glTF", version 2


def write_glb(mesh: Mesh, path: str | os.PathLike[str]) -> Path:
    """Write ``mesh`` as a binary glTF 2.0 file (atomically); returns the path."""
    write_bytes_atomic(path, glb_bytes(mesh))
    return Path(path)
