"""Random camera sampling, the render() entry's dispatch, and the gsplat backend."""

from __future__ import annotations

import pytest
import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.scene import CameraSampleConfig, GaussianModel, render, sample_cameras
from distill3d.scene.gsplat_backend import camera_matrices, gsplat_available


def test_samples_stay_in_their_ranges_and_repeat_under_a_generator():
    cfg = CameraSampleConfig(azimuth_range=(-90, 90), elevation_range=(0, 30), distance_range=(3, 4),
                             fov_range=(30, 40))
    cams = sample_cameras(500, cfg, torch.Generator().manual_seed(0))
    for t, (lo, hi) in ((cams.azimuth, cfg.azimuth_range), (cams.elevation, cfg.elevation_range),
                        (cams.distance, cfg.distance_range), (cams.fov, cfg.fov_range)):
        assert t.shape == (500,) and t.min() >= lo and t.max() <= hi and t.max() - t.min() > 0.8 * (hi - lo)
    again = sample_cameras(500, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(cams.azimuth, again.azimuth) and torch.equal(cams.fov, again.fov)


def test_even_azimuths_space_a_draw_around_the_circle():
    cams = sample_cameras(4, CameraSampleConfig(even_azimuths=True), torch.Generator().manual_seed(3))
    gaps = torch.remainder(cams.azimuth.roll(-1) - cams.azimuth, 360.0)
    assert torch.allclose(gaps, torch.full((4,), 90.0), atol=1e-4)
    assert cams.azimuth.min() >= -180 and cams.azimuth.max() < 180
    assert cams.elevation.unique().numel() == 4  # only the azimuths are tied
    other = sample_cameras(4, CameraSampleConfig(even_azimuths=True), torch.Generator().manual_seed(4))
    assert not torch.allclose(cams.azimuth, other.azimuth)  # the start is random


def test_even_azimuths_in_groups_give_each_group_its_own_start_and_one_group_is_the_plain_draw():
    cfg = CameraSampleConfig(even_azimuths=True, azimuth_group=4)
    cams = sample_cameras(8, cfg, torch.Generator().manual_seed(3))
    groups = cams.azimuth.reshape(2, 4)
    gaps = torch.remainder(groups.roll(-1, dims=1) - groups, 360.0)
    assert torch.allclose(gaps, torch.full((2, 4), 90.0), atol=1e-4)  # each group at 90°
    offset = float(torch.remainder(groups[1, 0] - groups[0, 0], 90.0))
    assert 1e-3 < offset < 90 - 1e-3  # the second group starts elsewhere
    whole = sample_cameras(4, CameraSampleConfig(even_azimuths=True, azimuth_group=4),
                           torch.Generator().manual_seed(3))
    plain = sample_cameras(4, CameraSampleConfig(even_azimuths=True), torch.Generator().manual_seed(3))
    assert torch.equal(whole.azimuth, plain.azimuth)  # one group of n: the old draw, bit for bit
    with pytest.raises(UserError, match="groups of 3"):
        sample_cameras(8, CameraSampleConfig(even_azimuths=True, azimuth_group=3), torch.Generator())


def test_front_bias_moves_the_share_of_front_views():
    g = torch.Generator().manual_seed(1)
    plain = sample_cameras(4000, CameraSampleConfig(), g)
    biased = sample_cameras(4000, CameraSampleConfig(front_bias=0.5), g)
    share = lambda c: float((c.azimuth.abs() < 45).float().mean())
    assert abs(share(plain) - 0.25) < 0.03
    assert abs(share(biased) - (0.5 + 0.5 * 0.25)) < 0.03


@pytest.mark.parametrize("bad", [{"elevation_range": (0, 95)}, {"distance_range": (1.0, 2.0)},
                                 {"front_bias": 1.5}, {"fov_range": (50, 40)}])
def test_bad_sampling_config_is_a_user_error(bad):
    with pytest.raises(UserError):
        sample_cameras(2, CameraSampleConfig(**bad))


def test_render_dispatch_errors_are_user_errors():
    model = GaussianModel.random_in_sphere(10)
    cams = Cameras.from_angles([0.0])
    with pytest.raises(UserError):
        render(model, cams, 8, backend="vulkan")
    with pytest.raises(UserError):
        render(torch.nn.Linear(2, 2), cams, 8)
    if not gsplat_available():
        with pytest.raises(UserError):
            render(model, cams, 8, backend="gsplat")  # no gsplat or no CUDA: one-line error


def test_gsplat_camera_matrices_project_like_our_cameras():
    cams = Cameras.from_angles([0.0, 70.0], [10.0, -20.0])
    viewmats, ks = camera_matrices(cams, 32)
    pts = torch.randn(6, 3) * 0.5
    cam_pts = torch.einsum("bij,nj->bni", viewmats[:, :3, :3], pts) + viewmats[:, None, :3, 3]
    pix = torch.einsum("bij,bnj->bni", ks, cam_pts)
    uv = pix[..., :2] / pix[..., 2:]
    expected, _ = cams.project(pts, 32)
    torch.testing.assert_close(uv, expected, atol=1e-4, rtol=0)


def test_gsplat_matches_the_torch_rasterizer():
    if not gsplat_available():
        pytest.skip("needs CUDA and gsplat")
    g = torch.Generator().manual_seed(0)
    model = GaussianModel.random_in_sphere(300, scale=0.06, opacity=0.6, sh_degree=1, generator=g)
    with torch.no_grad():
        model.sh_rest.normal_(0, 0.2, generator=g)
    cams = Cameras.from_angles([15.0, 200.0], [10.0, -25.0])
    model = model.cuda()
    ref = render(model, cams, 48, backend="torch")
    fast = render(model, cams, 48, backend="gsplat")
    # gsplat skips alpha < 1/255 and uses its own tile-local early stop: a few 1e-3 apart
    torch.testing.assert_close(fast.image, ref.image, atol=2e-2, rtol=0)
    torch.testing.assert_close(fast.alpha, ref.alpha, atol=2e-2, rtol=0)
    assert torch.equal(fast.radii > 0, ref.radii > 0)
