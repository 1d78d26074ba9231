"""``distill3d render`` and ``distill3d export`` through ``distill3d.cli.main.main``: outputs, user errors."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pygltflib
import pytest
import torch
import trimesh
from PIL import Image

from distill3d.cli.main import main
from distill3d.export.ply import load_gaussians_ply, save_gaussians_ply
from distill3d.export.video import ffmpeg_available
from distill3d.scene.gaussians import GaussianModel, rgb_to_sh_dc


def _blob() -> GaussianModel:
    """A dense red ball of 300 opaque Gaussians (radius ~0.5) with a blue cap on top (+z) and a green
    patch on its front (+x)."""
    g = torch.Generator().manual_seed(0)
    model = GaussianModel.random_in_sphere(300, radius=0.5, scale=0.08, opacity=0.9, generator=g)
    rgb = torch.tensor([0.9, 0.1, 0.1]).repeat(300, 1)
    rgb[model.means[:, 2] > 0.25] = torch.tensor([0.1, 0.1, 0.9])
    rgb[(model.means[:, 0] > 0.2) & (model.means[:, 2].abs() < 0.2)] = torch.tensor([0.1, 0.8, 0.1])
    with torch.no_grad():
        model.sh_dc.copy_(rgb_to_sh_dc(rgb))
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    save_gaussians_ply(_blob(), run / "gaussians.ply")
    return run


def _read_obj(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mesh = trimesh.load(str(path), process=False)
    return np.asarray(mesh.vertices), np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0, mesh.faces


def _read_glb(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """POSITION, COLOR_0 and indices of the first primitive (trimesh hides COLOR_0 behind a material)."""
    gltf = pygltflib.GLTF2.load_binary(str(path))
    blob, prim = gltf.binary_blob(), gltf.meshes[0].primitives[0]

    def read(index: int, dtype: str, width: int) -> np.ndarray:
        acc = gltf.accessors[index]
        offset = gltf.bufferViews[acc.bufferView].byteOffset
        return np.frombuffer(blob, dtype, acc.count * width, offset).reshape(acc.count, width)

    return (read(prim.attributes.POSITION, "<f4", 3), read(prim.attributes.COLOR_0, "<f4", 3),
            read(prim.indices, "<u4", 1).reshape(-1, 3))


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv, message", [
    (["render", "{missing}"], "no such file or directory"),
    (["render", "{run}", "--azimuths", "0,forty"], "--azimuths must be comma-separated numbers"),
    (["render", "{run}", "--azimuths", "0,0"], "lists an azimuth twice"),
    (["render", "{run}", "--elevation", "95"], "--elevation must lie within"),
    (["render", "{empty}"], "holds no saved representation"),
    (["export", "{run}", "--format", "stl"], "unknown --format 'stl'"),
    (["export", "{missing}", "--format", "glb"], "no such file or directory"),
    (["export", "{run}", "--format", "glb", "--resolution", "16", "--threshold", "1000"],
     "outside the density range"),
    (["export", "{notply}", "--format", "glb"], "not a PLY file"),
])
def test_bad_input_is_one_line_and_exit_code_2(run_dir, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notply.ply").write_text("hello\n")
    paths = {"missing": tmp_path / "nope.ply", "run": run_dir, "empty": tmp_path / "empty",
             "notply": tmp_path / "notply.ply"}
    assert main([a.format(**paths) for a in argv]) == 2
    line = _error_line(capsys)
    assert line.startswith("error: ") and message in line


def test_export_ply_copies_the_gaussians(run_dir, tmp_path, capsys):
    out = tmp_path / "copy.ply"
    assert main(["export", str(run_dir / "gaussians.ply"), "--format", "ply", "--out", str(out)]) == 0
    a, b = load_gaussians_ply(run_dir / "gaussians.ply"), load_gaussians_ply(out)
    assert torch.equal(a.means, b.means) and torch.equal(a.sh_dc, b.sh_dc)
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["glb", "obj"])
def test_export_mesh_of_gaussians(run_dir, tmp_path, fmt):
    out = tmp_path / f"mesh.{fmt}"
    argv = ["export", str(run_dir), "--format", fmt, "--out", str(out), "--resolution", "32"]
    assert main(argv) == 0
    y_up, colors, faces = _read_glb(out) if fmt == "glb" else _read_obj(out)
    assert len(faces) > 100
    assert 0.4 < y_up[:, 1].max() < 0.8  # the ball's top is at +y in the file's frame
    top = colors[y_up[:, 1] > 0.5].mean(0)
    bottom = colors[y_up[:, 1] < -0.3].mean(0)
    assert top[2] > top[0] and bottom[0] > bottom[2]  # blue cap on top, red below


def test_render_views_and_grid(run_dir, tmp_path, capsys):
    out = tmp_path / "views"
    argv = ["render", str(run_dir), "--azimuths", "0,90,180,270", "--elevation", "10", "--size", "32",
            "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["view_0.png", "view_180.png", "view_270.png",
                                                     "view_90.png", "views.png"]
    front = np.asarray(Image.open(out / "view_0.png")).astype(int)
    back = np.asarray(Image.open(out / "view_180.png")).astype(int)
    assert front.shape == (32, 32, 3)
    assert (front[0, 0] == 255).all() and (front[-1, -1] == 255).all()  # white background
    centre = (slice(14, 19), slice(14, 19))
    assert front[centre][..., 1].mean() > front[centre][..., 0].mean()  # the green patch faces azimuth 0
    assert back[centre][..., 0].mean() > back[centre][..., 1].mean() + 50  # red behind
    top = front[6:10, 12:20].reshape(-1, 3).mean(0)
    assert top[2] > top[0]  # the blue cap is up in the image
    grid = np.asarray(Image.open(out / "views.png"))
    assert grid.shape == (64, 64, 3)
    np.testing.assert_array_equal(grid[32:, :32], np.asarray(Image.open(out / "view_180.png")))
    assert "views.png" in capsys.readouterr().out


@pytest.mark.skipif(not ffmpeg_available(), reason="no ffmpeg binary for imageio-ffmpeg")
def test_export_mp4_turntable(run_dir, tmp_path):
    out = tmp_path / "spin.mp4"
    argv = ["export", str(run_dir), "--format", "mp4", "--frames", "4", "--size", "32", "--out", str(out)]
    assert main(argv) == 0
    frames = np.stack(list(iio.imiter(out, plugin="FFMPEG")))
    assert frames.shape == (4, 32, 32, 3)
    assert frames[0, 0, 0].min() > 230 and frames[0, 16, 16].min() < 200  # white around, object inside
