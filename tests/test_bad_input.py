"""What a user types, through ``distill3d.cli.main.main``: out-of-range numbers and ``--set`` values are refused
before anything is written, every caption command applies the toy grammar, long inputs are cut, exports never
overwrite a run's own files, ``python -m distill3d`` works, the judge gives no confidence for "nothing"."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from distill3d.cli.main import main
from distill3d.export.ply import save_gaussians_ply
from distill3d.scene.gaussians import GaussianModel


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _click_error(capsys, option: str) -> str:
    """click's own usage error for a number outside an option's range (exit 2, no traceback)."""
    err = capsys.readouterr().err
    assert f"Invalid value for '{option}'" in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize("setting, message", [
    ("method=sds", "--set method is not a setting"),
    ("num_gaussians=0", "num_gaussians must be at least 1"),
    ("steps=0", "steps must be within [1, 1000000], got 0"),
    ("views_per_step=1000", "views_per_step must be within [1, 64]"),
    ("lr_means=nan", "--set lr_means='nan': expected a finite float"),
    ("lr_colors=-0.1", "lr_colors must be non-negative"),
    ("guidance_scale=-5", "--set guidance_scale=-5: must not be negative"),
    ("guidance_scale=inf", "expected a finite float"),
    ("guidance_scale=1e12", "--set guidance_scale=1e+12: must be at most 1000"),
    ("export_size=100000", "export_size must be within [16, 2048]"),
    ("mesh_resolution=4", "mesh_resolution must be within [8, 512]"),
    ("elevation_max=95", "elevation_max must be within"),
    ("fov_min=0", "fov_min must be within"),
    ("seed=-1", "seed must be within"),
    ("turntable_frames=1", "turntable_frames must be within [2, 3600]"),
])
def test_generate_refuses_out_of_range_settings_before_writing(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    assert main(["generate", "a red cube", "--method", "sds", "--set", setting, "--out", str(out)]) == 2
    assert message in _one_line_error(capsys)
    assert not out.exists()


def test_a_200_word_prompt_is_echoed_cut(tmp_path, capsys):
    prompt = " ".join(["a red dragon"] * 67)
    assert main(["generate", prompt, "--out", str(tmp_path / "run")]) == 2
    err = _one_line_error(capsys)
    assert "'a red dragon a red dragon" in err and "…'" in err and len(err) < 500


def test_a_long_set_value_is_echoed_cut(tmp_path, capsys):
    assert main(["generate", "a red cube", "--set", "steps=" + "x" * 2000, "--out", str(tmp_path / "run")]) == 2
    assert len(_one_line_error(capsys)) < 200


# ---------------------------------------------------------------- toy sample


@pytest.mark.parametrize("argv, check", [
    (["a red dragon"], "grammar"),
    (["a red cube", "--cfg", "nan"], "--cfg must lie within [0, 100]"),
    (["a red cube", "--image-scale", "-1"], "--image-scale must lie within"),
    (["a red cube", "--camera", "0", "95"], "--camera elevation must lie within"),
    (["a red cube", "--n", "0"], "--n"),
    (["a red cube", "--n", "100000"], "--n"),
    (["a red cube", "--steps", "0"], "--steps"),
])
def test_toy_sample_checks_its_caption_and_numbers_before_writing(tmp_path, capsys, argv, check):
    out = tmp_path / "samples"
    assert main(["toy", "sample", *argv, "--out", str(out)]) == 2
    if check.startswith("--") and " " not in check:
        _click_error(capsys, check)
    else:
        assert check in _one_line_error(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- export and render


def _gaussians() -> GaussianModel:
    return GaussianModel.random_in_sphere(200, radius=0.5, scale=0.08, opacity=0.9,
                                          generator=torch.Generator().manual_seed(0))


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    save_gaussians_ply(_gaussians(), run / "gaussians.ply")
    for name in ("mesh.glb", "mesh.obj", "turntable.mp4"):
        (run / name).write_bytes(b"the run's own " + name.encode())
    return run


@pytest.mark.parametrize("fmt, own, new", [("glb", "mesh.glb", "mesh_export.glb"),
                                           ("obj", "mesh.obj", "mesh_export.obj"),
                                           ("ply", "gaussians.ply", "gaussians_export.ply"),
                                           ("mp4", "turntable.mp4", "turntable_export")])
def test_export_without_out_keeps_the_runs_own_file(run_dir, capsys, fmt, own, new):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    argv = ["export", str(run_dir), "--format", fmt, "--resolution", "16", "--frames", "2", "--size", "16"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{run_dir / own} exists and is kept" in out and new in out
    assert all((run_dir / name).read_bytes() == data for name, data in before.items())
    written = [p for p in run_dir.iterdir() if p.name not in before]
    assert len(written) == 1 and written[0].name.startswith(new)
    assert main(argv) == 0  # again: yet another name, nothing overwritten
    assert len([p for p in run_dir.iterdir() if p.name not in before]) == 2


def test_export_mp4_to_another_suffix_is_refused(run_dir, capsys):
    assert main(["export", str(run_dir), "--format", "mp4", "--out", str(run_dir / "spin.avi")]) == 2
    assert "must end in .mp4 or .gif" in _one_line_error(capsys)


@pytest.mark.parametrize("argv, message", [
    (["export", "{run}", "--format", "glb", "--resolution", "4"], "--resolution must lie within [8, 512]"),
    (["export", "{run}", "--format", "glb", "--threshold", "nan"], "--threshold must lie within"),
    (["export", "{run}", "--format", "mp4", "--frames", "1"], "--frames must lie within [2, 3600]"),
    (["export", "{run}", "--format", "mp4", "--size", "100000"], "--size must lie within [16, 2048]"),
    (["render", "{run}", "--azimuths", "0,nan"], "--azimuths takes at most 360 finite angles"),
    (["render", "{run}", "--size", "8"], "--size must lie within [16, 2048]"),
    (["render", "{run}", "--elevation", "nan"], "--elevation must lie within"),
])
def test_export_and_render_check_their_numbers(run_dir, capsys, argv, message):
    before = sorted(p.name for p in run_dir.iterdir())
    assert main([a.format(run=run_dir) for a in argv]) == 2
    assert message in _one_line_error(capsys)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_render_without_out_keeps_an_earlier_render(run_dir, capsys):
    argv = ["render", str(run_dir), "--azimuths", "0,180", "--size", "16"]
    assert main(argv) == 0
    first = {p.name: p.read_bytes() for p in (run_dir / "views").iterdir()}
    assert main(argv) == 0
    assert {p.name: p.read_bytes() for p in (run_dir / "views").iterdir()} == first
    assert (run_dir / "views_render" / "views.png").is_file()
    assert f"{run_dir / 'views'} exists and is kept" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["generate", "a red cube", "--method", "sds", "--out", "{file}/run"], "lies inside"),
    (["edit", "{run}", "--from", "a red cube", "--to", "a blue cube", "--out", "{file}/run"], "lies inside"),
    (["toy", "sample", "a red cube", "--out", "{file}"], "is a file; give a folder"),
    (["toy", "sample", "a red cube", "--out", "{file}/samples"], "lies inside"),
    (["render", "{run}", "--out", "{file}"], "is a file; give a folder"),
    (["export", "{run}", "--format", "glb", "--out", "{file}/mesh.glb"], "lies inside"),
    (["export", "{run}", "--format", "obj", "--out", "{folder}.obj"], "is a folder; give a file name"),
    (["export", "{run}", "--format", "glb", "--out", "{run}"], "--out of --format glb must end in .glb"),
    (["export", "{run}", "--format", "ply", "--out", "{run}/copy.obj"], "--out of --format ply must end in .ply"),
])
def test_an_out_path_of_the_wrong_kind_is_refused_in_one_line(run_dir, tmp_path, capsys, argv, message):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_folder.obj").mkdir()
    paths = {"run": run_dir, "file": tmp_path / "a_file", "folder": tmp_path / "a_folder"}
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main([a.format(**paths) for a in argv]) == 2
    assert message in _one_line_error(capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# ---------------------------------------------------------------- python -m, the judge


def test_python_m_distill3d_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "distill3d", "--version"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "distill3d, version" in done.stdout


def test_judge_reports_no_confidence_for_nothing_recognisable(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(blank)
    assert main(["toy", "judge", str(blank)]) == 0
    assert capsys.readouterr().out == f"{blank}: nothing recognisable\n"


def test_toy_render_never_overwrites_a_run_views(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "views.png").write_bytes(b"the run's own grid")
    assert main(["toy", "render", "a red cube", "--out", str(run)]) == 2
    assert "already holds views.png" in _one_line_error(capsys)
    assert (run / "views.png").read_bytes() == b"the run's own grid"
    fresh = tmp_path / "fresh"
    assert main(["toy", "render", "a red cube", "--out", str(fresh), "--size", "16"]) == 0
    assert (fresh / "views.png").is_file()


def test_toy_judge_of_a_file_that_is_no_image_is_one_line(tmp_path, capsys):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image")
    assert main(["toy", "judge", str(bogus)]) == 2
    assert "is not an image" in _one_line_error(capsys)


def test_toy_weights_that_are_not_a_toy_prior_are_named_so(tmp_path, capsys):
    weights = tmp_path / "mine.safetensors"
    weights.write_text("not safetensors")
    assert main(["generate", "a red cube", "--method", "sds", "--model", str(weights), "--out", str(tmp_path / "a")]) == 2
    assert "exists but has no mine.json beside it" in _one_line_error(capsys)
    (tmp_path / "mine.json").write_text('{"model": {}}')
    assert main(["generate", "a red cube", "--method", "sds", "--model", str(weights), "--out", str(tmp_path / "b")]) == 2
    assert "is not a toy prior written by" in _one_line_error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_mvdream_prior_without_its_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "a red cube", "--prior", "mvdream", "--out", str(out)]) == 2
    assert "--prior mvdream needs --model PATH: MVDream's sd-v2.1-base-4view.pt" in _one_line_error(capsys)
    assert not out.exists()


def test_a_missing_mv_prior_for_the_toy_prior_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["generate", "a red cube", "--prior", "toy", "--mv-prior", str(tmp_path / "mv.pt"),
                 "--out", str(out)]) == 2
    assert (f"--mv-prior with --prior toy takes a toy-world prior (toy, toy-words, toy-mv) or a toy checkpoint file; "
            f"got '{tmp_path / 'mv.pt'}', which is neither") in _one_line_error(capsys)
    assert not out.exists()
