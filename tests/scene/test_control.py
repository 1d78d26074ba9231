"""ControlNet maps from a render's depth: analytic planes and spheres, and a rendered Gaussian sphere."""

from __future__ import annotations

import math

import pytest
import torch

from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.scene.control import (
    NORMAL_BACKGROUND,
    camera_normals,
    control_maps,
    depth_control_map,
    normal_control_map,
)
from distill3d.scene.gaussians import GaussianModel, rgb_to_sh_dc
from distill3d.scene.render import render
from distill3d.scene.render_output import RenderOutput

SIZE = 48
RADIUS = 0.8


def _pixel_rays(cams: Cameras, size: int) -> torch.Tensor:
    """Unnormalised camera-frame rays (x/f, y/f, 1) through every pixel centre. [B, S, S, 3]"""
    f = cams.focal(size)[:, None, None]
    c = torch.arange(size, dtype=torch.float32) + 0.5 - 0.5 * size
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx / f, yy / f, torch.ones_like(xx).expand_as(xx / f)], dim=-1)


def _plane(cams: Cameras, normal: tuple[float, float, float], offset: float) -> torch.Tensor:
    """z-depth [B, 1, S, S] of the camera-frame plane n · P = -offset (n facing the camera)."""
    n = torch.tensor(normal) / torch.tensor(normal).norm()
    return (-offset / (_pixel_rays(cams, SIZE) @ n))[:, None]


def _sphere(cams: Cameras, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """z-depth [B, 1, S, S] (0 off the sphere) and camera-frame unit normals [B, 3, S, S] of a sphere of
    radius RADIUS at the world origin, which every orbit camera looks at."""
    rays = _pixel_rays(cams, size)
    d = rays / rays.norm(dim=-1, keepdim=True)
    centre = torch.zeros(len(cams), 1, 1, 3)
    centre[..., 2] = cams.distance[:, None, None]
    b = (d * centre).sum(-1)
    disc = b**2 - (centre**2).sum(-1) + RADIUS**2  # |t d - C|^2 = r^2
    hit = disc > 0
    points = (b - disc.clamp_min(0).sqrt())[..., None] * d
    normal = torch.where(hit[..., None], (points - centre) / RADIUS, torch.zeros_like(points))
    return torch.where(hit, points[..., 2], torch.zeros_like(b))[:, None], normal.permute(0, 3, 1, 2)


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.acos((a * b).sum(1).clamp(-1.0, 1.0)))  # [B, S, S]


