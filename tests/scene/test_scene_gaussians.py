"""GaussianModel: SH colours (3DGS constants and signs), point-cloud initialisation, density grid and
colour lookup for mesh export."""

from __future__ import annotations

import math

import pytest
import torch

from distill3d.scene import GaussianModel
from distill3d.scene.gaussians import SH_C0, rgb_to_sh_dc, sh_dc_to_rgb
from distill3d.scene.sh import sh_basis


def fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = (1 - z * z).sqrt()
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def test_sh_basis_is_orthonormal_on_the_sphere():
    dirs = fibonacci_sphere(40_000)
    y = sh_basis(3, dirs)  # [M, 16]
    gram = 4 * math.pi * y.T @ y / len(dirs)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


def test_sh_signs_follow_3dgs():
    # 3DGS / gsplat: Y1 = -C1 y, Y2 = C1 z, Y3 = -C1 x; Y4 = C2[0] x y; Y15 = C3[6] x (x^2 - 3 y^2)
    d = torch.tensor([[0.48, 0.6, 0.64]])
    y = sh_basis(3, d)[0]
    x_, y_, z_ = 0.48, 0.6, 0.64
    c1 = 0.4886025119029199
    torch.testing.assert_close(y[:4], torch.tensor([SH_C0, -c1 * y_, c1 * z_, -c1 * x_]))
    torch.testing.assert_close(y[4], torch.tensor(1.0925484305920792 * x_ * y_))
    torch.testing.assert_close(y[15], torch.tensor(-0.5900435899266435 * x_ * (x_**2 - 3 * y_**2)))


def test_colors_degree0_equal_base_colors_and_higher_degrees_depend_on_view():
    g = torch.Generator().manual_seed(0)
    model = GaussianModel.random_in_sphere(10, sh_degree=3, generator=g)
    dirs = torch.nn.functional.normalize(torch.randn(2, 10, 3, generator=g), dim=-1)
    torch.testing.assert_close(model.colors(dirs), model.base_colors().expand(2, 10, 3))
    with torch.no_grad():
        model.sh_rest.normal_(0, 0.3, generator=g)
    c = model.colors(dirs)
    assert c.shape == (2, 10, 3) and (c >= 0).all() and (c <= 1).all()
    assert not torch.allclose(c[0], c[1])


def test_rgb_sh_round_trip():
    rgb = torch.rand(7, 3)
    torch.testing.assert_close(sh_dc_to_rgb(rgb_to_sh_dc(rgb)), rgb)


def test_from_points_scale_is_mean_distance_to_three_nearest_neighbours():
    axis = torch.arange(5, dtype=torch.float32) * 0.1
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    colors = torch.rand(len(pts), 3, generator=torch.Generator().manual_seed(0))
    model = GaussianModel.from_points(pts, colors)
    centre = 62  # (2, 2, 2): six neighbours at 0.1
    torch.testing.assert_close(model.scales()[centre], torch.full((3,), 0.1), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.opacities(), torch.full((len(pts),), 0.1), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.base_colors(), colors, atol=1e-6, rtol=0)
    fixed = GaussianModel.from_points(pts, colors, scale=0.02, opacity=0.7)
    torch.testing.assert_close(fixed.scales(), torch.full((len(pts), 3), 0.02))
    with pytest.raises(ValueError):
        GaussianModel.from_points(pts, colors[:3])


def test_density_grid_splats_the_gaussian_density():
    model = GaussianModel.from_points(torch.zeros(1, 3), torch.ones(1, 3), scale=0.21, opacity=0.5)
    grid = model.density_grid(21)  # spacing 0.1: index 10 is the origin
    axis = torch.linspace(-1, 1, 21)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
    r2 = (pts**2).sum(-1) / 0.21**2  # 0.21: no grid point sits on the 3-sigma sphere
    expected = torch.where(r2 <= 9, 0.5 * torch.exp(-0.5 * r2), torch.zeros(()))
    torch.testing.assert_close(grid, expected, atol=1e-6, rtol=1e-5)
    assert grid[10, 10, 10] == pytest.approx(0.5)


def test_density_grid_is_indexed_x_y_z_and_chunking_is_invisible():
    g = torch.Generator().manual_seed(1)
    model = GaussianModel.random_in_sphere(50, radius=0.3, scale=0.1, generator=g)
    with torch.no_grad():
        model.means[:, 0] += 0.5  # the cloud sits at x in [0.2, 0.8]
    grid = model.density_grid(16)
    assert grid[8:].sum() > 10 * grid[:8].sum()
    torch.testing.assert_close(model.density_grid(16, max_pairs=300), grid, atol=1e-6, rtol=1e-5)


def test_color_at_weights_nearby_gaussians():
    pts = torch.tensor([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
    model = GaussianModel.from_points(pts, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), scale=0.1,
                                      opacity=0.9)
    rgb = model.color_at(torch.tensor([[-0.45, 0.0, 0.0], [0.52, 0.02, 0.0], [0.0, 0.9, 0.0]]))
    torch.testing.assert_close(rgb[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(rgb[1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(rgb[2], torch.full((3,), 0.5))  # nothing within 3 sigma: grey
