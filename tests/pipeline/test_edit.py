"""``distill3d edit``: every edit method end to end from a distill3d run and from hand-written 3DGS PLYs in the
graphdeco and gsplat layouts, the frozen source, resume, and one-line errors that leave the source as it was."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import plyfile
import pytest
import torch
from PIL import Image

from distill3d.cli.main import main
from distill3d.core.errors import UserError
from distill3d.export.ply import load_gaussians_ply
from distill3d.guidance import EDIT_METHODS
from distill3d.pipeline import edit as edit_module
from distill3d.pipeline.config import resolve_run_config
from distill3d.pipeline.edit import edit, resolve_edit_config
from distill3d.pipeline.generate import generate
from distill3d.pipeline.loop import EditSource, build_method, optimise
from distill3d.scene.radiance_field import RadianceFieldConfig, VoxelRadianceField

from .conftest import lively_prior, make_tiny_prior

FROM, TO = "a red cube", "a blue cube"
FAST = {"steps": "2", "views_per_step": "2", "checkpoint_every": "0", "preview_every": "0", "export_size": "16",
        "turntable_frames": "4", "mesh_resolution": "16"}
FAST_ARGS = [a for k, v in FAST.items() for a in ("--set", f"{k}={v}")]


def _blob(n: int = 150, seed: int = 0) -> dict[str, np.ndarray]:
    """n opaque red Gaussians in a ball of radius 0.5 (so the mesh export finds a surface)."""
    g = np.random.default_rng(seed)
    d = g.normal(size=(n, 3))
    means = 0.5 * d / np.linalg.norm(d, axis=1, keepdims=True) * g.random((n, 1)) ** (1 / 3)
    return {"xyz": means, "dc": np.tile([1.3, -1.2, -1.2], (n, 1)), "opacity": np.full(n, 2.0),
            "scale": np.full((n, 3), math.log(0.08)), "rot": np.tile([1.0, 0, 0, 0], (n, 1))}


def write_graphdeco_ply(path, degree: int = 3) -> None:
    """The reference 3DGS layout: x y z nx ny nz f_dc_0..2 f_rest_0..3K-1 opacity scale_0..2 rot_0..3."""
    b, k = _blob(), (degree + 1) ** 2 - 1
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(3 * k)],
             "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    n = len(b["opacity"])
    cols = np.concatenate([b["xyz"], np.zeros((n, 3)), b["dc"], np.full((n, 3 * k), 0.01), b["opacity"][:, None],
                           b["scale"], b["rot"]], axis=1)
    records = np.empty(n, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        records[name] = cols[:, i]
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(path))


def write_gsplat_ply(path) -> None:
    """gsplat's export for SH degree 0: no normals, no f_rest."""
    b = _blob(seed=1)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    cols = np.concatenate([b["xyz"], b["dc"], b["opacity"][:, None], b["scale"], b["rot"]], axis=1)
    records = np.empty(len(cols), dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        records[name] = cols[:, i]
    plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(path))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_everywhere(monkeypatch):
    """The CLI loads the tiny random prior instead of the shipped one."""
    monkeypatch.setattr(edit_module, "load_prior", lambda spec: lively_prior())


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A finished tiny generate run of FROM."""
    cfg, rest = resolve_run_config("sds", {**FAST, "num_gaussians": "200"})
    return generate(FROM, cfg, rest, tmp_path_factory.mktemp("src") / "run", prior=make_tiny_prior(),
                    progress=False).out_dir


def _check_outputs(out, size: int = 16) -> dict:
    for name in ("gaussians.ply", "mesh.glb", "mesh.obj", "views.png", "preset.json", "run.json", "before_after.png"):
        assert (out / name).is_file(), name
    assert any((out / f"turntable_before_after.{e}").is_file() for e in ("mp4", "gif"))
    grid = np.asarray(Image.open(out / "before_after.png"))
    assert grid.shape == (2 * size, 8 * size, 3)  # source views over edited views, 8 azimuths
    return json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("method", list(EDIT_METHODS))
def test_every_edit_method_edits_a_toy_run_from_the_cli(method, toy_run, tmp_path, tiny_everywhere, capsys):
    before = _sha(toy_run / "gaussians.ply")
    out = tmp_path / method
    assert main(["edit", str(toy_run), "--from", FROM, "--to", TO, "--method", method, "--out", str(out),
                 "--quiet", *FAST_ARGS]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    run = _check_outputs(out)
    assert run["kind"] == "edit" and run["method"] == method and run["prompt"] == TO
    assert run["source_prompt"] == FROM and run["steps"] == 2 and run["prior_evaluations"] == 2 * 2 * 4
    assert run["judge"] is not None and run["judge_source"] is not None
    preset = json.loads((out / "preset.json").read_text())
    assert preset["edit"]["source_sha256"] == before and preset["run"]["representation"] == "gaussians"
    assert _sha(toy_run / "gaussians.ply") == before  # the source is never written
    edited, source = load_gaussians_ply(out / "gaussians.ply"), load_gaussians_ply(toy_run / "gaussians.ply")
    assert len(edited) == len(source) and not torch.equal(edited.sh_dc, source.sh_dc)  # it moved


@pytest.mark.parametrize("layout", ["graphdeco", "gsplat"])
def test_edit_hand_written_3dgs_plys(layout, tmp_path, tiny_everywhere):
    src = tmp_path / "in" / "scene.ply"
    src.parent.mkdir()
    (write_graphdeco_ply if layout == "graphdeco" else write_gsplat_ply)(src)
    before = _sha(src)
    out = tmp_path / "out"
    assert main(["edit", str(src), "--from", FROM, "--to", TO, "--method", "pds", "--out", str(out), "--quiet",
                 *FAST_ARGS]) == 0
    _check_outputs(out)
    assert _sha(src) == before
    edited = load_gaussians_ply(out / "gaussians.ply")
    assert edited.sh_degree == (3 if layout == "graphdeco" else 0) and len(edited) == 150


@pytest.mark.parametrize("method", list(EDIT_METHODS))
def test_an_identity_edit_of_an_exact_copy_changes_nothing(method, tmp_path):
    """from == to on a copy of the source: the same cameras, noise and t on both branches make the gradient
    exactly zero, so the source branch really is the source rendered as the edited copy is."""
    src = tmp_path / "scene.ply"
    write_gsplat_ply(src)
    cfg, rest = resolve_edit_config(method, FAST, src)
    result = edit(src, FROM, FROM, cfg, rest, tmp_path / "out", prior=lively_prior(), progress=False)
    a, b = load_gaussians_ply(result.out_dir / "gaussians.ply"), load_gaussians_ply(src)
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_resume_continues_an_edit_bit_for_bit(tmp_path):
    src = tmp_path / "scene.ply"
    write_graphdeco_ply(src, degree=1)
    cfg, rest = resolve_edit_config("uds", {**FAST, "steps": "4", "checkpoint_every": "2"}, src)

    def run(out, on_step=None, resume=False):
        source = EditSource(load_gaussians_ply(src), FROM)
        return optimise(TO, cfg, build_method(cfg, rest, "edit"), lively_prior(), out, resume=resume,
                        on_step=on_step, source=source)[0]

    class Stop(Exception):
        pass

    def crash(step, log):
        if step == 3:
            raise Stop

    straight = run(tmp_path / "a")
    with pytest.raises(Stop):
        run(tmp_path / "b", on_step=crash)
    resumed = run(tmp_path / "b", resume=True)
    for name, p in straight.named_parameters():
        assert torch.equal(p, dict(resumed.named_parameters())[name]), name


def test_resume_from_the_cli_and_a_changed_source_is_refused(tmp_path, tiny_everywhere, capsys, monkeypatch):
    import distill3d.pipeline.generate as generate_module

    src = tmp_path / "in" / "scene.ply"
    src.parent.mkdir()
    write_gsplat_ply(src)
    out = tmp_path / "out"
    argv = ["edit", str(src), "--from", FROM, "--to", TO, "--out", str(out), "--quiet", *FAST_ARGS,
            "--set", "steps=4", "--set", "checkpoint_every=2"]
    real = generate_module.optimise

    def interrupted_at_step_3(*args, **kwargs):
        def stop(step, log):
            if step == 3:
                raise KeyboardInterrupt
        return real(*args, **{**kwargs, "on_step": stop})

    monkeypatch.setattr(generate_module, "optimise", interrupted_at_step_3)
    assert main(argv) == 130  # interrupted: the checkpoint of step 2 stays
    monkeypatch.setattr(generate_module, "optimise", real)
    assert (out / "checkpoint.safetensors").is_file() and not (out / "run.json").exists()
    capsys.readouterr()
    assert main(argv) == 2 and "--resume" in _one_line_error(capsys)  # unfinished: needs --resume
    write_graphdeco_ply(src)  # the source changed since the run started
    assert main([*argv, "--resume"]) == 2
    assert "not the one this run started from" in _one_line_error(capsys)
    write_gsplat_ply(src)
    moved = tmp_path / "elsewhere" / "scene.ply"  # the same bytes under another path (a copied folder) resume
    moved.parent.mkdir()
    moved.write_bytes(src.read_bytes())
    assert main(["edit", str(moved), *argv[2:], "--resume"]) == 0
    assert json.loads((out / "run.json").read_text())["steps"] == 4
    assert json.loads((out / "preset.json").read_text())["edit"]["source"] == str(src)  # as the run started


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or directory"),
    ("points", "is not a Gaussian-splatting PLY: missing properties"),
    ("caption", "--to: caption 'a photo of a dragon' is outside the toy world's grammar"),
    ("from-caption", "--from: caption 'a statue' is outside"),
    ("method", "unknown edit method 'sds'"),
    ("same-folder", "is the folder holding the source"),
])
def test_bad_input_is_one_line_and_leaves_the_source_untouched(case, message, tmp_path, tiny_everywhere, capsys):
    src = tmp_path / "in" / "scene.ply"
    src.parent.mkdir()
    write_gsplat_ply(src)
    if case == "points":  # a coloured point cloud: a PLY, but not 3D Gaussians
        records = np.zeros(4, dtype=[(n, "f4") for n in ("x", "y", "z")] + [(n, "u1") for n in ("red", "green", "blue")])
        plyfile.PlyData([plyfile.PlyElement.describe(records, "vertex")]).write(str(src))
    before = _sha(src)
    args = {"source": str(src), "from": FROM, "to": TO, "method": "uds", "out": str(tmp_path / "out")}
    args |= {"missing": {"source": str(tmp_path / "nope.ply")}, "caption": {"to": "a photo of a dragon"},
             "from-caption": {"from": "a statue"}, "method": {"method": "sds"},
             "same-folder": {"out": str(src.parent)}}.get(case, {})
    argv = ["edit", args["source"], "--from", args["from"], "--to", args["to"], "--method", args["method"],
            "--out", args["out"], *FAST_ARGS]
    assert main(argv) == 2
    assert message in _one_line_error(capsys)
    assert _sha(src) == before and not (tmp_path / "out").exists()
    assert sorted(p.name for p in src.parent.iterdir()) == ["scene.ply"]


def test_a_radiance_field_is_edited_as_itself(tmp_path):
    field = VoxelRadianceField(RadianceFieldConfig(resolution=10, samples_per_ray=16))
    with torch.no_grad():
        field.features.normal_(generator=torch.Generator().manual_seed(0))
    (tmp_path / "in").mkdir()
    src = field.save(tmp_path / "in" / "radiance.safetensors")
    with pytest.raises(UserError, match="keeps the source's representation"):
        resolve_edit_config("dds", {"representation": "gaussians"}, src)
    cfg, rest = resolve_edit_config("dds", FAST, src)
    result = edit(src, FROM, TO, cfg, rest, tmp_path / "out", prior=lively_prior(), progress=False)
    edited = VoxelRadianceField.load(result.out_dir / "radiance.safetensors")
    assert edited.config == field.config and not torch.equal(edited.features, field.features)


def _random_field(tmp_path):
    field = VoxelRadianceField(RadianceFieldConfig(resolution=10, samples_per_ray=16))
    with torch.no_grad():
        field.features.normal_(generator=torch.Generator().manual_seed(0))
    (tmp_path / "in").mkdir()
    return field.save(tmp_path / "in" / "radiance.safetensors")


def test_a_radiance_field_edit_starts_with_the_source_rendered_as_the_copy(tmp_path):
    """The frozen source renders in the copy's (train) mode with the copy's very samples along each ray, so at
    step 0 the source branch sees exactly the copy's render from the same cameras: an identity term such as
    UDS's x̂0^tgt − x̂0^src starts at zero (not at the gap between jittered samples and bin midpoints)."""
    src = _random_field(tmp_path)
    cfg, rest = resolve_edit_config("uds", {**FAST, "steps": "1"}, src)
    seen = []

    class Recording(EDIT_METHODS["uds"].cls):
        def __call__(self, prior, inp, generator):
            seen.append(inp)
            return super().__call__(prior, inp, generator)

    source = EditSource(VoxelRadianceField.load(src), FROM)
    optimise(TO, cfg, Recording(build_method(cfg, rest, "edit").config), lively_prior(), tmp_path / "out",
             source=source)
    assert torch.equal(seen[0].latents, seen[0].source_latents)


