"""A voxel radiance field as ``radiance.safetensors``: its parameters (the module's state dict) as tensors,
and its ``RadianceFieldConfig`` as JSON in the file's metadata under ``"config"``, with
``"format": "distill3d.voxel_radiance_field"`` and ``"version": "1"``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from distill3d.core.errors import UserError
from distill3d.core.io import atomic_path
from distill3d.scene.radiance_field import RadianceFieldConfig, VoxelRadianceField

FORMAT = "distill3d.voxel_radiance_field"


def save_radiance_field(field: VoxelRadianceField, path: str | os.PathLike[str]) -> Path:
    """Write ``field`` to ``path`` (atomically) as safetensors; returns the path."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in field.state_dict().items()}
    metadata = {"format": FORMAT, "version": "1", "config": json.dumps(dataclasses.asdict(field.config))}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_radiance_field(path: str | os.PathLike[str]) -> VoxelRadianceField:
    """Read a field written by ``save_radiance_field``; returned in eval mode (deterministic renders)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError) as err:
        raise UserError(f"cannot read {path} as safetensors: {err}") from None
    if metadata.get("format") != FORMAT:
        found = metadata.get("format")
        raise UserError(f"{path} is not a distill3d radiance field (metadata format {found!r}); "
                        "write one with distill3d.export.radiance.save_radiance_field")
    try:
        field = VoxelRadianceField(RadianceFieldConfig(**json.loads(metadata["config"])))
        field.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: radiance field does not match its config: {first_line}") from None
    return field.eval()
