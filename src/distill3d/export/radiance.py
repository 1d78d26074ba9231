"""A voxel radiance field as ``radiance.safetensors``: the field's own format, which lives beside it
(``VoxelRadianceField.save`` / ``VoxelRadianceField.load`` in ``distill3d.scene.radiance_field``)."""

from __future__ import annotations

import os
from pathlib import Path

from distill3d.scene.radiance_field import FORMAT, VoxelRadianceField


def save_radiance_field(field: VoxelRadianceField, path: str | os.PathLike[str]) -> Path:
    """Write ``field`` to ``path`` (atomically) as safetensors; returns the path."""
    return field.save(path)


def load_radiance_field(path: str | os.PathLike[str]) -> VoxelRadianceField:
    """Read a field written by ``save_radiance_field``; returned in eval mode (deterministic renders)."""
    return VoxelRadianceField.load(path)


__all__ = ["FORMAT", "load_radiance_field", "save_radiance_field"]
