"""The viewer's parts without a browser: what it draws, the run's panels, the server, the CLI's errors."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.scene.gaussians import GaussianModel
from distill3d.scene.radiance_field import RadianceFieldRunConfig, VoxelRadianceField
from distill3d.viewer.content import PointArrays, SplatArrays, scene_content
from distill3d.viewer.panels import run_panels


def _gaussians(n: int = 50) -> GaussianModel:
    return GaussianModel.random_in_sphere(n, radius=0.5, scale=0.05, opacity=0.5,
                                          generator=torch.Generator().manual_seed(0))


def test_gaussians_become_splats_in_the_layout_viser_takes():
    rep = _gaussians()
    content = scene_content(rep)
    splats = content.shapes
    assert isinstance(splats, SplatArrays) and content.note == "50 Gaussians"
    assert splats.centers.shape == (50, 3) and splats.covariances.shape == (50, 3, 3)
    assert splats.rgbs.shape == (50, 3) and splats.opacities.shape == (50, 1)
    assert all(a.dtype == np.float32 for a in (splats.centers, splats.covariances, splats.rgbs, splats.opacities))
    np.testing.assert_allclose(splats.covariances, splats.covariances.transpose(0, 2, 1), atol=1e-7)
    np.testing.assert_allclose(splats.opacities[:, 0], rep.opacities().detach().numpy(), atol=1e-6)
    assert content.radius() < 0.6


def test_a_radiance_field_becomes_a_point_cloud_on_its_mesh_or_says_it_has_none():
    empty = VoxelRadianceField.build(RadianceFieldRunConfig(grid_resolution=8), torch.Generator())
    with torch.no_grad():
        empty.density.fill_(-30.0)  # below the mesh threshold everywhere, the initial blob included
    content = scene_content(empty, mesh_resolution=16)
    assert isinstance(content.shapes, PointArrays) and len(content.shapes.points) == 0
    assert "no surface" in content.note
    field = VoxelRadianceField.build(RadianceFieldRunConfig(grid_resolution=8), torch.Generator())
    with torch.no_grad():
        field.density.fill_(-10.0)
        field.density[..., 2:6, 2:6, 2:6] = 10.0  # a solid block in the middle
    content = scene_content(field, mesh_resolution=16)
    assert isinstance(content.shapes, PointArrays) and len(content.shapes.points) > 10
    assert content.shapes.colors.dtype == np.uint8 and "points on its mesh" in content.note


def test_run_panels_read_run_json_and_images(tmp_path):
    views = [{"azimuth": a, "seen": "a red cube", "all_ok": a == 0.0, "front_seen": False, "front_truth": False}
             for a in (0.0, 45.0)]
    run = {"prompt": "a red cube", "method": "sds", "steps": 3, "seed": 0, "prior": "toy",
           "seconds": {"total_this_session": 1.5},
           "judge": {"kind": "single", "match_rate": 0.5, "views": views}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    Image.new("RGB", (30, 20), "white").save(tmp_path / "views.png")
    panels = run_panels(tmp_path)
    assert "**a red cube**" in panels.markdown and "**50%** of views match" in panels.markdown
    assert "| 0° | match | a red cube |" in panels.markdown and "| 45° | **no match** |" in panels.markdown
    assert [(name, img.shape) for name, img in panels.images] == [("views.png", (20, 30, 3))]
    lone = run_panels(tmp_path / "x.ply")
    assert lone.title == "x.ply" and lone.images == []


def test_without_viser_the_error_names_the_extra(monkeypatch):
    from distill3d.viewer.server import Viewer

    monkeypatch.setitem(sys.modules, "viser", None)  # import viser now raises ImportError
    with pytest.raises(UserError, match=r"\.\[view\]"):
        Viewer("127.0.0.1", 0)


def test_server_binds_the_asked_host_and_the_live_callback_redraws(tmp_path):
    pytest.importorskip("viser", reason="viser is not installed (pip install -e '.[view]')")
    from distill3d.viewer.live import LiveView
    from distill3d.viewer.server import Viewer

    with pytest.raises(UserError, match="cannot listen on --host"):
        Viewer("256.1.1.1", 0)
    viewer = Viewer("127.0.0.1", 0)
    try:
        assert viewer.url == f"http://127.0.0.1:{viewer.port}"
        live = LiveView(viewer, steps=10)
        live(3, _gaussians())
        assert type(viewer._asset).__name__ == "GaussianSplatHandle"
        assert viewer._status.content.startswith("step 3 of 10: 50 Gaussians")
        _gaussians(80).save(tmp_path / "gaussians.ply")
        live.finish(tmp_path)
        assert viewer._status.content == "finished: 80 Gaussians"
    finally:
        viewer.stop()


def test_view_command_errors_are_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing" in err
    assert main(["view", str(tmp_path)]) != 0
    assert "holds no saved representation" in capsys.readouterr().err
