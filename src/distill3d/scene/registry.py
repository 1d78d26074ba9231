"""The registry of 3D representations: the one list the loop, ``generate``/``edit``, the exporters and the
CLI read. Adding a representation is a file implementing ``scene.representation.Representation`` with its
run config beside it, plus one line here; the contract suite (tests/scene/contract.py) then runs on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from distill3d.core.errors import UserError
from distill3d.scene.gaussians import GaussianModel, GaussianRunConfig
from distill3d.scene.radiance_field import RadianceFieldRunConfig, VoxelRadianceField
from distill3d.scene.representation import Representation


@dataclass(frozen=True)
class RepresentationEntry:
    name: str  # the RunConfig.representation value and the run.json "files" key
    cls: type  # implements Representation
    config_type: type  # its run config dataclass: fields are --set keys, with a validate() method
    description: str


REPRESENTATIONS: dict[str, RepresentationEntry] = {e.name: e for e in (
    RepresentationEntry("gaussians", GaussianModel, GaussianRunConfig,
                        "3D Gaussians (splatting), saved as a standard 3DGS .ply"),
    RepresentationEntry("radiance", VoxelRadianceField, RadianceFieldRunConfig,
                        "voxel radiance field (density + colour grids), saved as .safetensors"),
)}


def representation_entry(name: str) -> RepresentationEntry:
    if name not in REPRESENTATIONS:
        raise UserError(f"unknown representation {name!r}; choose one of {', '.join(REPRESENTATIONS)}")
    return REPRESENTATIONS[name]


def entry_of(representation: Representation) -> RepresentationEntry:
    """The entry whose class built ``representation``."""
    for entry in REPRESENTATIONS.values():
        if type(representation) is entry.cls:
            return entry
    raise UserError(f"{type(representation).__name__} is not a registered representation "
                    f"({', '.join(REPRESENTATIONS)})")


def find_representation_file(path: str | os.PathLike[str]) -> tuple[Path, RepresentationEntry]:
    """The saved representation at ``path``: the file itself (by its suffix), or the one a run directory
    holds (the first registered that is present)."""
    path = Path(path)
    if path.is_dir():
        for entry in REPRESENTATIONS.values():
            if (path / entry.cls.file_name).is_file():
                return path / entry.cls.file_name, entry
        looked = ", ".join(e.cls.file_name for e in REPRESENTATIONS.values())
        raise UserError(f"{path} holds no saved representation (looked for {looked})")
    if not path.is_file():
        raise UserError(f"no such file or directory: {path}")
    for entry in REPRESENTATIONS.values():
        if path.suffix.lower() == Path(entry.cls.file_name).suffix:
            return path, entry
    suffixes = ", ".join(Path(e.cls.file_name).suffix for e in REPRESENTATIONS.values())
    raise UserError(f"cannot load {path.name}: expected a run directory or a file ending in {suffixes}")


def load_representation(path: str | os.PathLike[str]) -> Representation:
    """Load the representation saved at ``path`` (a file or a run directory)."""
    file, entry = find_representation_file(path)
    return entry.cls.load(file)


__all__ = ["REPRESENTATIONS", "RepresentationEntry", "entry_of", "find_representation_file",
           "load_representation", "representation_entry"]
