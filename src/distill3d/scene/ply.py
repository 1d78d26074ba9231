"""3D Gaussians as a PLY file in the layout of the reference 3D Gaussian Splatting code (Kerbl et al. 2023).

One ``vertex`` element, binary little-endian, float32 properties in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..3K-1  opacity  scale_0..2  rot_0..3

Normals are zeros; opacity is the logit, scales are logs, ``rot`` is the quaternion (w, x, y, z), not
normalised. ``f_rest`` is channel-major as in the reference ``save_ply`` (it transposes features_rest
[N, K, 3] to [N, 3, K] before flattening): ``f_rest_{c*K + k}`` is coefficient k of channel c, so all of
red's coefficients come first, then green's, then blue's. Viewers (SuperSplat, antimatter15/splat,
nerfstudio) read this layout. It is the Gaussians' own file (``GaussianModel.save`` / ``load``).

The reader accepts such files from any producer: properties in any order, extra properties ignored,
no normals (gsplat's export), no ``f_rest`` meaning SH degree 0, ``ascii`` or ``binary_little_endian`` (or
big-endian) encoding.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from distill3d.core.errors import UserError, shorten
from distill3d.core.io import atomic_path
from distill3d.scene.gaussians import GaussianModel

_PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_BYTE_ORDER = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}
_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3")


def gaussian_ply_properties(num_rest: int) -> list[str]:
    """Property names in the reference order for ``num_rest`` = K higher-order SH coefficients."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * num_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_gaussians_ply(model: GaussianModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (atomically) in the reference 3DGS layout; returns the path."""
    n, k = len(model), model.sh_rest.shape[1]
    with torch.no_grad():
        f_rest = model.sh_rest.detach().cpu().transpose(1, 2).reshape(n, 3 * k)  # [N, 3K] channel-major
        columns = torch.cat([
            model.means.detach().cpu(), torch.zeros(n, 3), model.sh_dc.detach().cpu(), f_rest,
            model.opacity_logits.detach().cpu()[:, None], model.log_scales.detach().cpu(),
            model.quats.detach().cpu(),
        ], dim=1).numpy().astype("<f4")  # [N, 17 + 3K]
    names = gaussian_ply_properties(k)
    records = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        records[name] = columns[:, i]
    header = "".join(["ply\n", "format binary_little_endian 1.0\n", "comment written by distill3d\n",
                      f"element vertex {n}\n", *(f"property float {name}\n" for name in names),
                      "end_header\n"])
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(records.tobytes())
    return path


@dataclass(frozen=True)
class _PlyHeader:
    encoding: str  # "ascii", "binary_little_endian" or "binary_big_endian"
    count: int  # vertices
    properties: list[tuple[str, str]]  # (name, numpy type code without byte order)


def _shown(line: bytes) -> str:
    return shorten(line.decode("ascii", errors="replace").strip())


def _read_header(f: BinaryIO, where: Path) -> _PlyHeader:
    if f.readline().strip() != b"ply":
        raise UserError(f"{where} is not a PLY file (it does not start with 'ply')")
    encoding, elements = None, []  # elements: [name, count, properties]
    while True:
        line = f.readline()
        if not line:
            raise UserError(f"{where}: PLY header has no 'end_header' line")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format" and len(words) >= 2:
            encoding = words[1]
        elif words[0] == "element" and len(words) == 3:
            if not re.fullmatch(r"[0-9]+", words[2]):
                raise UserError(f"{where}: PLY element {shorten(words[1], 40)!r} has no count of the form "
                                f"0, 1, 2, ... (got {shorten(words[2], 40)!r})")
            elements.append([words[1], int(words[2]), []])
        elif words[0] == "property" and elements:
            if len(words) < 3:
                raise UserError(f"{where}: cannot read PLY header line {_shown(line)!r}")
            if words[1] == "list":
                elements[-1][2].append((words[-1], "list"))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise UserError(f"{where}: cannot read PLY header line {_shown(line)!r}")
    if encoding not in _BYTE_ORDER:
        raise UserError(f"{where}: unsupported PLY format {shorten(str(encoding), 40)!r} (want ascii or "
                        f"binary_little_endian)")
    if not elements or elements[0][0] != "vertex":
        raise UserError(f"{where}: a Gaussian PLY needs 'vertex' as its first element")
    _, count, props = elements[0]
    if any(kind == "list" for _, kind in props):
        raise UserError(f"{where}: the vertex element has a list property; not a Gaussian-splatting PLY")
    names = [name for name, _ in props]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: the vertex element names a property twice")
    if count == 0:
        raise UserError(f"{where}: the PLY holds no Gaussians (element vertex 0)")
    return _PlyHeader(encoding, count, props)