def _gaussian_sphere(n: int = 4000) -> GaussianModel:
    """Flat, nearly opaque Gaussians tangent to the sphere at Fibonacci points of its surface."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    polar, az = torch.acos(1 - 2 * i / n), math.pi * (1 + 5**0.5) * i
    normal = torch.stack([torch.cos(az) * torch.sin(polar), torch.sin(az) * torch.sin(polar), torch.cos(polar)],
                         dim=-1)
    axis = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]).expand_as(normal), normal)  # rotate +z onto n
    sin = axis.norm(dim=-1, keepdim=True)
    half = 0.5 * torch.atan2(sin, normal[:, 2:])
    quats = torch.cat([torch.cos(half), axis / sin.clamp_min(1e-9) * torch.sin(half)], dim=-1)
    scales = torch.tensor([0.035, 0.035, 0.004]).log().expand(n, 3)
    return GaussianModel(RADIUS * normal, scales.clone(), quats, torch.full((n,), 4.0),
                         rgb_to_sh_dc(torch.full((n, 3), 0.5)))


def test_plane_facing_the_camera_is_the_flat_normalbae_colour():
    cams = Cameras.from_angles([0.0, 130.0], [10.0, -30.0])
    depth = torch.full((2, 1, SIZE, SIZE), 2.5)
    got = normal_control_map(depth, torch.ones_like(depth), cams)
    assert got.shape == (2, 3, SIZE, SIZE)
    torch.testing.assert_close(got, torch.tensor(NORMAL_BACKGROUND)[None, :, None, None].expand_as(got))
    assert NORMAL_BACKGROUND == (0.5, 0.5, 1.0)


@pytest.mark.parametrize(("normal", "channel", "high"), [
    ((-0.6, 0.0, -0.8), 0, True),  # facing the image's left (OpenCV -x): red > 0.5
    ((0.6, 0.0, -0.8), 0, False),  # facing right: red < 0.5
    ((0.0, -0.6, -0.8), 1, True),  # facing up (OpenCV -y): green > 0.5
    ((0.0, 0.6, -0.8), 1, False),  # facing down: green < 0.5
])
def test_tilted_planes_get_normalbae_colours(normal, channel, high):
    """NormalBAE: red = facing left, green = facing up, blue = facing the viewer; rgb = (1 - n_cv) / 2."""
    cams = Cameras.from_angles([20.0])
    depth = _plane(cams, normal, offset=2.0)
    assert (depth > 0).all()
    got = normal_control_map(depth, torch.ones_like(depth), cams)
    n = torch.tensor(normal) / torch.tensor(normal).norm()
    want = ((1 - n) / 2)[None, :, None, None].expand_as(got)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)  # planar: the differences lie in the plane
    assert (got[0, channel] > 0.5).all() == high and (got[0, channel] < 0.5).all() != high
    assert (got[0, 2] > 0.85).all()  # every one of these planes faces the camera


def test_sphere_depth_gives_its_analytic_normals():
    cams = Cameras.from_angles([0.0, 200.0], [15.0, -40.0])
    depth, truth = _sphere(cams)
    normal, valid = camera_normals(depth, (depth > 0).float(), cams)
    interior = valid[:, 0] & (truth[:, 2] < -0.3)  # away from the grazing rim
    assert interior.sum() > 1000
    err = _angle_deg(normal, truth)[interior]
    assert err.mean() < 2.0 and err.max() < 15.0, (err.mean(), err.max())
    rgb = normal_control_map(depth, (depth > 0).float(), cams)
    decoded = 1 - 2 * rgb  # back to OpenCV normals
    assert _angle_deg(decoded, truth)[interior].mean() < 2.0
    rows = depth[0, 0].nonzero()[:, 0]
    top, mid = int(rows.min()), SIZE // 2
    left = int(depth[0, 0, mid].nonzero().min())
    assert rgb[0, 0, mid, left] > 0.8 and rgb[0, 1, top, SIZE // 2] > 0.8  # left rim red, top rim green


def test_rendered_gaussian_sphere_normals_match_the_analytic_ones():
    cams = Cameras.from_angles([0.0, 70.0], [10.0, -20.0])
    out = render(_gaussian_sphere(), cams, SIZE)
    depth, truth = _sphere(cams)
    normal, valid = camera_normals(out.depth, out.alpha, cams)
    interior = valid[:, 0] & (truth[:, 2] < -0.3)
    assert interior.sum() > 1000
    err = _angle_deg(normal, truth)[interior]
    assert err.mean() < 10.0, err.mean()  # measured 4.5° (Gaussians are a bumpy sphere)
    maps = control_maps(out, cams, "normal")
    torch.testing.assert_close(maps, normal_control_map(out.depth, out.alpha, cams))
    off = depth[:, 0] == 0
    outside = off & (out.alpha[:, 0] < 0.5)
    assert outside.sum() > 500
    torch.testing.assert_close(maps.permute(0, 2, 3, 1)[outside],
                               torch.tensor(NORMAL_BACKGROUND).expand(int(outside.sum()), 3))


def test_depth_map_is_relative_inverse_depth_near_bright_background_black():
    depth = torch.zeros(2, 1, 8, 8)
    depth[0, 0, 2:, :4], depth[0, 0, 2:, 4:] = 2.0, 4.0  # rows 0-1: background
    depth[1, 0] = torch.linspace(3.0, 6.0, 8)[None, :]
    alpha = (depth > 0).float()
    got = depth_control_map(depth, alpha)
    assert got.shape == (2, 3, 8, 8) and torch.equal(got, got[:, :1].expand(-1, 3, -1, -1))  # grey
    assert got.min() >= 0 and got.max() <= 1
    torch.testing.assert_close(got[0, 0, 2:, :4], torch.ones(6, 4))  # the nearest surface is 1
    torch.testing.assert_close(got[0, 0, 2:, 4:], torch.full((6, 4), 0.5))  # z_min / z
    assert torch.equal(got[0, :, :2], torch.zeros(3, 2, 8))  # background black
    row = got[1, 0, 0]
    assert row[0] == 1 and (row[1:] < row[:-1]).all()  # farther = darker, normalised per image
    scaled = depth_control_map(10 * depth, alpha)  # relative: independent of the scene's units
    torch.testing.assert_close(scaled, got)


def test_low_coverage_is_background_and_an_empty_view_is_all_background():
    depth = torch.full((1, 1, 6, 6), 2.0)
    alpha = torch.ones_like(depth)
    alpha[..., :, :3] = 0.3  # a faint haze in front of nothing: below SURFACE_ALPHA
    d = depth_control_map(depth, alpha)
    assert torch.equal(d[..., :3], torch.zeros(1, 3, 6, 3)) and (d[..., 3:] == 1).all()
    empty = torch.zeros(1, 1, 6, 6)
    assert torch.equal(depth_control_map(empty, empty), torch.zeros(1, 3, 6, 6))
    n = normal_control_map(empty, empty, Cameras.from_angles([0.0]))
    assert torch.equal(n, torch.tensor(NORMAL_BACKGROUND)[None, :, None, None].expand(1, 3, 6, 6))


def test_maps_carry_no_gradient_and_bad_input_is_refused():
    cams = Cameras.from_angles([0.0, 90.0])
    depth, _ = _sphere(cams, 16)
    depth = depth.clone().requires_grad_(True)
    alpha = (depth > 0).float()
    out = RenderOutput(image=torch.ones(2, 3, 16, 16), alpha=alpha, depth=depth)
    for kind in ("normal", "depth"):
        m = control_maps(out, cams, kind)
        assert m.shape == (2, 3, 16, 16) and not m.requires_grad and 0 <= m.min() and m.max() <= 1
    torch.testing.assert_close(control_maps(out, cams, "depth"), depth_control_map(depth, alpha))
    with pytest.raises(UserError, match="unknown control map kind 'canny'"):
        control_maps(out, cams, "canny")
    with pytest.raises(UserError, match="square"):
        normal_control_map(torch.ones(1, 1, 4, 6), torch.ones(1, 1, 4, 6), cams[:1])
