"""distill3d.scene: 3D representations (Gaussians, a voxel radiance field), their renderers, camera sampling.

    from distill3d.scene import GaussianModel, render
    out = render(model, cameras, size=64)   # RenderOutput: image [B, 3, H, W], alpha, depth, means2d, radii
"""

from distill3d.scene.densify import (
                                     GAUSSIAN_DREAMER,
                                     GAUSSIAN_SPLATTING,
                                     LUCID_DREAMER,
                                     DensifyConfig,
                                     DensifyReport,
                                     DensifyState,
                                     DensifyStrategy,
)
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.radiance_field import RadianceFieldConfig, VoxelRadianceField
from distill3d.scene.rasterize import RasterConfig
from distill3d.scene.render import render
from distill3d.scene.render_output import RenderOutput
from distill3d.scene.sampling import CameraSampleConfig, sample_cameras

__all__ = [
                                     "GAUSSIAN_DREAMER",
                                     "GAUSSIAN_SPLATTING",
                                     "LUCID_DREAMER",
                                     "CameraSampleConfig",
                                     "DensifyConfig",
                                     "DensifyReport",
                                     "DensifyState",
                                     "DensifyStrategy",
                                     "GaussianModel",
                                     "RadianceFieldConfig",
                                     "RasterConfig",
                                     "RenderOutput",
                                     "VoxelRadianceField",
                                     "render",
                                     "sample_cameras",
]
