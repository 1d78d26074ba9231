"""distill3d.scene: 3D representations (Gaussians, a voxel radiance field) behind one protocol, their
renderers, their files, the registry that lists them, camera sampling.

    from distill3d.scene import GaussianModel, render
    out = render(model, cameras, size=64)   # RenderOutput: image [B, 3, H, W], alpha, depth, means2d, radii
"""

from distill3d.scene.densify import (
    DENSIFY_PRESETS,
    GAUSSIAN_DREAMER,
    GAUSSIAN_SPLATTING,
    LUCID_DREAMER,
    DensifyConfig,
    DensifyReport,
    DensifyState,
    DensifyStrategy,
)
from distill3d.scene.gaussians import GaussianModel, GaussianRunConfig
from distill3d.scene.radiance_field import RadianceFieldConfig, RadianceFieldRunConfig, VoxelRadianceField
from distill3d.scene.rasterize import RasterConfig
from distill3d.scene.registry import REPRESENTATIONS, RepresentationEntry, load_representation
from distill3d.scene.render import render
from distill3d.scene.render_output import RenderOutput
from distill3d.scene.representation import Densifier, ParamGroup, Representation
from distill3d.scene.sampling import CameraSampleConfig, sample_cameras

__all__ = [
    "DENSIFY_PRESETS",
    "GAUSSIAN_DREAMER",
    "GAUSSIAN_SPLATTING",
    "LUCID_DREAMER",
    "REPRESENTATIONS",
    "CameraSampleConfig",
    "Densifier",
    "DensifyConfig",
    "DensifyReport",
    "DensifyState",
    "DensifyStrategy",
    "GaussianModel",
    "GaussianRunConfig",
    "ParamGroup",
    "RadianceFieldConfig",
    "RadianceFieldRunConfig",
    "RasterConfig",
    "RenderOutput",
    "Representation",
    "RepresentationEntry",
    "VoxelRadianceField",
    "load_representation",
    "render",
    "sample_cameras",
]
