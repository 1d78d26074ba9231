"""The voxel radiance field's volume rendering."""

from __future__ import annotations

import torch

from distill3d.core.cameras import Cameras
from distill3d.scene import RadianceFieldConfig, VoxelRadianceField, render


def field(blob_scale: float, density: float = 0.0) -> VoxelRadianceField:
    f = VoxelRadianceField(RadianceFieldConfig(resolution=8, samples_per_ray=128, blob_scale=blob_scale))
    with torch.no_grad():
        f.density.fill_(density)
        f.features.fill_(5.0)  # sigmoid(5) ~ 0.993: near white-grey
    return f.eval()


def test_empty_field_renders_the_background():
    out = render(field(blob_scale=0.0, density=-40.0), Cameras.from_angles([30.0]), 12, background=(0.2, 0.4, 0.6))
    assert out.alpha.max() < 1e-6
    torch.testing.assert_close(out.image[0, :, 5, 5], torch.tensor([0.2, 0.4, 0.6]), atol=1e-5, rtol=0)


def test_opaque_cube_depth_is_its_front_face():
    cams = Cameras.from_angles([0.0], distance=6.0)
    out = render(field(blob_scale=0.0, density=200.0), cams, 16, background=(0.0, 0.0, 0.0))
    # camera at x = 6 looking at -x: the cube face x = 1 is 5 away along the (nearly axial) central rays
    centre = out.depth[0, 0, 7:9, 7:9]
    assert (centre - 5.0).abs().max() < 0.05
    assert out.alpha[0, 0, 7:9, 7:9].min() > 0.999
    assert out.alpha[0, 0, 0, 0] < 1e-6  # corner ray misses the cube


def test_density_grid_matches_density_at_and_is_x_y_z():
    f = field(blob_scale=0.0)
    with torch.no_grad():
        f.density[0, 0, :, :, 4:] = 3.0  # grid_sample's last axis is x: high density at x > 0
    grid = f.density_grid(9)
    assert grid[6:].mean() > 2 * grid[:3].mean()
    pts = torch.tensor([[0.75, -0.5, 0.25]])
    torch.testing.assert_close(grid[7, 2, 5], f.density_at(pts)[0])


def test_train_mode_jitters_samples_eval_mode_does_not():
    f = field(blob_scale=10.0)
    cams = Cameras.from_angles([10.0])
    a, b = render(f, cams, 8), render(f, cams, 8)
    assert torch.equal(a.image, b.image)
    f.train()
    torch.manual_seed(0)
    c = render(f, cams, 8)
    torch.manual_seed(1)
    d = render(f, cams, 8)
    assert not torch.equal(c.depth, d.depth)


def test_depth_is_camera_space_z_not_distance_along_the_ray():
    """A camera on +x sees the cube's opaque face x = 1 at z = distance − 1 = 4 in every pixel that hits it."""
    import torch

    from distill3d.core.cameras import Cameras
    from distill3d.scene.radiance_field import RadianceFieldConfig, VoxelRadianceField

    field = VoxelRadianceField(RadianceFieldConfig(resolution=8, blob_scale=0.0)).eval()
    with torch.no_grad():
        field.density.fill_(200.0)  # opaque everywhere in [-1, 1]^3
    cams = Cameras.from_angles([0.0], 0.0, distance=5.0, fov=40.0)
    out = field.render(cams, 24, torch.ones(3))
    hit = out.alpha[0, 0] > 0.99
    assert hit.sum() > 100 and not hit.all()  # the face, and the background around it
    depth = out.depth[0, 0][hit]
    torch.testing.assert_close(depth, torch.full_like(depth, 4.0), atol=0.03, rtol=0)