def _read_vertices(path: Path) -> np.ndarray:
    """The vertex element as a structured array (fields named after the PLY properties)."""
    with open(path, "rb") as f:
        header = _read_header(f, path)
        order = _BYTE_ORDER[header.encoding]
        dtype = np.dtype([(name, order + code) for name, code in header.properties])
        have = os.fstat(f.fileno()).st_size - f.tell()
        if header.count > have:  # a vertex takes a byte at least: a huge count is never read or allocated
            raise UserError(f"{path}: file is truncated (the header promises {header.count} vertices in "
                            f"{have} bytes)")
        if header.encoding == "ascii":
            try:
                table = np.loadtxt(f, dtype=np.float64, max_rows=header.count, ndmin=2)
            except ValueError as err:
                raise UserError(f"{path}: cannot read the ASCII vertex rows ({shorten(str(err))})") from None
            if table.shape != (header.count, len(header.properties)):
                raise UserError(f"{path}: expected {header.count} rows of {len(header.properties)} values")
            records = np.empty(header.count, dtype=dtype)
            for i, (name, _) in enumerate(header.properties):
                records[name] = table[:, i]
            return records
        want = header.count * dtype.itemsize
        if have < want:
            raise UserError(f"{path}: file is truncated ({have} of {want} bytes)")
        data = f.read(want)
        return np.frombuffer(data, dtype=dtype, count=header.count)


def _stack(records: np.ndarray, names: list[str]) -> torch.Tensor:
    return torch.from_numpy(np.stack([records[n].astype(np.float32) for n in names], axis=1))  # [N, len]


def load_gaussians_ply(path: str | os.PathLike[str]) -> GaussianModel:
    """Read a 3D Gaussian Splatting PLY (ours or another producer's) into a ``GaussianModel``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    records = _read_vertices(path)
    names = set(records.dtype.names or ())
    missing = [p for p in _REQUIRED if p not in names]
    if missing:
        raise UserError(f"{path} is not a Gaussian-splatting PLY: missing properties {', '.join(missing)}")
    rest = sorted((p for p in names if re.fullmatch(r"f_rest_\d+", p)), key=lambda p: int(p[len("f_rest_"):]))
    k = len(rest) // 3
    degree = round((k + 1) ** 0.5) - 1
    if len(rest) % 3 or (degree + 1) ** 2 - 1 != k or rest != [f"f_rest_{i}" for i in range(3 * k)]:
        raise UserError(f"{path}: {len(rest)} f_rest properties do not form 3 * ((D+1)^2 - 1) coefficients")
    n = records.shape[0]
    used = [*_REQUIRED, *rest]
    with np.errstate(over="ignore"):  # a double beyond float32 becomes inf, refused below
        finite = all(np.isfinite(records[name].astype(np.float32)).all() for name in used)
    if not finite:
        raise UserError(f"{path}: some Gaussians hold NaN or infinite values (or values beyond float32)")
    sh_rest = _stack(records, rest).reshape(n, 3, k).transpose(1, 2) if k else torch.zeros(n, 0, 3)
    return GaussianModel(
        means=_stack(records, ["x", "y", "z"]),
        log_scales=_stack(records, ["scale_0", "scale_1", "scale_2"]),
        quats=_stack(records, ["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacity_logits=_stack(records, ["opacity"])[:, 0],
        sh_dc=_stack(records, ["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=sh_rest.contiguous(),
    )
