"""Find and load a saved representation: a Gaussian PLY, a radiance field, or a run directory holding one
(``gaussians.ply`` is preferred when a run directory holds both)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from distill3d.core.errors import UserError
from distill3d.export.ply import load_gaussians_ply
from distill3d.export.radiance import load_radiance_field

GAUSSIANS_FILE = "gaussians.ply"
RADIANCE_FILE = "radiance.safetensors"
REPRESENTATION_FILES = (GAUSSIANS_FILE, RADIANCE_FILE)


def find_representation(path: str | os.PathLike[str]) -> Path:
    """The representation file for ``path``: the file itself, or the one a run directory holds."""
    path = Path(path)
    if path.is_dir():
        for name in REPRESENTATION_FILES:
            if (path / name).is_file():
                return path / name
        looked = ", ".join(REPRESENTATION_FILES)
        raise UserError(f"{path} holds no saved representation (looked for {looked})")
    if not path.is_file():
        raise UserError(f"no such file or directory: {path}")
    return path


def load_representation(path: str | os.PathLike[str]) -> torch.nn.Module:
    """Load Gaussians from a ``.ply``, a radiance field from a ``.safetensors``, or a run directory's."""
    file = find_representation(path)
    if file.suffix.lower() == ".ply":
        return load_gaussians_ply(file)
    if file.suffix.lower() == ".safetensors":
        return load_radiance_field(file)
    raise UserError(f"cannot load {file.name}: expected a .ply, a .safetensors or a run directory")
