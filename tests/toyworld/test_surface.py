"""Surface points of toy scenes: on the SDF's zero level, on the right object, coloured as the truth renders."""

import torch

from distill3d.core.cameras import Cameras
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.render import render
from distill3d.toyworld.grammar import parse_caption
from distill3d.toyworld.render import render as render_truth
from distill3d.toyworld.sdf import scene_sdf, scene_tensors
from distill3d.toyworld.surface import surface_points


def test_points_lie_on_the_surface_of_the_right_object():
    spec = parse_caption("a red cube next to a blue sphere")  # the cube on the -y side
    s = surface_points(spec, 2000, torch.Generator().manual_seed(0))
    assert len(s.points) > 1500
    assert scene_sdf(s.points, scene_tensors([spec])).abs().max() < 2e-3
    assert (s.points[s.object_index == 0, 1] < 0).all() and (s.points[s.object_index == 1, 1] > 0).all()
    torch.testing.assert_close(s.normals.norm(dim=-1), torch.ones(len(s.points)))


def test_surfels_on_those_points_render_like_the_truth():
    spec = parse_caption("a yellow cone")
    s = surface_points(spec, 4000, torch.Generator().manual_seed(1))
    cams = Cameras.from_angles([0.0, 120.0, 240.0], 20.0)
    truth = render_truth(spec, cams, 64)
    model = GaussianModel.from_points(s.points, s.colors, scale=0.01, opacity=0.99)
    image = render(model, cams, 64).image
    assert ((image - truth.image) ** 2).mean() < 0.02  # colour: albedo x (ambient + diffuse max(n.l, 0))
    wrong = GaussianModel.from_points(s.points, s.colors.flip(-1), scale=0.01, opacity=0.99)
    assert ((render(wrong, cams, 64).image - truth.image) ** 2).mean() > 0.04
