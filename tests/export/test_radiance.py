"""``radiance.safetensors``: round trip, clear errors, and the CLI on a run directory holding one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from distill3d.cli.main import main
from distill3d.core.cameras import Cameras
from distill3d.core.errors import UserError
from distill3d.export.mesh import extract_mesh
from distill3d.export.radiance import load_radiance_field, save_radiance_field
from distill3d.export.views import render_views
from distill3d.scene import RadianceFieldConfig, VoxelRadianceField


def _field(mlp: bool = False) -> VoxelRadianceField:
    torch.manual_seed(0)
    config = RadianceFieldConfig(resolution=12, samples_per_ray=24, color_features=6 if mlp else 3,
                                 mlp_hidden=8 if mlp else 0)
    field = VoxelRadianceField(config)
    with torch.no_grad():
        field.features.normal_(-3.0, 0.3)  # dark
        field.density.normal_()
        field.features[:, 0, :, :, 6:] = 4.0  # with no MLP: the +x half (grid index [z, y, x]) is red
    return field


@pytest.mark.parametrize("mlp", [False, True])
def test_round_trip_renders_identically(tmp_path, mlp):
    field = _field(mlp)
    path = save_radiance_field(field, tmp_path / "radiance.safetensors")
    back = load_radiance_field(path)
    assert back.config == field.config and not back.training
    for (name, a), (_, b) in zip(field.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), name
    cams = Cameras.from_angles([0.0, 120.0], 15.0)
    assert torch.equal(render_views(field, cams, 16), render_views(back, cams, 16))
    assert field.training  # render_views restored the mode it found


def test_bad_files_are_user_errors(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(UserError, match="cannot read"):
        load_radiance_field(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="not a distill3d radiance field"):
        load_radiance_field(tmp_path / "other.safetensors")
    path = save_radiance_field(_field(), tmp_path / "r.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta["config"] = meta["config"].replace('"resolution": 12', '"resolution": 10')
    save_file(tensors, str(tmp_path / "wrong.safetensors"), metadata=meta)
    with pytest.raises(UserError, match="does not match its config"):
        load_radiance_field(tmp_path / "wrong.safetensors")


def test_mesh_of_the_initial_blob_matches_its_renders():
    """The default threshold cuts the initial density blob near its rendered silhouette (radius ~0.44)."""
    field = VoxelRadianceField(RadianceFieldConfig(resolution=16))
    mesh = extract_mesh(field, resolution=24)
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert 0.35 < radius.mean() < 0.47 and radius.std() < 0.02


def test_cli_renders_and_exports_a_radiance_run(tmp_path, capsys):
    save_radiance_field(_field(), tmp_path / "radiance.safetensors")
    assert main(["render", str(tmp_path), "--azimuths", "0,180", "--size", "24"]) == 0
    front = np.asarray(Image.open(tmp_path / "views" / "view_0.png")).astype(float)
    back = np.asarray(Image.open(tmp_path / "views" / "view_180.png")).astype(float)
    red_front, red_back = (v[10:14, 10:14, 0].mean() - v[10:14, 10:14, 1].mean() for v in (front, back))
    assert red_front > 150 and red_back < 80  # the red half faces azimuth 0 (+x)
    assert main(["export", str(tmp_path), "--format", "glb", "--resolution", "16"]) == 0
    assert (tmp_path / "mesh.glb").read_bytes()[:4] == b"glTF"
    capsys.readouterr()
    assert main(["export", str(tmp_path), "--format", "ply"]) == 2
    assert "needs 3D Gaussians" in capsys.readouterr().err
