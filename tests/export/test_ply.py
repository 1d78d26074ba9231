"""The 3DGS PLY writer and reader: exact round trip, the reference layout checked with the independent
``plyfile`` library, and files from other producers (shuffled properties, extras, ascii, degree 0)."""

from __future__ import annotations

import numpy as np
import plyfile
import pytest
import torch

from distill3d.core.errors import UserError
from distill3d.export.ply import gaussian_ply_properties, load_gaussians_ply, save_gaussians_ply
from distill3d.scene.gaussians import GaussianModel


def _model(n: int = 7, degree: int = 2, seed: int = 0) -> GaussianModel:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return GaussianModel(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g),
                         torch.randn(n, 4, generator=g), torch.randn(n, generator=g),
                         torch.randn(n, 3, generator=g), torch.randn(n, k, 3, generator=g))


def _same(a: GaussianModel, b: GaussianModel) -> None:
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_is_exact(tmp_path, degree):
    model = _model(degree=degree)
    path = save_gaussians_ply(model, tmp_path / "g.ply")
    back = load_gaussians_ply(path)
    assert back.sh_degree == degree
    _same(model, back)
    assert [p.name for p in tmp_path.iterdir()] == ["g.ply"]  # no temporary file left behind


def test_plyfile_reads_the_reference_layout(tmp_path):
    model = _model(n=5, degree=1)
    save_gaussians_ply(model, tmp_path / "g.ply")
    ply = plyfile.PlyData.read(str(tmp_path / "g.ply"))
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    assert [e.name for e in ply.elements] == ["vertex"]
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + \
        [f"f_rest_{i}" for i in range(9)] + ["opacity", "scale_0", "scale_1", "scale_2",
                                             "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(v.data.dtype[name] == np.dtype("<f4") for name in names)
    assert np.array_equal(v["x"], model.means[:, 0].detach().numpy())
    assert np.all(v["nx"] == 0) and np.all(v["nz"] == 0)
    assert np.array_equal(v["opacity"], model.opacity_logits.detach().numpy())
    assert np.array_equal(v["scale_2"], model.log_scales[:, 2].detach().numpy())
    assert np.array_equal(v["rot_0"], model.quats[:, 0].detach().numpy())  # w first
    rest = model.sh_rest.detach().numpy()  # [N, K=3, 3]
    # channel-major: f_rest_{c*K + k} = sh_rest[:, k, c]
    assert np.array_equal(v["f_rest_1"], rest[:, 1, 0])  # red, coefficient 1
    assert np.array_equal(v["f_rest_3"], rest[:, 0, 1])  # green, coefficient 0
    assert np.array_equal(v["f_rest_8"], rest[:, 2, 2])  # blue, coefficient 2


@pytest.mark.parametrize("text", [False, True])
def test_reads_other_producers_in_any_order(tmp_path, text):
    """A file written by plyfile with shuffled properties, an extra property and float64 columns."""
    model = _model(n=6, degree=1, seed=3)
    k = model.sh_rest.shape[1]
    values = {"x": model.means[:, 0], "y": model.means[:, 1], "z": model.means[:, 2],
              "opacity": model.opacity_logits, "red": torch.arange(6.0)}
    values.update({f"f_dc_{c}": model.sh_dc[:, c] for c in range(3)})
    values.update({f"scale_{i}": model.log_scales[:, i] for i in range(3)})
    values.update({f"rot_{i}": model.quats[:, i] for i in range(4)})
    values.update({f"f_rest_{c * k + j}": model.sh_rest[:, j, c] for c in range(3) for j in range(k)})
    names = sorted(values)
    np.random.default_rng(0).shuffle(names)
    records = np.empty(6, dtype=[(n, "f8" if n == "x" else "f4") for n in names])
    for n in names:
        records[n] = values[n].detach().numpy()
    path = tmp_path / "other.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")], text=text).write(str(path))
    back = load_gaussians_ply(path)
    if text:  # ascii round trip goes through decimal text: equal to float32 precision
        for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest"):
            np.testing.assert_allclose(getattr(back, name).detach().numpy(),
                                       getattr(model, name).detach().numpy(), rtol=1e-6, atol=1e-6)
    else:
        _same(model, back)


def test_missing_f_rest_means_degree_zero(tmp_path):
    names = [n for n in gaussian_ply_properties(0)]
    records = np.zeros(3, dtype=[(n, "f4") for n in names])
    records["rot_0"] = 1.0
    path = tmp_path / "d0.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(path))
    back = load_gaussians_ply(path)
    assert back.sh_degree == 0 and back.sh_rest.shape == (3, 0, 3) and len(back) == 3


def test_clear_errors(tmp_path):
    records = np.zeros(2, dtype=[(n, "f4") for n in ("x", "y", "z", "red")])
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(UserError, match="missing properties f_dc_0.*opacity"):
        load_gaussians_ply(tmp_path / "pts.ply")
    with pytest.raises(UserError, match="no such file"):
        load_gaussians_ply(tmp_path / "absent.ply")
    (tmp_path / "junk.ply").write_bytes(b"hello\n")
    with pytest.raises(UserError, match="not a PLY"):
        load_gaussians_ply(tmp_path / "junk.ply")
    path = save_gaussians_ply(_model(n=4), tmp_path / "cut.ply")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated"):
        load_gaussians_ply(path)
    names = gaussian_ply_properties(0) + ["f_rest_0", "f_rest_1"]  # 2 is not 3 * ((D+1)^2 - 1)
    records = np.zeros(1, dtype=[(n, "f4") for n in names])
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(tmp_path / "odd.ply"))
    with pytest.raises(UserError, match="f_rest"):
        load_gaussians_ply(tmp_path / "odd.ply")