@pytest.mark.parametrize("method", list(EDIT_METHODS))
def test_an_identity_edit_of_a_radiance_field_changes_nothing(method, tmp_path):
    """from == to: the same cameras, samples, noise and t on both branches make the gradient exactly zero."""
    src = _random_field(tmp_path)
    cfg, rest = resolve_edit_config(method, FAST, src)
    result = edit(src, FROM, FROM, cfg, rest, tmp_path / "out", prior=lively_prior(), progress=False)
    edited = VoxelRadianceField.load(result.out_dir / "radiance.safetensors")
    for name, p in VoxelRadianceField.load(src).named_parameters():
        assert torch.equal(dict(edited.named_parameters())[name], p), name


def test_edit_hands_the_edited_asset_to_the_live_preview(toy_run, tmp_path):
    """``edit --view``'s callback: called every preview_every steps with the asset being edited (not the
    frozen source), whose final state is the one written."""
    seen = []
    cfg, rest = resolve_edit_config("uds", {**FAST, "steps": "4", "preview_every": "2"}, toy_run)
    result = edit(toy_run, FROM, TO, cfg, rest, tmp_path / "out", prior=lively_prior(), progress=False,
                  on_preview=lambda step, rep: seen.append((step, rep.sh_dc.detach().clone())))
    assert [s for s, _ in seen] == [2, 4]
    source = load_gaussians_ply(toy_run / "gaussians.ply")
    assert not torch.equal(seen[-1][1], source.sh_dc)  # the edited copy, already moved at step 4
    torch.testing.assert_close(seen[-1][1], load_gaussians_ply(result.out_dir / "gaussians.ply").sh_dc)
